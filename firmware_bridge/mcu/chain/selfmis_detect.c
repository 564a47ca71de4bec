/* Online R peaks: edge_runtime/beats.py StreamingBeatDetector, step for step, in integers.
 *
 * A causal Pan-Tompkins cascade: integer microvolts -> symmetric integer FIR band-pass ->
 * first difference -> squared -> 150-ms moving sum (the envelope); candidates are envelope
 * samples above the `refractory` samples before and not below the `refractory` after; then
 * Pan-Tompkins' learning, thresholds, T-wave rule and search-back. Every number is an
 * integer from smx_chain_params.h (generated from StreamingBeatDetector.params()), every
 * operation exact (int64 where beats.py uses numpy int64), so host and Cortex-M4F agree
 * with the gateway bit for bit. Read beats.py for the why of each step; comments here say
 * only where C differs in form:
 *
 * - one sample at a time (beats.py's decisions happen at sample positions fixed by the signal,
 *   so this is the same as any chunking): the candidate at i = n - 1 - refractory is examined
 *   when sample n - 1 arrives, and the decisions run up to the same horizon;
 * - fixed rings instead of growing arrays: SMX_DET_RING (a power of two) samples of the
 *   band-passed signal, |slope| and envelope cover everything a decision looks back on;
 *   the queue, noise and pending lists have generated capacities; exceeding one is an error
 *   (the chain stops deciding), never a different beat.
 */
#include <string.h>
#include "selfmis_chain.h"

#define RMASK (SMX_DET_RING - 1)
#if (SMX_DET_RING & RMASK) != 0
#error "SMX_DET_RING must be a power of two"
#endif

/* numpy: rint(float64(x) * 1000.0), clipped to +-Q_MAX. A float32 is M * 2^E with M < 2^24,
 * so the double product M * 1000 * 2^E is exact (M * 1000 < 2^34 < 2^53): the rounding is
 * that of an exact binary fraction, done here in integers (round half to even) without
 * soft-float doubles. */
static int32_t to_q(smx_real x) {
  uint32_t bits;
  int32_t e, s;
  uint64_t v, fl, rem, half;
  int neg;
  memcpy(&bits, &x, sizeof bits);
  neg = (bits >> 31) != 0;
  e = (int32_t)((bits >> 23) & 0xffu);
  if (e == 0xff) return neg ? -SMX_DET_Q_MAX : SMX_DET_Q_MAX;  /* inf (no NaN reaches here) */
  v = bits & 0x7fffffu;
  if (e) v |= 0x800000u; else e = 1;
  v *= (uint64_t)SMX_DET_UV_PER_MV;  /* x * 1000 = v * 2^(e - 150) */
  e -= 150;
  if (e >= 0) {
    fl = e > 20 ? (uint64_t)SMX_DET_Q_MAX + 1 : v << e;
  } else {
    s = -e;
    if (s > 40) {
      fl = 0;  /* below 2^34 / 2^41 < 0.5 */
    } else {
      fl = v >> s;
      rem = v & (((uint64_t)1 << s) - 1);
      half = (uint64_t)1 << (s - 1);
      if (rem > half || (rem == half && (fl & 1u))) fl++;
    }
  }
  if (fl > (uint64_t)SMX_DET_Q_MAX) fl = SMX_DET_Q_MAX;
  return neg ? -(int32_t)fl : (int32_t)fl;
}

static int64_t shift_floor(int64_t v) {  /* numpy's >> on int64: arithmetic (floor) */
#if SMX_DET_SHIFT > 0
  return v >= 0 ? v >> SMX_DET_SHIFT : ~((~v) >> SMX_DET_SHIFT);
#else
  return v;
#endif
}

static int64_t isqrt64(int64_t m) {  /* math.isqrt: floor of the square root */
  uint64_t x = (uint64_t)m, r = 0, b = (uint64_t)1 << 62;
  while (b > x) b >>= 2;
  while (b) {
    if (x >= r + b) { x -= r + b; r = (r >> 1) + b; } else r >>= 1;
    b >>= 2;
  }
  return (int64_t)r;
}

/* band-pass, slope and envelope of the new sample (global index d->n).
 * beats.py's FIR is Pan-Tompkins' cascade (c_chain.py checks the taps are exactly it):
 * taps = M x L (centred) - L * box_M with L = box_A * box_A, so with running sums
 * S1 = box_A * q, S2 = box_A * S1 = L * q, S3 = box_M * S2 the output is
 * M S2[k - (M-1)/2] - S3[k]: the same integers as the 2A+M-2 products, in a few additions. */
