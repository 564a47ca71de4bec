/* The quality gate's block statistics: edge_runtime/quality.py assess_block, bit for bit, cheaply.
 *
 * quality.py computes in float64 on the float32 samples: the amplitude (a quantile range of a
 * sorted copy), the second difference d2 = x[i+2] - 2 x[i+1] + x[i], and the larger of its two
 * halves' MAD (median, then median of |d2 - median|). The Cortex-M4F has no double FPU: each of
 * those ~300 subtractions is a ~60-instruction library call, and the five sorts were the chain's
 * largest cost after the model. Here, with no change to any result:
 *
 * - every float32 sample is an integer multiple of 2^lo, lo = the lowest exponent of a last
 *   mantissa bit in the block. When the block's exponents span at most SPAN_MAX bits, every
 *   double that quality.py computes (d2, the medians' sums, the deviations, their sums) is an
 *   integer multiple of 2^(lo - 2) below 2^53 of them: exact in float64, so float64 computes
 *   exactly the integers computed here in int64, and the comparisons come out the same;
 *   otherwise (a block mixing values 2^48 apart, never seen in ECG) the float64 path runs;
 * - medians by selection (the same order statistics a sort yields), not by sorting;
 * - the amplitude's quantiles: the minimum and maximum when k = 0 (blocks under 101 samples).
 */
#include <string.h>
#include "selfmis_chain.h"

#define SPAN_MAX 48

/* ---------------------------------------------------------------- selection */

