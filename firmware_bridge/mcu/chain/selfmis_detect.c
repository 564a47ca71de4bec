/* Online R peaks: edge_runtime/beats.py StreamingBeatDetector, step for step.
 *
 * The same buffer (context + undecided tail), the same schedule (an analysis only when a
 * beat could mature), the same analysis: 5-15 Hz zero-phase FFT band-pass on a 2-3-5-smooth
 * length, derivative, 150-ms moving RMS envelope, envelope maxima with non-maximum
 * suppression, threshold against the second largest candidate, T-wave rule, search-back,
 * R refinement on the band-passed signal. Read beats.py for the why of each step; comments
 * here say only where C differs in form.
 */
#include "selfmis_chain.h"

void smx_det_reset(smx_detector *d) {
  d->len = 0;
  d->buf_start = 0;
  d->n = 0;
  d->done = SMX_DET_STARTUP;
  d->due = 0;
  d->last = -1000000000;
  d->fft_n = 0;
}

/* gains of beats.py band_gain(n, fs, 5, 15, 5) for the FFT length n */
static void band_gain(smx_detector *d, int n) {
  int i;
  float val;
  if (d->fft_n == n) return;
  val = (float)(1.0 / ((double)n * (1.0 / SMX_FS)));  /* rfftfreq: i / (n * d) */
  for (i = 0; i <= n / 2 && i < SMX_DET_GAIN_LEN; i++) {
    float f = (float)i * val, lo, hi;
    lo = f / (float)(2 * SMX_DET_LO_HZ);
    lo = lo < 0 ? 0 : (lo > 1 ? 1 : lo);
    hi = (f - (float)(SMX_DET_HI_HZ - SMX_DET_EDGE_HZ)) / (float)(2 * SMX_DET_EDGE_HZ);
    hi = hi < 0 ? 0 : (hi > 1 ? 1 : hi);
    if (hi >= 1.0f) { d->gain[i] = 0; continue; }
    d->gain[i] = (0.5f - 0.5f * smx_cos_pi_f(lo)) * (0.5f + 0.5f * smx_cos_pi_f(hi));
  }
  d->fft_n = n;
}

typedef struct { int nq, nc; double ref; } analysis;

/* y = 5-15 Hz band of the buffer (beats.py _band), left in c->s.f.y + pad */
static const smx_real *band(smx_chain *c, smx_detector *d, int *ok) {
  int len = d->len, pad = len - 1 < SMX_DET_PAD ? len - 1 : SMX_DET_PAD, i, m, n;
  smx_real *xp = c->s.f.x, mean = 0;
  for (i = 0; i < len; i++) mean += d->buf[i];
  mean = mean / (smx_real)len;
  for (i = 0; i < pad; i++) xp[i] = d->buf[pad - i] - mean;                 /* x[pad:0:-1] */
  for (i = 0; i < len; i++) xp[pad + i] = d->buf[i] - mean;
  for (i = 0; i < pad; i++) xp[pad + len + i] = d->buf[len - 2 - i] - mean;  /* x[-2:-pad-2:-1] */
  m = len + 2 * pad;
  n = smx_fast_len(m);
  if (n > SMX_FFT_MAX) { *ok = 0; return 0; }
  band_gain(d, n);
  smx_fft_filter(c, m, n, d->gain, SMX_DET_GAIN_LEN);
  *ok = c->error == SMX_OK;
  return c->s.f.y + pad;
}

static int bisect_left(const int16_t *a, int n, int v) {
  int lo = 0, hi = n;
  while (lo < hi) { int mid = (lo + hi) / 2; if (a[mid] < v) lo = mid + 1; else hi = mid; }
  return lo;
}

/* envelope maxima, largest first, none within `refractory` of a larger: c->keep (ascending) */
static int envelope_peaks(smx_chain *c, const smx_real *env, int len) {
  int16_t *pk = c->pk, *keep = c->keep;
  int np = 0, nk = 0, i, j;
  if (len < 3) return 0;
  for (i = 1; i < len - 1; i++)
    if (env[i] > env[i - 1] && env[i] >= env[i + 1]) pk[np++] = (int16_t)i;
  /* stable sort by descending height (insertion sort: a few dozen maxima) */
  for (i = 1; i < np; i++) {
    int16_t p = pk[i];
    for (j = i; j > 0 && env[pk[j - 1]] < env[p]; j--) pk[j] = pk[j - 1];
    pk[j] = p;
  }
  for (i = 0; i < np; i++) {
    int p = pk[i], k = bisect_left(keep, nk, p);
    if ((k == 0 || p - keep[k - 1] >= SMX_DET_REFRACTORY) && (k == nk || keep[k] - p >= SMX_DET_REFRACTORY)) {
      for (j = nk; j > k; j--) keep[j] = keep[j - 1];
      keep[k] = (int16_t)p;
      nk++;
    }
  }
  return nk;
}

