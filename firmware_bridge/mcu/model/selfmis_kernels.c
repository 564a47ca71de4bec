/* selfmis_kernels.c -- see selfmis_kernels.h. Each kernel follows TFLite's reference integer kernel
 * (tensorflow/lite/kernels/internal/reference/integer_ops/{conv,fully_connected}.h, reference/reduce.h
 * QuantizedMeanOrSum, reference/pad.h) term for term where rounding is concerned; only the loop order and
 * the tap bounds are arranged for a small core (integer sums are exact in any order). */
#include "selfmis_kernels.h"

#include <stddef.h>

/* The rounding below relies on an arithmetic right shift of negative values, as TFLite's does. */
typedef char smx_arithmetic_shift_check[((-8 >> 1) == -4 && ((int64_t)-8 >> 1) == -4) ? 1 : -1];

/* gemmlowp::SaturatingRoundingDoublingHighMul: (a * b + nudge) / 2^31 truncated toward zero, nudge
 * 2^30 for a non-negative product and 1 - 2^30 for a negative one. Both cases equal the floor of
 * (a * b + 2^30) / 2^31 (for a negative t = ab + 1 - 2^30, trunc(t / 2^31) = (t + 2^31 - 1) >> 31), so
 * one 64-bit multiply-add and an arithmetic shift give TFLite's value exactly. */