static void filter(smx_detector *d, int32_t q) {
  int32_t k = d->n, j, pa = d->pa, pm = d->pm;
  int64_t acc, y, dd, e, old;
  if (k == 0) {  /* the first value stands for the past */
    for (j = 0; j < SMX_DET_A; j++) { d->qa[j] = q; d->s1a[j] = (int64_t)SMX_DET_A * q; }
    for (j = 0; j < SMX_DET_M; j++) d->s2m[j] = (int64_t)SMX_DET_A * SMX_DET_A * q;
    d->s1 = (int64_t)SMX_DET_A * q;
    d->s2 = (int64_t)SMX_DET_A * SMX_DET_A * q;
    d->s3 = (int64_t)SMX_DET_M * SMX_DET_A * SMX_DET_A * q;
  }
  d->s1 += q - d->qa[pa];
  d->qa[pa] = q;
  d->s2 += d->s1 - d->s1a[pa];
  d->s1a[pa] = d->s1;
  d->pa = pa + 1 == SMX_DET_A ? 0 : pa + 1;
  old = d->s2m[pm];
  d->s3 += d->s2 - old;
  d->s2m[pm] = d->s2;
  j = pm - (SMX_DET_M - 1) / 2;
  acc = (int64_t)SMX_DET_M * d->s2m[j < 0 ? j + SMX_DET_M : j] - d->s3;
  d->pm = pm + 1 == SMX_DET_M ? 0 : pm + 1;
  y = shift_floor(acc);
  dd = y - d->y_prev;
  d->y_prev = y;
  e = dd * dd;
  d->msum += e - d->e_ring[d->e_pos];  /* exact: the same integers beats.py sums */
  d->e_ring[d->e_pos] = e;
  d->e_pos = d->e_pos + 1 == SMX_DET_WIN ? 0 : d->e_pos + 1;
  d->y[k & RMASK] = (int32_t)y;
  d->ad[k & RMASK] = (int32_t)(dd < 0 ? -dd : dd);
  d->m[k & RMASK] = d->msum;
}

/* beats.py _find_candidates for envelope index i (its right side complete), then _measure */
static int candidate(smx_detector *d, int32_t i) {
  int64_t v = d->m[i & RMASK];
  int32_t j, a, b, c, best, r;
  int32_t slope = 0, bv;
  smx_det_cand *cd;
  if (v <= 0 || !(v > d->m[(i - 1) & RMASK] && v >= d->m[(i + 1) & RMASK])) return 0;
  for (j = i - SMX_DET_REFRACTORY < 0 ? 0 : i - SMX_DET_REFRACTORY; j < i; j++)
    if (d->m[j & RMASK] >= v) return 0;
  for (j = i + 1; j <= i + SMX_DET_REFRACTORY; j++)
    if (d->m[j & RMASK] > v) return 0;
  for (j = i - SMX_DET_WIN + 1 < 0 ? 0 : i - SMX_DET_WIN + 1; j <= i; j++)
    if (d->ad[j & RMASK] > slope) slope = d->ad[j & RMASK];
  c = i - (SMX_DET_WIN - 1) / 2;
  a = c - SMX_DET_SEARCH < 0 ? 0 : c - SMX_DET_SEARCH;
  b = c + SMX_DET_SEARCH;
  best = a;
  bv = d->y[a & RMASK] < 0 ? -d->y[a & RMASK] : d->y[a & RMASK];
  for (j = a + 1; j <= b; j++) {  /* argmax: the first maximum */
    int32_t u = d->y[j & RMASK] < 0 ? -d->y[j & RMASK] : d->y[j & RMASK];
    if (u > bv) { bv = u; best = j; }
  }
  r = best - SMX_DET_DELAY;
  if (d->nq >= SMX_DET_QCAP) return -1;
  cd = &d->queue[d->nq++];
  cd->i = i;
  cd->p = isqrt64(v);
  cd->slope = slope;
  cd->r = r;
  return 0;
}

/* beats.py _rr_mean, kept in d->sb_span as 166 * rr_mean // 100 (it changes only with rr) */
static void rr_update(smx_detector *d) {
  int32_t s = 0, k, v;
  if (!d->nrr) {
    v = SMX_DET_RR0;
  } else {
    for (k = 0; k < d->nrr; k++) s += d->rr[k];
    v = s / d->nrr;
    if (v > SMX_DET_MAX_RR) v = SMX_DET_MAX_RR;
  }
  d->sb_span = 166 * v / 100;
}

static int64_t thr1(const smx_detector *d) {
  int64_t g = d->spk - d->npk;
  return d->npk + (g > 0 ? g : 0) / 4;
}