static double median_i(int16_t *v, int n) {  /* sorts v */
  int i, j;
  for (i = 1; i < n; i++) { int16_t t = v[i]; for (j = i; j > 0 && v[j - 1] > t; j--) v[j] = v[j - 1]; v[j] = t; }
  return 0.5 * ((double)v[(n - 1) / 2] + (double)v[n / 2]);
}

/* beats.py _select: threshold, T-wave rule, search-back; QRS envelope positions into c->qrs */
static int select_qrs(smx_chain *c, const smx_real *env, const smx_real *ad, int np, double thr, int len) {
  int16_t *pk = c->keep, *q = c->qrs, rr[SMX_DET_CAP / 2 + 2], extra[SMX_DET_CAP / 2 + 2];
  int nq = 0, ne = 0, i, j, k;
  double last_slope = 0;
  for (i = 0; i < np; i++) {
    int p = pk[i], a = p - SMX_DET_HALF < 0 ? 0 : p - SMX_DET_HALF;
    int b = p + SMX_DET_HALF + 1 > len ? len : p + SMX_DET_HALF + 1;
    smx_real slf = 0;
    double sl;
    for (j = a; j < b; j++) if (ad[j] > slf) slf = ad[j];
    sl = slf;
    if ((double)env[p] < thr) continue;
    if (nq && p - q[nq - 1] < SMX_DET_TWAVE && sl < 0.6 * last_slope) continue;
    q[nq++] = (int16_t)p;
    last_slope = sl;
  }
  if (nq >= 3) {
    double med;
    for (i = 0; i < nq - 1; i++) rr[i] = (int16_t)(q[i + 1] - q[i]);
    med = median_i(rr, nq - 1);
    for (i = 0; i < nq - 1; i++) {
      int p0 = q[i], p1 = q[i + 1], best = -1;
      if ((double)(p1 - p0) <= 1.66 * med) continue;
      for (k = 0; k < np; k++) {
        int p = pk[k];
        if (p0 + 0.5 * med < p && p < p1 - 0.5 * med && (double)env[p] >= 0.5 * thr
            && (best < 0 || env[p] > env[best])) best = p;
      }
      if (best >= 0) extra[ne++] = (int16_t)best;
    }
    for (k = 0; k < ne; k++) {  /* merge the extras in (sorted(qrs + extra)) */
      int p = extra[k], at = bisect_left(q, nq, p);
      for (j = nq; j > at; j--) q[j] = q[j - 1];
      q[at] = (int16_t)p;
      nq++;
    }
  }
  return nq;
}

