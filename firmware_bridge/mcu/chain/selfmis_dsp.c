/* The arithmetic the chain needs without libm: a mixed-radix FFT, exp, sqrt, sorting.
 *
 * Why no libm: glibc and newlib differ in the last bit of cos/exp, and the point of the
 * host build is to print exactly what the Cortex-M4F prints. Everything here is plain
 * IEEE-754 arithmetic (+ - * / and the correctly rounded square root), so with
 * -ffp-contract=off both compilers produce the same bits.
 *
 * The FFT is a recursive decimation-in-time mixed-radix transform in the style of
 * KISS FFT (M. Borgerding, BSD): radix-4 and radix-2 butterflies, a generic one for odd
 * primes up to SMX_MAX_RADIX. It serves the gateway's zero-phase FFT filter of the beat
 * window (0.5-40 Hz on W + 2*pad points), whose twiddles c_chain.py writes into flash.
 */
#include <string.h>
#include "selfmis_chain.h"

static const double inv_i[15] = {0.0, 1.0, 1.0 / 2, 1.0 / 3, 1.0 / 4, 1.0 / 5, 1.0 / 6, 1.0 / 7, 1.0 / 8,
                                  1.0 / 9, 1.0 / 10, 1.0 / 11, 1.0 / 12, 1.0 / 13, 1.0 / 14};

/* exp(x), double: Cody-Waite reduction by ln 2, Taylor to r^14 on |r| <= ln2/2 (< 1 ulp-ish) */
double smx_exp(double x) {
  const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  double r, s, p;
  int32_t k, i;
  union { double d; uint64_t u; } scale;
  if (x > 709.0) return 1.0 / 0.0;
  if (x < -745.0) return 0.0;
  k = (int32_t)(x * 1.44269504088896340736 + (x >= 0 ? 0.5 : -0.5));
  r = (x - k * ln2_hi) - k * ln2_lo;
  s = 1.0;
  for (i = 14; i >= 1; i--) s = 1.0 + r * inv_i[i] * s;  /* multiplications: a soft-double divide costs ~10x */
  p = s;
  /* times 2^k in two steps so that large |k| stay normal */
  if (k > 1000) { k -= 1000; scale.u = (uint64_t)(1023 + 1000) << 52; p *= scale.d; }
  if (k < -1000) { k += 1000; scale.u = (uint64_t)(1023 - 1000) << 52; p *= scale.d; }
  scale.u = (uint64_t)(1023 + k) << 52;
  return p * scale.d;
}

smx_real smx_sqrt(smx_real x) { return __builtin_sqrtf(x); }
double smx_sqrt_d(double x) { return __builtin_sqrt(x); }

/* Shell sort (Ciura gaps): in place, ascending; a few hundred elements at most */
static const int gaps[] = {57, 23, 10, 4, 1};
/* Doubles sorted by their bits: an IEEE-754 double's bit pattern, read as a signed 64-bit
 * integer with the magnitude bits of negatives flipped, orders as the number does (-0 just
 * below +0, which compare equal: the sorted values are the same). The Cortex-M4F has no double
 * FPU, and a soft-double comparison costs ~20 instructions where a 64-bit one costs ~4. */
static int64_t key_of(const double *v) {  /* memcpy: no type punning through pointers */
  int64_t i;
  memcpy(&i, v, sizeof i);
  return i >= 0 ? i : i ^ INT64_MAX;
}
static void put_key(double *v, int64_t k) { memcpy(v, &k, sizeof k); }
static int64_t get_key(const double *v) { int64_t k; memcpy(&k, v, sizeof k); return k; }
void smx_sort_d(double *v, int n) {  /* the keys live in v's own storage while it is sorted */
  int g, i, j;
  for (i = 0; i < n; i++) put_key(v + i, key_of(v + i));
  for (g = 0; g < 5; g++) {
    int h = gaps[g];
    for (i = h; i < n; i++) {
      int64_t t = get_key(v + i);
      for (j = i; j >= h && get_key(v + j - h) > t; j -= h) put_key(v + j, get_key(v + j - h));
      put_key(v + j, t);
    }
  }
  for (i = 0; i < n; i++) {
    int64_t k = get_key(v + i);
    k = k >= 0 ? k : k ^ INT64_MAX;
    memcpy(v + i, &k, sizeof k);
  }
}
void smx_sort_f(smx_real *v, int n) {
  int g, i, j;
  for (g = 0; g < 5; g++) {
    int h = gaps[g];
    for (i = h; i < n; i++) {
      smx_real t = v[i];
      for (j = i; j >= h && v[j - h] > t; j -= h) v[j] = v[j - h];
      v[j] = t;
    }
  }
}