static void drop_noise_upto(smx_detector *d, int32_t i) {  /* noise = [c for c in noise if c.i > i] */
  int k, o = 0;
  for (k = 0; k < d->nn; k++) if (d->noise[k].i > i) d->noise[o++] = d->noise[k];
  d->nn = o;
}

static int qrs(smx_detector *d, const smx_det_cand *cd) {
  int32_t i = cd->i, r = cd->r, k;
  d->has_last = 1;
  d->last_i = i;
  d->last_slope = cd->slope;
  d->sb_base = i;
  drop_noise_upto(d, i);
  if (r - d->last_r < SMX_DET_REFRACTORY) return 0;
  if (d->last_r >= 0) {
    if (d->nrr == 8) { for (k = 0; k < 7; k++) d->rr[k] = d->rr[k + 1]; d->nrr = 7; }
    d->rr[d->nrr++] = r - d->last_r;
    rr_update(d);
  }
  d->last_r = r;
  if (d->np >= SMX_DET_PCAP) return -1;
  d->pending[d->np++] = r;
  return 0;
}

static int classify(smx_detector *d, const smx_det_cand *cd) {
  smx_det_cand c = *cd;  /* cd points into the queue, which the caller shifts afterwards */
  int t_wave = d->has_last && c.i - d->last_i < SMX_DET_T_WAVE && 2 * (int64_t)c.slope < (int64_t)d->last_slope;
  if (c.p >= thr1(d) && c.p >= SMX_DET_FLOOR && !t_wave) {
    d->spk = (c.p + 7 * d->spk) / 8;  /* non-negative: C division is Python's // */
    return qrs(d, &c);
  }
  d->npk = (c.p + 7 * d->npk) / 8;
  if (d->nn >= SMX_DET_NCAP) return -1;
  d->noise[d->nn++] = c;
  return 0;
}

static int search_back(smx_detector *d, int32_t t) {
  int64_t thr2 = thr1(d) / 2;
  int k, best = -1;
  smx_det_cand c;
  for (k = 0; k < d->nn; k++) {
    const smx_det_cand *n = &d->noise[k];
    if (n->i <= t && n->p >= thr2 && n->p >= SMX_DET_FLOOR && (best < 0 || n->p > d->noise[best].p)) best = k;
  }
  if (best < 0) {
    d->spk /= 2;
    d->npk /= 2;
    d->sb_base = t;
    drop_noise_upto(d, t);
    return 0;
  }
  c = d->noise[best];
  d->spk = (c.p + 3 * d->spk) / 4;
  return qrs(d, &c);
}

void smx_det_reset(smx_detector *d) {
  memset(d, 0, sizeof *d);
  d->last_r = -1000000000;
  rr_update(d);
}

/* beats.py _decide: classify queued candidates and run search-backs in sample order up to horizon */
static int decide(smx_detector *d, int32_t horizon) {
  int k;
  if (!d->learned) {
    const int32_t end = SMX_DET_STARTUP + SMX_DET_LAG + SMX_DET_LEARN;
    int64_t spk = 0;
    if (horizon < end - 1) return 0;
    for (k = 0; k < d->nq; k++) if (d->queue[k].i < end && d->queue[k].p > spk) spk = d->queue[k].p;
    d->spk = spk;
    d->npk = spk / 8;
    d->learned = 1;
    d->sb_base = end;
  }
  for (;;) {
    int32_t t = d->sb_base + d->sb_span;
    if (d->qhead < d->nq && d->queue[d->qhead].i <= t) {
      if (classify(d, &d->queue[d->qhead++]) < 0) return -1;
    } else if (t <= horizon) {
      if (search_back(d, t) < 0) return -1;
    } else {
      break;
    }
  }
  if (d->qhead == d->nq) d->qhead = d->nq = 0;
  return 0;
}

int smx_det_push(smx_detector *d, const smx_real *x, int n, int32_t *out, int max_out) {
  int i, nout = 0, k;
  for (i = 0; i < n; i++) {
    int32_t c;
    filter(d, to_q(x[i]));
    d->n++;
    c = d->n - 1 - SMX_DET_REFRACTORY;  /* the candidate whose right side just completed */
    if (c >= SMX_DET_STARTUP + SMX_DET_LAG && c >= 1 && candidate(d, c) < 0) return -1;
    if (decide(d, c) < 0) return -1;
    for (k = 0; k < d->np && d->pending[k] + SMX_DET_GUARD <= d->n; k++) {
      if (nout >= max_out) return -1;
      out[nout++] = d->pending[k];
    }
    if (k) {
      int j;
      for (j = k; j < d->np; j++) d->pending[j - k] = d->pending[j];
      d->np -= k;
    }
  }
  return nout;
}