/* beats.py _analyse: QRS R peaks (buffer indices, sorted, unique) in c->qrs; candidates in c->keep */
static analysis analyse(smx_chain *c, smx_detector *d) {
  analysis res = {0, 0, 0.0};
  int len = d->len, i, j, np, nq, ok;
  const smx_real *y;
  smx_real *dd = c->s.f.x, *env = c->s.f.x + SMX_DET_CAP, acc;
  double ref, thr;
  if (len < 2 * SMX_DET_WIN + 2) return res;
  y = band(c, d, &ok);
  if (!ok) return res;
  /* dd = derivative (|d| kept for the slopes), env = sqrt(moving mean of d^2) ('same' mode) */
  dd[0] = 0;
  for (i = 1; i < len; i++) dd[i] = y[i] - y[i - 1];
  /* each term d^2 / WIN once (in the FFT scratch's free half: the band-passed signal y
   * takes at most SMX_FFT_MAX floats of it), then the same sums in the same order */
  {
    smx_real *sq = c->s.f.y + SMX_FFT_MAX;
    for (i = 0; i < len; i++) sq[i] = dd[i] * dd[i] * ((smx_real)1 / SMX_DET_WIN);
    for (i = 0; i < len; i++) {
      int a = i - SMX_DET_WIN / 2, b = i + (SMX_DET_WIN - 1) / 2 + 1;
      if (SMX_DET_WIN % 2 == 0) { a = i - SMX_DET_WIN / 2; b = i + SMX_DET_WIN / 2; }
      acc = 0;
      for (j = a < 0 ? 0 : a; j < (b > len ? len : b); j++) acc += sq[j];
      env[i] = smx_sqrt(acc);
    }
  }
  for (i = 0; i < len; i++) dd[i] = dd[i] < 0 ? -dd[i] : dd[i];
  np = envelope_peaks(c, env, len);
  res.nc = np;
  if (np < 1) return res;
  {
    smx_real h1 = -1, h2 = -1;  /* largest and second largest (duplicates count) */
    for (i = 0; i < np; i++) {
      smx_real h = env[c->keep[i]];
      if (h > h1) { h2 = h1; h1 = h; } else if (h > h2) h2 = h;
    }
    ref = (np >= 2 && len >= 3 * SMX_FS) ? h2 : h1;
  }
  res.ref = ref;
  if (ref < SMX_DET_MIN_AMP * 0.3 * 2 * 3.141592653589793 * 10 / SMX_FS) { res.ref = 0.0; return res; }
  thr = SMX_DET_THRESHOLD * ref;
  nq = select_qrs(c, env, dd, np, thr, len);
  for (i = 0; i < nq; i++) {  /* R peak: the largest |band-passed| sample within `search` */
    int p = c->qrs[i], a = p - SMX_DET_SEARCH < 0 ? 0 : p - SMX_DET_SEARCH;
    int b = p + SMX_DET_SEARCH + 1 > len ? len : p + SMX_DET_SEARCH + 1, best = a;
    smx_real bv = y[a] < 0 ? -y[a] : y[a];
    for (j = a + 1; j < b; j++) { smx_real v = y[j] < 0 ? -y[j] : y[j]; if (v > bv) { bv = v; best = j; } }
    c->pk[i] = (int16_t)best;
  }
  /* sorted(set(r)) into c->qrs */
  for (i = 1; i < nq; i++) { int16_t t = c->pk[i]; for (j = i; j > 0 && c->pk[j - 1] > t; j--) c->pk[j] = c->pk[j - 1]; c->pk[j] = t; }
  res.nq = 0;
  for (i = 0; i < nq; i++) if (i == 0 || c->pk[i] != c->pk[i - 1]) c->qrs[res.nq++] = c->pk[i];
  return res;
}

int smx_det_push(smx_chain *c, smx_detector *d, const smx_real *x, int n, int32_t *out, int max_out) {
  int32_t mature, due, lo;
  int i, nout = 0, keep_from;
  analysis a;
  if (n <= 0) return 0;
  if (d->len + n > SMX_DET_CAP) return -1;
  for (i = 0; i < n; i++) d->buf[d->len + i] = x[i];
  d->len += n;
  d->n += n;
  mature = d->n - SMX_DET_GUARD + 1;
  if (mature <= (d->done > d->due ? d->done : d->due)) return 0;
  a = analyse(c, d);
  if (c->error != SMX_OK) return -1;
  lo = d->done - SMX_DET_REFRACTORY;
  if (lo < SMX_DET_STARTUP) lo = SMX_DET_STARTUP;
  for (i = 0; i < a.nq; i++) {
    int32_t g = c->qrs[i] + d->buf_start;
    if (lo <= g && g < mature && g - d->last >= SMX_DET_REFRACTORY) {
      if (nout >= max_out) return -1;
      out[nout++] = g;
      d->last = g;
    }
  }
  d->done = mature;
  /* _schedule */
  due = d->n - SMX_DET_EDGE;
  for (i = 0; i < a.nq; i++) {
    int32_t g = c->qrs[i] + d->buf_start;
    if (g >= d->done && g - 2 < due) due = g - 2;
  }
  if (a.nc && a.ref > 0) {
    const smx_real *env = c->s.f.x + SMX_DET_CAP;
    for (i = 0; i < a.nc; i++) {
      int p = c->keep[i];
      int32_t soon = p + d->buf_start - SMX_DET_SEARCH - 1;
      if ((double)env[p] >= 0.15 * a.ref && soon >= d->done && soon < due) due = soon;
    }
  }
  d->due = due;
  keep_from = (d->done - SMX_DET_CONTEXT > 0 ? d->done - SMX_DET_CONTEXT : 0) - d->buf_start;
  if (keep_from > 0) {
    for (i = 0; i + keep_from < d->len; i++) d->buf[i] = d->buf[i + keep_from];
    d->len -= keep_from;
    d->buf_start += keep_from;
  }
  return nout;
}
