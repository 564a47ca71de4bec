/* The chain: hold & fill, resampling, quality gate, beats, windows, model, decisions.
 * Mirrors edge_runtime/pipeline.py Pipeline._chunk / _beat for one chunk at a time (see
 * selfmis_chain.h for the map); the beat detector is selfmis_detect.c, the FFT and the
 * libm-free arithmetic selfmis_dsp.c. */
#include <string.h>
#include "selfmis_chain.h"
#include "smx_model.h"

#if SMX_MODEL_INPUT_LEN != SMX_W
#error "the model's input is not the card's window: smx_model.* and smx_chain_params.* come from different bundles"
#endif
#if SMX_MODEL_OUTPUT_LEN < SMX_N_LABELS
#error "the model has fewer outputs than the card has labels"
#endif

#ifdef SMX_TRACE_MARKS  /* instruction-count markers of the QEMU measurement build (qemu/marks.c) */
void smx_mark_score_begin(void), smx_mark_score_end(void), smx_mark_model_begin(void), smx_mark_model_end(void);
#define MARK(f) f()
#else
#define MARK(f) ((void)0)
#endif

#define F_LEAD_OFF SMX_F_LEAD_OFF
#define F_GAP SMX_F_GAP
#define F_SAT SMX_F_SAT

const char *smx_chain_error_text(int err) {
  switch (err) {
    case SMX_OK: return "ok";
    case SMX_ERR_RATE: return "sample rate differs from the one the chain was generated for (SMX_FS_IN): "
                              "regenerate with python -m selfmis.firmware_bridge.c_chain --fs RATE";
    case SMX_ERR_CHUNK: return "chunk longer than SMX_MAX_CHUNK samples: push it in pieces";
    case SMX_ERR_OVERFLOW: return "an internal buffer would overflow: the chain stopped deciding";
    case SMX_ERR_MODEL: return "the model failed, or was generated from another bundle than the chain";
    default: return "the chain is not initialised";
  }
}