/* ---------------------------------------------------------------- FFT */

/* a * twiddle k (k < n): the table holds k <= n/2, the rest is the conjugate of n - k */
#define CMUL_TW(o, a, k) do { smx_real ar_ = (a).r, ai_ = (a).i, wr_, wi_; int k_ = (k); \
    if (2 * k_ <= n) { wr_ = tw[k_].r; wi_ = tw[k_].i; } else { wr_ = tw[n - k_].r; wi_ = -tw[n - k_].i; } \
    (o).r = ar_ * wr_ - ai_ * wi_; (o).i = ar_ * wi_ + ai_ * wr_; } while (0)

static void bfly2(smx_cpx *f, int fstride, const smx_cpx *tw, int m, int n) {
  smx_cpx *f2 = f + m, t;
  int k;
  for (k = 0; k < m; k++) {
    CMUL_TW(t, f2[k], k * fstride);
    f2[k].r = f[k].r - t.r; f2[k].i = f[k].i - t.i;
    f[k].r += t.r; f[k].i += t.i;
  }
}

static void bfly4(smx_cpx *f, int fstride, const smx_cpx *tw, int m, int n) {
  smx_cpx s0, s1, s2, s3, s4, s5;
  int k;
  for (k = 0; k < m; k++) {
    CMUL_TW(s0, f[k + m], k * fstride);
    CMUL_TW(s1, f[k + 2 * m], 2 * k * fstride);
    CMUL_TW(s2, f[k + 3 * m], 3 * k * fstride);
    s5.r = f[k].r - s1.r; s5.i = f[k].i - s1.i;
    f[k].r += s1.r; f[k].i += s1.i;
    s3.r = s0.r + s2.r; s3.i = s0.i + s2.i;
    s4.r = s0.r - s2.r; s4.i = s0.i - s2.i;
    f[k + 2 * m].r = f[k].r - s3.r; f[k + 2 * m].i = f[k].i - s3.i;
    f[k].r += s3.r; f[k].i += s3.i;
    f[k + m].r = s5.r + s4.i; f[k + m].i = s5.i - s4.r;
    f[k + 3 * m].r = s5.r - s4.i; f[k + 3 * m].i = s5.i + s4.r;
  }
}

#define TW_AT(o, k) do { int k_ = (k); if (2 * k_ <= n) { (o) = tw[k_]; } \
    else { (o).r = tw[n - k_].r; (o).i = -tw[n - k_].i; } } while (0)

static void bfly3(smx_cpx *f, int fstride, const smx_cpx *tw, int m, int n) {
  smx_cpx s0, s1, s2, s3, epi3;
  int k;
  TW_AT(epi3, fstride * m);
  for (k = 0; k < m; k++) {
    CMUL_TW(s1, f[k + m], k * fstride);
    CMUL_TW(s2, f[k + 2 * m], 2 * k * fstride);
    s3.r = s1.r + s2.r; s3.i = s1.i + s2.i;
    s0.r = s1.r - s2.r; s0.i = s1.i - s2.i;
    f[k + m].r = f[k].r - s3.r * (smx_real)0.5; f[k + m].i = f[k].i - s3.i * (smx_real)0.5;
    s0.r *= epi3.i; s0.i *= epi3.i;
    f[k].r += s3.r; f[k].i += s3.i;
    f[k + 2 * m].r = f[k + m].r + s0.i; f[k + 2 * m].i = f[k + m].i - s0.r;
    f[k + m].r -= s0.i; f[k + m].i += s0.r;
  }
}

static void bfly5(smx_cpx *f, int fstride, const smx_cpx *tw, int m, int n) {
  smx_cpx s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, ya, yb;
  smx_cpx *f0 = f, *f1 = f + m, *f2 = f + 2 * m, *f3 = f + 3 * m, *f4 = f + 4 * m;
  int u;
  TW_AT(ya, fstride * m);
  TW_AT(yb, 2 * fstride * m);
  for (u = 0; u < m; u++) {
    s0 = f0[u];
    CMUL_TW(s1, f1[u], u * fstride);
    CMUL_TW(s2, f2[u], 2 * u * fstride);
    CMUL_TW(s3, f3[u], 3 * u * fstride);
    CMUL_TW(s4, f4[u], 4 * u * fstride);
    s7.r = s1.r + s4.r; s7.i = s1.i + s4.i; s10.r = s1.r - s4.r; s10.i = s1.i - s4.i;
    s8.r = s2.r + s3.r; s8.i = s2.i + s3.i; s9.r = s2.r - s3.r; s9.i = s2.i - s3.i;
    f0[u].r = s0.r + s7.r + s8.r; f0[u].i = s0.i + s7.i + s8.i;
    s5.r = s0.r + s7.r * ya.r + s8.r * yb.r; s5.i = s0.i + s7.i * ya.r + s8.i * yb.r;
    s6.r = s10.i * ya.i + s9.i * yb.i; s6.i = -s10.r * ya.i - s9.r * yb.i;
    f1[u].r = s5.r - s6.r; f1[u].i = s5.i - s6.i;
    f4[u].r = s5.r + s6.r; f4[u].i = s5.i + s6.i;
    s11.r = s0.r + s7.r * yb.r + s8.r * ya.r; s11.i = s0.i + s7.i * yb.r + s8.i * ya.r;
    s12.r = -s10.i * yb.i + s9.i * ya.i; s12.i = s10.r * yb.i - s9.r * ya.i;
    f2[u].r = s11.r + s12.r; f2[u].i = s11.i + s12.i;
    f3[u].r = s11.r - s12.r; f3[u].i = s11.i - s12.i;
  }
}