/* the k-th smallest of v[0..n) (0-based); v is reordered (quickselect, median-of-three pivot) */
static int64_t select_i(int64_t *v, int n, int k) {
  int lo = 0, hi = n - 1;
  while (hi > lo) {
    int i = lo, j = hi, mid = lo + (hi - lo) / 2;
    int64_t a = v[lo], b = v[mid], c = v[hi], p;
    p = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
    while (i <= j) {
      while (v[i] < p) i++;
      while (v[j] > p) j--;
      if (i <= j) { int64_t t = v[i]; v[i] = v[j]; v[j] = t; i++; j--; }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return v[k];
  }
  return v[k];
}

/* v[(m-1)/2] + v[m/2] of v sorted (twice the median); v is reordered */
static int64_t median2(int64_t *v, int m) {
  int k = (m - 1) / 2, i;
  int64_t a = select_i(v, m, k), b;
  if (m % 2) return 2 * a;
  b = v[k + 1];  /* the smallest of the upper part: the next order statistic */
  for (i = k + 2; i < m; i++) if (v[i] < b) b = v[i];
  return a + b;
}

/* twice the MAD of v[0..m), in the units of v (v: integers; reordered, then overwritten) */
static int64_t mad2(int64_t *v, int m) {
  int64_t med2;
  int i;
  if (m <= 0) return 0;
  med2 = median2(v, m);
  for (i = 0; i < m; i++) {  /* |2 v - 2 med| */
    int64_t d = 2 * v[i] - med2;
    v[i] = d < 0 ? -d : d;
  }
  return median2(v, m);  /* 2 x (median of |v - med| x 2): units of v / 4 */
}

/* ---------------------------------------------------------------- the float64 path (wide blocks) */

static double median_sorted(const double *v, int m) { return 0.5 * (v[(m - 1) / 2] + v[m / 2]); }

static double mad_d(double *v, int m) {  /* sorts v */
  int i;
  double med;
  if (m <= 0) return 0.0;
  smx_sort_d(v, m);
  med = median_sorted(v, m);
  for (i = 0; i < m; i++) v[i] = v[i] - med < 0 ? med - v[i] : v[i] - med;
  smx_sort_d(v, m);
  return median_sorted(v, m);
}

static double noise_mad_d(const smx_real *x, int n) {
  double d2[SMX_Q_BLOCK], m1, m2;
  int i, h = (n - 2) / 2;
  for (i = 0; i < n - 2; i++) d2[i] = ((double)x[i + 2] - 2 * (double)x[i + 1]) + (double)x[i];
  m1 = mad_d(d2, h);
  m2 = mad_d(d2 + h, n - 2 - h);
  return m1 > m2 ? m1 : m2;
}

/* ---------------------------------------------------------------- the exact integer path */

static double pow2(int e) {  /* 2^e for -1022 <= e <= 1023, exact */
  union { double d; uint64_t u; } b;
  b.u = (uint64_t)(1023 + e) << 52;
  return b.d;
}

/* max(MAD of d2's halves) of x[0..n) (finite), or -1 when the block is too wide for int64 */
static double noise_mad_i(const smx_real *x, int n) {
  int64_t xi[SMX_Q_BLOCK], m1, m2;
  int32_t lo = 1000, hi = -1000;
  int i, h = (n - 2) / 2;
  for (i = 0; i < n; i++) {  /* exponent of the last mantissa bit, and of the top bit + 1 */
    uint32_t b;
    int32_t e;
    memcpy(&b, &x[i], sizeof b);
    if (!(b & 0x7fffffffu)) continue;
    e = (int32_t)((b >> 23) & 0xffu);
    e = e ? e - 150 : -149;
    if (e < lo) lo = e;
    if (e + 24 > hi) hi = e + 24;
  }
  if (hi < lo) return 0.0;  /* all zero */
  if (hi - lo > SPAN_MAX) return -1.0;
  for (i = 0; i < n; i++) {  /* x = xi 2^lo, exactly */
    uint32_t b;
    int32_t e;
    int64_t m;
    memcpy(&b, &x[i], sizeof b);
    e = (int32_t)((b >> 23) & 0xffu);
    m = (int64_t)(b & 0x7fffffu);
    if (e) m |= 0x800000; else e = 1;
    m <<= (e - 150) - lo;
    xi[i] = (b >> 31) ? -m : m;
  }
  for (i = 0; i < n - 2; i++) xi[i] = (xi[i + 2] - 2 * xi[i + 1]) + xi[i];  /* d2, in place */
  m1 = mad2(xi, h);
  m2 = mad2(xi + h, n - 2 - h);
  /* m = 4 x MAD in units of 2^lo: below 2^(SPAN_MAX + 5) < 2^53, so the double is exact */
  return (double)(m1 > m2 ? m1 : m2) * pow2(lo - 2);
}

/* quality.py assess_block (via QualityGate.assess: a stretch under half a block is not judged) */
uint32_t smx_assess(const smx_real *x, const uint8_t *fl, int n) {
  double amp, noise, m;
  smx_real lo, hi;
  int i, k, sat = 0;
  uint32_t r = 0;
  if (n < SMX_Q_BLOCK / 2) return 0;
  {  /* flags: 4 at a time, and one by one only when some lead-off or saturation flag is set */
    uint32_t any = 0, w;
    for (i = 0; i + 4 <= n; i += 4) { memcpy(&w, fl + i, 4); any |= w; }
    for (; i < n; i++) any |= fl[i];
    if (any & (SMX_F_LEAD_OFF | SMX_F_SAT) * 0x01010101u)
      for (i = 0; i < n; i++) { if (fl[i] & SMX_F_LEAD_OFF) r |= SMX_Q_LEAD_OFF; if (fl[i] & SMX_F_SAT) sat++; }
  }
  if (sat && (double)sat / n > 0.02) r |= SMX_Q_SATURATION;  /* quality.py: saturated fraction > 2% */
  if (r || n < 4) return r;
  /* quality.py's quantile index (a constant, folded by the compiler, for a whole block) */
  k = n == SMX_Q_BLOCK ? (int)(0.005 * (SMX_Q_BLOCK - 1) + 0.5) : (int)(0.005 * (n - 1) + 0.5);
  if (k == 0) {  /* float order is float64 order: the extremes in single precision */
    lo = hi = x[0];
    for (i = 1; i < n; i++) { if (x[i] < lo) lo = x[i]; if (x[i] > hi) hi = x[i]; }
    amp = (double)hi - (double)lo;
  } else {
    double xs[SMX_Q_BLOCK];
    for (i = 0; i < n; i++) xs[i] = (double)x[i];
    smx_sort_d(xs, n);
    amp = xs[n - 1 - k] - xs[k];
  }
  if (amp < SMX_Q_FLAT_MV) return SMX_Q_FLAT;
  if (amp > SMX_Q_MAX_MV) return SMX_Q_NOISE;
  m = noise_mad_i(x, n);
  if (m < 0) m = noise_mad_d(x, n);
  noise = m * 1.4826 / __builtin_sqrt(6.0);
  if (noise > SMX_Q_NOISE_RATIO * amp) r |= SMX_Q_NOISE;
  return r;
}