static inline int32_t srdhm(int32_t a, int32_t b)
{
    if (a == b && a == INT32_MIN) {
        return INT32_MAX;
    }
    return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

/* gemmlowp::RoundingDivideByPOT: round half away from zero */
static inline int32_t rdbypot(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

static inline int32_t requant(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    /* x * (1 << left) as TFLite computes it, without signed-overflow UB in C */
    const int32_t scaled = (int32_t)((uint32_t)x << left);
    return rdbypot(srdhm(scaled, multiplier), right);
}

int32_t smx_mbqm(int32_t x, int32_t multiplier, int32_t shift)
{
    return requant(x, multiplier, shift);
}

static inline int8_t clamp_s8(int32_t v, int32_t lo, int32_t hi)
{
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    return (int8_t)v;
}

/* First and one-past-last tap k in [0, taps) with 0 <= origin + dil * k < size. */
static void tap_range(int32_t origin, int32_t dil, int32_t taps, int32_t size, int32_t *lo, int32_t *hi)
{
    int32_t a = 0, b = taps;
    while (a < taps && origin + dil * a < 0) {
        a++;
    }
    while (b > a && origin + dil * (b - 1) >= size) {
        b--;
    }
    *lo = a;
    *hi = b;
}

/* sum of n products w[i] * x[i] added to acc, four at a time */
static int32_t dot_s8(const int8_t *w, const int8_t *x, int32_t n, int32_t acc)
{
    for (; n >= 4; n -= 4, w += 4, x += 4) {
        acc += (int32_t)w[0] * x[0] + (int32_t)w[1] * x[1] + (int32_t)w[2] * x[2] + (int32_t)w[3] * x[3];
    }
    for (; n > 0; n--) {
        acc += (int32_t)*w++ * *x++;
    }
    return acc;
}

/* One output position at an image border: TFLite's loop, taps outside the image skipped, the input
 * offset added to every tap that is inside. */
static int32_t conv_border(const smx_conv_params *p, const int8_t *in_b, int32_t y0, int32_t x0, int32_t ylo,
                           int32_t yhi, int32_t xlo, int32_t xhi, int32_t oc, int32_t group_off)
{
    int32_t acc = 0, fy, fx, ic;
    for (fy = ylo; fy < yhi; fy++) {
        const int8_t *in_row = in_b + (size_t)(y0 + p->dil_h * fy) * p->in_w * p->in_c;
        for (fx = xlo; fx < xhi; fx++) {
            const int8_t *x = in_row + (size_t)(x0 + p->dil_w * fx) * p->in_c + group_off;
            const int8_t *w = p->filter + ((size_t)(oc * p->k_h + fy) * p->k_w + fx) * p->k_in_c;
            for (ic = 0; ic < p->k_in_c; ic++) {
                acc += (int32_t)w[ic] * ((int32_t)x[ic] + p->input_offset);
            }
        }
    }
    return p->bias != NULL ? acc + p->bias[oc] : acc;
}

/* One output position whose taps are all inside, one input channel a filter (depthwise-shaped groups or
 * a single-channel input): a channel's taps in a register, strided through the window. */
static void conv_inside_1ch(const smx_conv_params *p, const int8_t *window, int32_t per_group, int8_t *out)
{
    const int32_t out_c = p->out_c, k_h = p->k_h, k_w = p->k_w;
    const int32_t off = p->output_offset, lo = p->act_min, hi = p->act_max;
    const size_t step_x = (size_t)p->dil_w * p->in_c, step_y = (size_t)p->dil_h * p->in_w * p->in_c;
    const int8_t *w = p->filter;
    const int32_t *const bias_full = p->bias_full, *const mult = p->multiplier, *const shift = p->shift;
    int32_t oc, fy, fx;
    for (oc = 0; oc < out_c; oc++) {
        const int8_t *x = window + (per_group == 1 ? oc : oc / per_group);
        int32_t acc = bias_full[oc];
        for (fy = 0; fy < k_h; fy++, x += step_y) {
            const int8_t *xr = x;
            for (fx = 0; fx < k_w; fx++, xr += step_x) {
                acc += (int32_t)*w++ * *xr;
            }
        }
        out[oc] = clamp_s8(requant(acc, mult[oc], shift[oc]) + off, lo, hi);
    }
}

/* One output position whose taps are all inside: sum(w * x) + bias_full (the input offset folded in).
 * Integer sums are exact in any order, so every path gives TFLite's accumulator. */
static void conv_inside(const smx_conv_params *p, const int8_t *window, int32_t per_group, int8_t *out)
{
    const int32_t out_c = p->out_c, k_in_c = p->k_in_c, k_h = p->k_h, k_w = p->k_w;
    const size_t step_x = (size_t)p->dil_w * p->in_c, step_y = (size_t)p->dil_h * p->in_w * p->in_c;
    const int8_t *w = p->filter;
    int32_t oc, fy, fx;
    if (k_in_c == 1) {
        conv_inside_1ch(p, window, per_group, out);
        return;
    }
    for (oc = 0; oc < out_c; oc++) {
        const int8_t *x = window + (size_t)(oc / per_group) * k_in_c;
        int32_t acc = p->bias_full[oc];
        for (fy = 0; fy < k_h; fy++, x += step_y) {
            const int8_t *xr = x;
            for (fx = 0; fx < k_w; fx++, xr += step_x, w += k_in_c) {
                acc = dot_s8(w, xr, k_in_c, acc);
            }
        }
        out[oc] = clamp_s8(requant(acc, p->multiplier[oc], p->shift[oc]) + p->output_offset, p->act_min,
                           p->act_max);
    }
}

/* 1x1 filter, one group, no padding: every position is inside; the parameters are copied to locals
 * (an int8 store may alias anything, which would make the compiler reload them after each output). */
static void conv_pointwise(const smx_conv_params *p, const int8_t *in_b, int8_t *out)
{
    const int32_t n_in = p->in_c, out_c = p->out_c, off = p->output_offset, lo = p->act_min, hi = p->act_max;
    const int32_t out_h = p->out_h, out_w = p->out_w, in_w = p->in_w, sh = p->stride_h, sw = p->stride_w;
    const int8_t *const filter = p->filter;
    const int32_t *const bias_full = p->bias_full, *const mult = p->multiplier, *const shift = p->shift;
    int32_t oy, ox, oc, i;
    for (oy = 0; oy < out_h; oy++) {
        for (ox = 0; ox < out_w; ox++, out += out_c) {
            const int8_t *x = in_b + ((size_t)oy * sh * in_w + (size_t)ox * sw) * n_in;
            const int8_t *w = filter;
            for (oc = 0; oc + 2 <= out_c; oc += 2, w += 2 * n_in) {  /* two channels share each x load */
                const int8_t *w1 = w + n_in;
                int32_t acc0 = bias_full[oc], acc1 = bias_full[oc + 1];
                for (i = 0; i < n_in; i++) {
                    const int32_t xv = x[i];
                    acc0 += (int32_t)w[i] * xv;
                    acc1 += (int32_t)w1[i] * xv;
                }
                out[oc] = clamp_s8(requant(acc0, mult[oc], shift[oc]) + off, lo, hi);
                out[oc + 1] = clamp_s8(requant(acc1, mult[oc + 1], shift[oc + 1]) + off, lo, hi);
            }
            for (; oc < out_c; oc++, w += n_in) {
                int32_t acc = bias_full[oc];
                for (i = 0; i < n_in; i++) {
                    acc += (int32_t)w[i] * x[i];
                }
                out[oc] = clamp_s8(requant(acc, mult[oc], shift[oc]) + off, lo, hi);
            }
        }
    }
}

void smx_conv2d_s8(const smx_conv_params *p, const int8_t *input, int8_t *output)
{
    const int32_t per_group = p->out_c / (p->in_c / p->k_in_c);
    int32_t b, oy, ox, oc;
    for (b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + (size_t)b * p->in_h * p->in_w * p->in_c;
        if (p->k_h == 1 && p->k_w == 1 && p->k_in_c == p->in_c && p->pad_h == 0 && p->pad_w == 0
            && (p->out_h - 1) * p->stride_h < p->in_h && (p->out_w - 1) * p->stride_w < p->in_w) {
            conv_pointwise(p, in_b, output);
            output += (size_t)p->out_h * p->out_w * p->out_c;
            continue;
        }
        for (oy = 0; oy < p->out_h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t ylo, yhi;
            tap_range(y0, p->dil_h, p->k_h, p->in_h, &ylo, &yhi);
            const int row_inside = ylo == 0 && yhi == p->k_h;
            for (ox = 0; ox < p->out_w; ox++, output += p->out_c) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int32_t xlo, xhi;
                if (row_inside && x0 >= 0 && x0 + (p->k_w - 1) * p->dil_w < p->in_w) {
                    conv_inside(p, in_b + ((size_t)y0 * p->in_w + x0) * p->in_c, per_group, output);
                    continue;
                }
                tap_range(x0, p->dil_w, p->k_w, p->in_w, &xlo, &xhi);
                for (oc = 0; oc < p->out_c; oc++) {
                    const int32_t acc = conv_border(p, in_b, y0, x0, ylo, yhi, xlo, xhi, oc,
                                                    (oc / per_group) * p->k_in_c);
                    output[oc] = clamp_s8(requant(acc, p->multiplier[oc], p->shift[oc]) + p->output_offset,
                                          p->act_min, p->act_max);
                }
            }
        }
    }
}

void smx_fully_connected_s8(const smx_fc_params *p, const int8_t *input, int8_t *output)
{
    int32_t b, oc, d;
    for (b = 0; b < p->batches; b++) {
        const int8_t *x = input + (size_t)b * p->in_depth;
        for (oc = 0; oc < p->out_depth; oc++) {
            const int8_t *w = p->filter + (size_t)oc * p->in_depth;
            int32_t acc = 0;
            for (d = 0; d < p->in_depth; d++) {
                acc += ((int32_t)w[d] + p->filter_offset) * ((int32_t)x[d] + p->input_offset);
            }
            if (p->bias != NULL) {
                acc += p->bias[oc];
            }
            acc = requant(acc, p->multiplier[oc], p->shift[oc]) + p->output_offset;
            *output++ = clamp_s8(acc, p->act_min, p->act_max);
        }
    }
}

void smx_mean_s8(const smx_mean_params *p, const int8_t *input, int8_t *output)
{
    const int32_t zero_sum = p->input_zero_point * p->reduce;
    int32_t o, i, r;
    for (o = 0; o < p->outer; o++) {
        const int8_t *base = input + (size_t)o * p->reduce * p->inner;
        for (i = 0; i < p->inner; i++) {
            int32_t sum = 0, v;
            for (r = 0; r < p->reduce; r++) {
                sum += base[(size_t)r * p->inner + i];
            }
            v = requant(sum - zero_sum, p->multiplier, p->shift) + p->output_zero_point;
            *output++ = clamp_s8(v, -128, 127);
        }
    }
}

void smx_pad_s8(const smx_pad_params *p, const int8_t *input, int8_t *output)
{
    int32_t od[4], i0, i1, i2, i3, k;
    for (k = 0; k < 4; k++) {
        od[k] = p->before[k] + p->in_dims[k] + p->after[k];
    }
    for (i0 = 0; i0 < od[0]; i0++) {
        const int in0 = i0 >= p->before[0] && i0 < p->before[0] + p->in_dims[0];
        for (i1 = 0; i1 < od[1]; i1++) {
            const int in1 = in0 && i1 >= p->before[1] && i1 < p->before[1] + p->in_dims[1];
            for (i2 = 0; i2 < od[2]; i2++) {
                const int in2 = in1 && i2 >= p->before[2] && i2 < p->before[2] + p->in_dims[2];
                for (i3 = 0; i3 < od[3]; i3++) {
                    const int inside = in2 && i3 >= p->before[3] && i3 < p->before[3] + p->in_dims[3];
                    *output++ = inside ? *input++ : p->pad_value;
                }
            }
        }
    }
}