static void bfly_generic(smx_cpx *f, int fstride, const smx_cpx *tw, int m, int p, int n) {
  smx_cpx scratch[SMX_MAX_RADIX], t;
  int u, q1, q, k;
  for (u = 0; u < m; u++) {
    for (q1 = 0, k = u; q1 < p; q1++, k += m) scratch[q1] = f[k];
    for (q1 = 0, k = u; q1 < p; q1++, k += m) {
      int twidx = 0;
      f[k] = scratch[0];
      for (q = 1; q < p; q++) {
        twidx += fstride * k;
        if (twidx >= n) twidx -= n;
        CMUL_TW(t, scratch[q], twidx);
        f[k].r += t.r; f[k].i += t.i;
      }
    }
  }
}

/* KISS FFT's recursion; twiddle k of this length is tw[k * ts] of the table's length n
 * (ts = 2: the half-length transform of the real-input FFT uses the full length's table) */
static void work(smx_cpx *out, const smx_cpx *in, int fstride, const int *fac, const smx_cpx *tw, int n, int ts) {
  const int p = fac[0], m = fac[1];
  int q;
  if (m == 1) {
    for (q = 0; q < p; q++) out[q] = in[q * fstride];
  } else {
    for (q = 0; q < p; q++) work(out + q * m, in + q * fstride, fstride * p, fac + 2, tw, n, ts);
  }
  if (p == 2) bfly2(out, fstride * ts, tw, m, n);
  else if (p == 4) bfly4(out, fstride * ts, tw, m, n);
  else if (p == 3) bfly3(out, fstride * ts, tw, m, n);
  else if (p == 5) bfly5(out, fstride * ts, tw, m, n);
  else bfly_generic(out, fstride * ts, tw, m, p, n);
}

static int factorise(int n, int *fac) {
  int p = 4, k = 0;
  do {
    while (n % p) {
      p = (p == 4) ? 2 : (p == 2 ? 3 : p + 2);
      if (p * p > n) p = n;
    }
    if (p > SMX_MAX_RADIX) return -1;
    n /= p;
    fac[k++] = p;
    fac[k++] = n;
  } while (n > 1);
  return 0;
}

/* The real-input FFT of x (even length n = 2M) from one complex FFT of length M,
 * z[m] = x[2m] + i x[2m+1] (c->s.fft.a -> Z in c->s.fft.b), times the real gain, and back the
 * same way: the half-length inverse transform gives y[2m] and y[2m+1] as the real and
 * imaginary parts of one output. Half the butterflies of one complex FFT each way.
 * For k and j = M - k (indices mod M, w = exp(-2 pi i / n)):
 *   E_k = (Z_k + conj Z_j) / 2,  O_k = (Z_k - conj Z_j) / 2i,  X_k = E_k + w^k O_k   (k = 0..M)
 *   Y_k = g_k X_k;  Z'_k = (Y_k + conj Y_j) + i conj(w^k) (Y_k - conj Y_j)          (k = 0..M-1)
 *   y[2m] + i y[2m+1] = (1/n) sum_k Z'_k exp(+2 pi i m k / M) = conj(fft(conj Z'))[m] / n */