static int32_t floordiv(int32_t a, int32_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* round half to even of a float (numpy rint) without libm: exact for |v| < 2^22 */
static float rint_f(float v) {
  volatile float big = 12582912.0f;  /* 1.5 * 2^23 */
  float a = v < 0 ? -v : v, r;
  if (a >= 4194304.0f) return v;
  r = (a + big) - big;
  return v < 0 ? -r : r;
}

static double rint_d(double v) {  /* Python round() of a non-negative double */
  volatile double big = 6755399441055744.0;  /* 1.5 * 2^52 */
  return (v + big) - big;
}

int smx_chain_init(smx_chain *c, double fs_in, smx_event_fn cb, void *user) {
  memset(c, 0, sizeof *c);
  c->cb = cb;
  c->user = user;
  c->q_state = -1;
  c->last_r = -1000000000;
  c->last_beat = -1;
  smx_det_reset(&c->det);
  if (!(fs_in > 0) || (fs_in - SMX_FS_IN > 1e-6 * SMX_FS_IN) || (SMX_FS_IN - fs_in > 1e-6 * SMX_FS_IN)) {
    c->error = SMX_ERR_RATE;
    return c->error;
  }
  if (smx_model_input_scale != SMX_IN_SCALE || smx_model_input_zero_point != SMX_IN_ZP
      || smx_model_output_scale != SMX_OUT_SCALE || smx_model_output_zero_point != SMX_OUT_ZP) {
    c->error = SMX_ERR_MODEL;
    return c->error;
  }
  return SMX_OK;
}

static void emit(smx_chain *c, smx_event *ev) { if (c->cb) c->cb(c->user, ev); }

/* ------------------------------------------------------------------ resampler */

/* StreamResampler.process: outputs into y (may be 0: count only). The history is a ring
 * written twice (at pos and pos + K), so the K inputs before any point are contiguous. */
static void rs_put(smx_chain *c, smx_real v) {
  c->rs_hist[c->rs_pos] = v;
  c->rs_hist[c->rs_pos + SMX_RS_K] = v;
  if (++c->rs_pos == SMX_RS_K) c->rs_pos = 0;
}

/* one more input: rs_sq, rs_sr = floor and remainder of (n_in - 1) UP / DOWN */
static void rs_count(smx_chain *c) {
  if (c->rs_n_in++ == 0) return;
  c->rs_sq += SMX_RS_UP / SMX_RS_DOWN;
  c->rs_sr += SMX_RS_UP % SMX_RS_DOWN;
  if (c->rs_sr >= SMX_RS_DOWN) { c->rs_sr -= SMX_RS_DOWN; c->rs_sq++; }
}

/* The output indices advance by counters, not divisions (a 64-bit division is a library
 * call on the M4F): outputs m < m_stop = floor((n_in - 1) UP / DOWN) + 1 are due; output m
 * reads the window ending at input n0 = floor(m DOWN / UP) with phase m DOWN mod UP. */
static int rs_process(smx_chain *c, const smx_real *x, int n, smx_real *y) {
  int32_t count = 0, n_before = c->rs_n_in, m_stop;
  int i, j = 0;
  for (i = 0; i < n; i++) rs_count(c);
  m_stop = c->rs_n_in > 0 ? c->rs_sq + 1 : 0;
  for (; c->rs_m_out < m_stop; c->rs_m_out++) {
    const float *taps = smx_rs_taps + c->rs_ph * SMX_RS_K;
    const smx_real *win;
    smx_real acc = 0;
    for (; j < n && n_before + j <= c->rs_n0; j++) rs_put(c, x[j]);  /* the window ends at input n0 */
    win = c->rs_hist + c->rs_pos;  /* the last K inputs, oldest first */
    for (i = 0; i + 4 <= SMX_RS_K; i += 4) {  /* unrolled; the same additions in the same order */
      acc += win[i] * taps[i];
      acc += win[i + 1] * taps[i + 1];
      acc += win[i + 2] * taps[i + 2];
      acc += win[i + 3] * taps[i + 3];
    }
    for (; i < SMX_RS_K; i++) acc += win[i] * taps[i];
    if (y) y[count] = acc;
    count++;
    c->rs_n0 += SMX_RS_DOWN / SMX_RS_UP;  /* the next output's n0 and phase */
    c->rs_ph += SMX_RS_DOWN % SMX_RS_UP;
    if (c->rs_ph >= SMX_RS_UP) { c->rs_ph -= SMX_RS_UP; c->rs_n0++; }
  }
  for (; j < n; j++) rs_put(c, x[j]);
  return count;
}

/* Pipeline._resample: primed with the first value, each output inheriting its source's flags */
static int resample(smx_chain *c, const smx_real *x, const uint8_t *fl, int n, smx_real *y, uint8_t *yfl) {
  int ny, i, d;
  if (SMX_RS_IDENTITY) {
    for (i = 0; i < n; i++) { y[i] = x[i]; yfl[i] = fl[i]; }
    return n;
  }
  if (!c->primed && n) {
    smx_real x0 = x[0];
    int j = (SMX_RS_K + SMX_RS_DOWN - 1) / SMX_RS_DOWN, produced = 0, k;
    c->primed = 1;
    for (k = 0; k < j * SMX_RS_DOWN; k++) produced += rs_process(c, &x0, 1, 0);
    c->discard = j * SMX_RS_UP - produced;
  }
  ny = rs_process(c, x, n, y);
  if (c->discard > 0) {
    d = c->discard < ny ? c->discard : ny;
    for (i = 0; i + d < ny; i++) y[i] = y[i + d];
    ny -= d;
    c->discard -= d;
  }
  if (n == 1) {  /* a device's push: every output inherits the one sample's flags */
    for (i = 0; i < ny; i++) yfl[i] = fl[0];
  } else {
    for (i = 0; i < ny; i++) {  /* i * n < SMX_MAX_OUT * SMX_MAX_CHUNK: 32 bits */
      int src = i * n / (ny > 0 ? ny : 1);
      yfl[i] = fl[src < n - 1 ? src : n - 1];
    }
  }
  return ny;
}

/* ------------------------------------------------------------------ quality gate */

static int ring_i(int32_t i) { return (int)(i % SMX_RING); }

/* QualityGate.window_reasons over [start, stop) plus the tail verdict */
static uint32_t window_reasons(const smx_chain *c, int32_t start, int32_t stop, uint32_t tail) {
  int32_t first = floordiv(start, SMX_Q_BLOCK), hi = stop < c->q_n_done ? stop : c->q_n_done;
  int32_t last = floordiv(hi - 1, SMX_Q_BLOCK), b;
  uint32_t r = tail;
  int32_t newest = c->q_n_done / SMX_Q_BLOCK - 1;  /* the gate keeps blocks (newest - KEEP, newest] */
  for (b = first; b <= last; b++) {
    if (b <= newest - SMX_Q_KEEP) continue;
    int s = (int)(((b % (SMX_Q_KEEP + 2)) + (SMX_Q_KEEP + 2)) % (SMX_Q_KEEP + 2));
    if (c->q_verdict_idx[s] == b && b >= 0) r |= c->q_verdict[s];
  }
  return r;
}

/* Pipeline._tail_reasons: a block's worth ending at stop, when the gate has not reached stop */
static uint32_t tail_reasons(const smx_chain *c, int32_t stop, int *has) {
  smx_real x[SMX_Q_BLOCK];
  uint8_t fl[SMX_Q_BLOCK];
  int32_t i0, i;
  *has = stop > c->q_n_done;
  if (!*has) return 0;
  i0 = stop - SMX_Q_BLOCK;
  if (i0 < c->buf_start) i0 = c->buf_start;
  i = stop - i0;  /* the ring's stretch [i0, stop) in at most two pieces */
  {
    int a = ring_i(i0), first = SMX_RING - a < i ? SMX_RING - a : (int)i;
    memcpy(x, c->ring + a, (size_t)first * sizeof x[0]);
    memcpy(fl, c->ring_flags + a, (size_t)first);
    memcpy(x + first, c->ring, (size_t)(i - first) * sizeof x[0]);
    memcpy(fl + first, c->ring_flags, (size_t)(i - first));
  }
  return smx_assess(x, fl, (int)i);
}

/* QualityGate.push for one model-rate sample; returns 1 when the verdict changed (*start, *reasons) */
static int quality_push(smx_chain *c, smx_real y, uint8_t fl, int32_t *start, uint32_t *reasons) {
  int32_t idx;
  uint32_t r;
  int s, changed;
  c->q_block[c->q_pending] = y;
  c->q_flags[c->q_pending] = fl;
  if (++c->q_pending < SMX_Q_BLOCK) return 0;
  c->q_pending = 0;
  r = smx_assess(c->q_block, c->q_flags, SMX_Q_BLOCK);
  idx = c->q_n_done / SMX_Q_BLOCK;
  s = (int)(idx % (SMX_Q_KEEP + 2));
  c->q_verdict[s] = (uint8_t)r;
  c->q_verdict_idx[s] = idx;
  changed = c->q_state < 0 || (uint32_t)c->q_state != r;
  *start = c->q_n_done;
  *reasons = r;
  c->q_state = (int)r;
  c->q_n_done += SMX_Q_BLOCK;
  return changed;
}

/* ------------------------------------------------------------------ window -> model -> probabilities */

/* preprocess_window (band-pass, z-score) and the interpreter's int8 quantisation of the
 * SMX_W samples from w0, then the model and the card's calibration into p */
static int score(smx_chain *c, int32_t w0, double *p) {
  smx_real *xp = c->s.f.x, *y, sum = 0, dot = 0, slope, mean, sd, step, inv_sd;
  int i;
  const int pad = SMX_BP_PAD, n = SMX_W;
  step = (smx_real)2 / (smx_real)(n - 1);
  for (i = 0; i < n; i++) {  /* a straight line through the window is removed first */
    smx_real v = c->ring[ring_i(w0 + i)], t = i == n - 1 ? 1 : (smx_real)i * step + (smx_real)-1;
    sum += v;
    dot += v * t;
  }
  slope = dot / (smx_real)SMX_BP_TT;
  mean = sum / (smx_real)n;
  for (i = 0; i < n; i++) {
    smx_real t = i == n - 1 ? 1 : (smx_real)i * step + (smx_real)-1;
    xp[pad + i] = c->ring[ring_i(w0 + i)] - mean - slope * t;
  }
  for (i = 0; i < pad; i++) { xp[i] = xp[2 * pad - i]; xp[pad + n + i] = xp[pad + n - 2 - i]; }  /* reflect */
  smx_fft_filter(c, SMX_BP_M, SMX_BP_M, smx_bp_gain, SMX_BP_M / 2 + 1);
  if (c->error != SMX_OK) return -1;
  y = c->s.f.y + pad;
  sum = 0;
  for (i = 0; i < n; i++) sum += y[i];
  mean = sum / (smx_real)n;
  sd = 0;
  for (i = 0; i < n; i++) { smx_real d = y[i] - mean; sd += d * d; }
  sd = smx_sqrt(sd / (smx_real)n);
  inv_sd = sd > (smx_real)1e-6f ? sd : (smx_real)1e-6f;
  for (i = 0; i < n; i++) {
    float q = rint_f((float)((y[i] - mean) / inv_sd) / SMX_IN_SCALE + (float)SMX_IN_ZP);
    c->qwin[i] = (int8_t)(q < -128.0f ? -128 : (q > 127.0f ? 127 : (int)q));
  }
  MARK(smx_mark_model_begin);
  i = smx_model_invoke(c->qwin, c->qout);
  MARK(smx_mark_model_end);
  if (i != 0) { c->error = SMX_ERR_MODEL; return -1; }
  for (i = 0; i < SMX_N_LABELS; i++) {  /* ModelCard.probabilities of the dequantised logits */
    double z = (double)(((float)c->qout[i] - (float)SMX_OUT_ZP) * SMX_OUT_SCALE);
    int at = smx_iso_at[i][0], m = smx_iso_at[i][1];
    if (m >= 2) {  /* numpy.interp on the isotonic table */
      const double *kx = smx_iso_x + at, *ky = smx_iso_y + at;
      int j = 0;
      if (z <= kx[0]) p[i] = ky[0];
      else if (z >= kx[m - 1]) p[i] = ky[m - 1];
      else {
        while (j + 1 < m && kx[j + 1] <= z) j++;
        p[i] = (ky[j + 1] - ky[j]) / (kx[j + 1] - kx[j]) * (z - kx[j]) + ky[j];
      }
    } else {
      p[i] = 1.0 / (1.0 + smx_exp(-(z * smx_cal_a[i] + smx_cal_b[i])));
    }
  }
  return 0;
}

/* ------------------------------------------------------------------ decisions */

static void decider_reset(smx_chain *c) {
  int j;
  c->filled = 0;
  for (j = 0; j < SMX_N_LABELS; j++) { c->since_set[j] = 0; c->count[j] = 0; }
}

/* RollingDecision.add + AlarmState.update; returns 1 with ev filled when a decision is made */
static int decide(smx_chain *c, const double *p, double t, smx_event *ev) {
  double col[SMX_N_BEATS];
  int j, k, len;
  for (j = 0; j < SMX_N_LABELS; j++) c->hist[c->filled % SMX_N_BEATS][j] = p[j];
  c->filled++;
  len = c->filled < SMX_N_BEATS ? c->filled : SMX_N_BEATS;
  if (len < SMX_MIN_BEATS) return 0;
  ev->active = 0;
  for (j = 0; j < SMX_N_LABELS; j++) {
    double v;
    int act = c->alarm_on[j], evidence, flip = 0;
    for (k = 0; k < len; k++) col[k] = c->hist[k][j];
    smx_sort_d(col, len);
    v = 0.5 * (col[(len - 1) / 2] + col[len / 2]);
    ev->p[j] = v;
    evidence = act ? (v < smx_thr_off[j]) : (v >= smx_thr_on[j]);
    if (evidence) {
      if (!c->since_set[j]) { c->since_set[j] = 1; c->since[j] = t; }
      c->count[j]++;
      flip = SMX_PERSIST_BEATS > 0 ? c->count[j] >= SMX_PERSIST_BEATS
                                   : t - c->since[j] >= SMX_PERSIST_S - 1e-9;
      if (flip) {
        act = c->alarm_on[j] = (uint8_t)!act;
        c->since_set[j] = 0;
        c->count[j] = 0;
        ev->states[j] = act ? SMX_STATE_ONSET : SMX_STATE_CLEARED;
      }
    } else {
      c->since_set[j] = 0;
      c->count[j] = 0;
    }
    if (!flip) ev->states[j] = act ? SMX_STATE_ONGOING : SMX_STATE_OFF;
    if (act) ev->active |= (uint16_t)(1u << j);
  }
  ev->state = ev->states[0];
  ev->n_beats = (uint8_t)len;
  return 1;
}

static double median5(const double *v, int n) {
  double s[5];
  int i;
  for (i = 0; i < n; i++) s[i] = v[i];
  smx_sort_d(s, n);
  return 0.5 * (s[(n - 1) / 2] + s[n / 2]);
}

/* Pipeline._beat */
static void beat(smx_chain *c, int32_t r) {
  smx_event ev;
  double t = (double)r / SMX_FS - SMX_RS_DELAY_S, rr = -1, p[SMX_N_LABELS];
  int has_tail, i;
  uint32_t tail, reasons;
  int32_t w0 = r - SMX_O;
  if (t < 0) t = 0;
  tail = tail_reasons(c, r + SMX_POST, &has_tail);
  if (window_reasons(c, r - SMX_POST, r + SMX_POST, tail)) { c->last_beat = -1; c->n_rr = 0; return; }
  if (c->last_beat >= 0) {
    rr = (double)(r - c->last_beat) / SMX_FS;
    if (0.25 <= rr && rr <= 3.0) {
      if (c->n_rr == 5) { for (i = 0; i < 4; i++) c->rr[i] = c->rr[i + 1]; c->n_rr = 4; }
      c->rr[c->n_rr++] = rr;
    } else {
      c->n_rr = 0;
    }
  }
  c->last_beat = r;
  memset(&ev, 0, sizeof ev);
  ev.type = SMX_EV_BEAT;
  ev.r = r;
  ev.t = t;
  ev.rr = rr;
  ev.hr = c->n_rr ? 60.0 / median5(c->rr, c->n_rr) : -1;
  c->n_beats_total++;
  emit(c, &ev);
  if (w0 < 0 || w0 < c->buf_start || r + SMX_POST > c->n) return;
  if (w0 < c->n - SMX_RING) { c->error = SMX_ERR_OVERFLOW; return; }
  c->eligible++;
  if ((c->eligible - 1) % SMX_EVERY_K) return;
  reasons = window_reasons(c, w0, r + SMX_POST, tail);
  if (SMX_MAX_GAP >= 0) {
    int filled = 0;
    for (i = 0; i < SMX_W; i++) filled += (c->ring_flags[ring_i(w0 + i)] & F_GAP) != 0;
    if (filled > SMX_MAX_GAP) reasons |= SMX_Q_GAP;
  }
  if (reasons) { decider_reset(c); return; }
  MARK(smx_mark_score_begin);
  if (score(c, w0, p) != 0) { MARK(smx_mark_score_end); return; }
  i = decide(c, p, t, &ev);
  MARK(smx_mark_score_end);
  ev.type = SMX_EV_WINDOW;
  ev.window = c->qwin;
  ev.logits_q = c->qout;
  emit(c, &ev);
  if (!i) return;
  ev.type = SMX_EV_DECISION;
  ev.window = 0;
  ev.logits_q = 0;
  c->n_decisions++;
  emit(c, &ev);
}

/* ------------------------------------------------------------------ Pipeline._chunk */

static int chunk(smx_chain *c, const float *x_in, int n, unsigned flags, int count_time, int32_t limit) {
  smx_real x[SMX_MAX_CHUNK], y[SMX_MAX_OUT];
  uint8_t fl[SMX_MAX_CHUNK], yfl[SMX_MAX_OUT];
  int32_t beats[SMX_DET_MAX_BEATS], restart_at = -1, start;
  uint32_t reasons;
  int i, ny, nb;
  if (c->error != SMX_OK) return c->error;
  if (n < 0 || n > SMX_MAX_CHUNK) {
    return SMX_ERR_CHUNK;
  }
  if (count_time) c->flushed = 0;
  for (i = 0; i < n; i++) {  /* 1. hold & fill */
    uint8_t f = (uint8_t)(flags & SMX_SATURATED ? F_SAT : 0);
    if (flags & SMX_LEAD_OFF) { f |= F_LEAD_OFF; x[i] = c->has_last_good ? c->last_good : 0; }
    else if (x_in[i] != x_in[i] || x_in[i] - x_in[i] != 0) { x[i] = c->has_last_good ? c->last_good : 0; f |= F_GAP; }
    else x[i] = x_in[i];
    fl[i] = f;
  }
  if (n && !(flags & SMX_LEAD_OFF)) { c->last_good = x[n - 1]; c->has_last_good = 1; }
  if (count_time) c->n_in += n;
  ny = resample(c, x, fl, n, y, yfl);  /* 2. */
  if (limit >= 0 && ny > limit - c->n) ny = limit - c->n > 0 ? (int)(limit - c->n) : 0;
  for (i = 0; i < ny; i++) { c->ring[ring_i(c->n + i)] = y[i]; c->ring_flags[ring_i(c->n + i)] = yfl[i]; }
  c->n += ny;
  if (ny == 0) return SMX_OK;
  for (i = 0; i < ny; i++) {  /* 3. quality */
    if (quality_push(c, y[i], yfl[i], &start, &reasons)) {
      smx_event ev;
      memset(&ev, 0, sizeof ev);
      ev.type = SMX_EV_QUALITY;
      ev.r = start;
      ev.t = (double)start / SMX_FS - SMX_RS_DELAY_S;
      if (ev.t < 0) ev.t = 0;
      ev.quality = reasons;
      emit(c, &ev);
      if (!reasons && c->bad) restart_at = start;
      c->bad = reasons != 0;
    }
  }
  if (restart_at >= 0) {  /* after a bad stretch the detector starts afresh from the good block */
    smx_real feed[SMX_MAX_OUT + SMX_Q_BLOCK];
    int nf;
    smx_det_reset(&c->det);
    c->det_offset = restart_at > c->buf_start ? restart_at : c->buf_start;
    nf = (int)(c->n - c->det_offset);
    if (nf > (int)(sizeof feed / sizeof feed[0]) || c->det_offset < c->n - SMX_RING) { c->error = SMX_ERR_OVERFLOW; return c->error; }
    for (i = 0; i < nf; i++) feed[i] = c->ring[ring_i(c->det_offset + i)];
    nb = smx_det_push(&c->det, feed, nf, beats, SMX_DET_MAX_BEATS);
  } else {
    nb = smx_det_push(&c->det, y, ny, beats, SMX_DET_MAX_BEATS);
  }
  if (nb < 0) { if (c->error == SMX_OK) c->error = SMX_ERR_OVERFLOW; return c->error; }
  for (i = 0; i < nb; i++) {  /* 4. beats -> 5. windows -> 6. decisions */
    int32_t r = beats[i] + c->det_offset;
    if (r - c->last_r >= SMX_DET_REFRACTORY) { c->last_r = r; beat(c, r); }
    if (c->error != SMX_OK) return c->error;
  }
  /* the gateway's bounded buffer: the last window, one second and the detector's lateness */
  if (c->n - c->buf_start > 2 * SMX_KEEP) c->buf_start = c->n - SMX_KEEP;
  return SMX_OK;
}

int smx_chain_push(smx_chain *c, const float *x, int n, unsigned flags) {
#if !SMX_RS_IDENTITY
  /* the usual sample (one, finite, unflagged) for which the resampler owes no output (most of
   * them when decimating): what chunk() would do for it, without its set-up */
  if (n == 1 && !flags && c->primed && c->error == SMX_OK && x[0] == x[0] && x[0] - x[0] == 0) {
    int32_t sq = c->rs_sq + SMX_RS_UP / SMX_RS_DOWN + (c->rs_sr + SMX_RS_UP % SMX_RS_DOWN >= SMX_RS_DOWN);
    if (sq + 1 <= c->rs_m_out) {  /* m_stop after this input: no output is due */
      c->flushed = 0;
      c->last_good = x[0];
      c->has_last_good = 1;
      c->n_in++;
      rs_count(c);
      rs_put(c, x[0]);
      return SMX_OK;
    }
  }
#endif
  return chunk(c, x, n, flags, 1, -1);
}

int smx_chain_flush(smx_chain *c) {
  float pad[SMX_MAX_CHUNK];
  int32_t npad, n_signal, limit;
  int i;
  double v;
  if (c->error != SMX_OK) return c->error;
  if (SMX_RS_IDENTITY || !c->has_last_good || c->flushed) return SMX_OK;
  c->flushed = 1;
  v = SMX_RS_DELAY_S * SMX_FS_IN;
  npad = (int32_t)v;
  if ((double)npad < v) npad++;  /* ceil */
  npad += SMX_RS_DOWN;
  n_signal = (int32_t)rint_d((double)c->n_in / SMX_FS_IN * SMX_FS);
  limit = n_signal + (int32_t)rint_d(SMX_RS_DELAY_S * SMX_FS);
  if (npad > SMX_MAX_CHUNK) return SMX_ERR_CHUNK;
  for (i = 0; i < npad; i++) pad[i] = c->last_good;
  return chunk(c, pad, (int)npad, 0, 0, limit);
}