static void real_filter(smx_chain *c, int nfft, const int *fac, const smx_cpx *tw, const smx_real *gain,
                        int n_gain) {
  smx_cpx *a = c->s.fft.a, *b = c->s.fft.b;
  const int M = nfft / 2, n = nfft;  /* n: the table's length, as TW_AT reads it */
  smx_real inv = (smx_real)1 / (smx_real)nfft, *y = c->s.f.y, h = (smx_real)0.5;
  int k, m;
  work(b, a, 1, fac, tw, nfft, 2);
  for (k = 0; 2 * k <= M; k++) {
    int j = k ? M - k : 0, t;
    smx_cpx zk = b[k], zj = b[j], Y[2], W[2], out[2];
    for (t = 0; t < 2; t++) {  /* X_k (t = 0) and X_{M-k} (t = 1, for k = 0: X_M) */
      smx_cpx p = t ? zj : zk, q = t ? zk : zj, e, o, w;
      int idx = t ? M - k : k, kk = idx;
      smx_real g;
      TW_AT(w, idx);
      e.r = (p.r + q.r) * h; e.i = (p.i - q.i) * h;
      o.r = (p.i + q.i) * h; o.i = (q.r - p.r) * h;   /* (p - conj q) / 2i */
      g = kk < n_gain ? gain[kk] : 0;
      Y[t].r = (e.r + (w.r * o.r - w.i * o.i)) * g;
      Y[t].i = (e.i + (w.r * o.i + w.i * o.r)) * g;
      W[t] = w;
    }
    if (k == 0) { Y[0].i = 0; Y[1].i = 0; }  /* X_0, X_M are real: irfft reads their real parts */
    for (t = 0; t < (k == 0 || 2 * k == M ? 1 : 2); t++) {  /* Z'_k, Z'_{M-k}: stored conjugated */
      smx_cpx p = Y[t], q = Y[1 - t], d, r;
      smx_cpx w = k == 0 ? W[0] : W[t];
      d.r = p.r - q.r; d.i = p.i + q.i;                 /* Y_k - conj Y_j */
      r.r = d.r * w.r + d.i * w.i; r.i = d.i * w.r - d.r * w.i;   /* conj(w) d */
      out[t].r = (p.r + q.r) - r.i;                      /* (Y_k + conj Y_j) + i r */
      out[t].i = (p.i - q.i) + r.r;
    }
    b[k].r = out[0].r; b[k].i = -out[0].i;
    if (k && 2 * k != M) { b[j].r = out[1].r; b[j].i = -out[1].i; }
  }
  work(a, b, 1, fac, tw, nfft, 2);
  /* y overlays a: y[2m], y[2m+1] are a[m].r, a[m].i themselves */
  for (m = 0; m < M; m++) { smx_real re = a[m].r, im = a[m].i; y[2 * m] = re * inv; y[2 * m + 1] = -(im * inv); }
}

/* c->s.f.y[0..nfft) = the real part of irfft(rfft(x zero-padded to nfft) * gain), x = c->s.f.x[0..n):
 * numpy's rfft/irfft pair; an even length as a real-input FFT (real_filter), an odd one as one
 * complex FFT each way (the gain is real and even) */
void smx_fft_filter(smx_chain *c, int n, int nfft, const smx_real *gain, int n_gain) {
  int fac[64], k;
  smx_cpx *a = c->s.fft.a, *b = c->s.fft.b;
  const smx_cpx *tw;
  smx_real inv = (smx_real)1 / (smx_real)nfft, *y = c->s.f.y;
  const smx_real *x = c->s.f.x;
  const int half = nfft % 2 == 0;
  /* one length: the window's, whose twiddles are a table in flash (c_chain.py) */
  if (nfft != SMX_BP_M || n > nfft || factorise(half ? nfft / 2 : nfft, fac) < 0) { c->error = SMX_ERR_OVERFLOW; return; }
  tw = smx_bp_tw;
  if (half) {
    /* x overlays b; a is free */
    for (k = 0; k < nfft / 2; k++) {
      a[k].r = 2 * k < n ? x[2 * k] : 0;
      a[k].i = 2 * k + 1 < n ? x[2 * k + 1] : 0;
    }
    real_filter(c, nfft, fac, tw, gain, n_gain);
    return;
  }
  for (k = 0; k < nfft; k++) { a[k].r = k < n ? x[k] : 0; a[k].i = 0; }  /* x overlays b: read before b is written */
  work(b, a, 1, fac, tw, nfft, 1);
  for (k = 0; k < nfft; k++) {
    int kk = k <= nfft - k ? k : nfft - k;
    smx_real g = kk < n_gain ? gain[kk] : 0;
    b[k].r *= g;
    b[k].i = -(b[k].i * g);   /* conjugate: ifft(X) = conj(fft(conj(X))) / n */
  }
  work(a, b, 1, fac, tw, nfft, 1);
  /* y overlays a: y[k] is written after a[k'] for every k' <= k was read (float 2k' >= k) */
  for (k = 0; k < nfft; k++) y[k] = a[k].r * inv;
}
