/* selfmis_kernels.c -- see selfmis_kernels.h. Each kernel follows TFLite's reference integer kernel
 * (tensorflow/lite/kernels/internal/reference/integer_ops/{conv,fully_connected}.h, reference/reduce.h
 * QuantizedMeanOrSum, reference/pad.h) term for term where rounding is concerned; only the loop order and
 * the tap bounds are arranged for a small core (integer sums are exact in any order). */
#include "selfmis_kernels.h"

#include <stddef.h>

/* The rounding below relies on an arithmetic right shift of negative values, as TFLite's does. */
typedef char smx_arithmetic_shift_check[((-8 >> 1) == -4) ? 1 : -1];

/* gemmlowp::SaturatingRoundingDoublingHighMul */
static int32_t srdhm(int32_t a, int32_t b)
{
    int64_t ab, nudge;
    if (a == b && a == INT32_MIN) {
        return INT32_MAX;
    }
    ab = (int64_t)a * (int64_t)b;
    nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31)); /* C99 division truncates toward zero, as C++ */
}

/* gemmlowp::RoundingDivideByPOT: round half away from zero */
static int32_t rdbypot(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

int32_t smx_mbqm(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    /* x * (1 << left) as TFLite computes it, without signed-overflow UB in C */
    const int32_t scaled = (int32_t)((uint32_t)x << left);
    return rdbypot(srdhm(scaled, multiplier), right);
}

static int8_t clamp_s8(int32_t v, int32_t lo, int32_t hi)
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

void smx_conv2d_s8(const smx_conv_params *p, const int8_t *input, int8_t *output)
{
    const int32_t per_group = p->out_c / (p->in_c / p->k_in_c);
    int32_t b, oy, ox, oc;
    for (b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + (size_t)b * p->in_h * p->in_w * p->in_c;
        for (oy = 0; oy < p->out_h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t ylo, yhi;
            tap_range(y0, p->dil_h, p->k_h, p->in_h, &ylo, &yhi);
            for (ox = 0; ox < p->out_w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int32_t xlo, xhi;
                tap_range(x0, p->dil_w, p->k_w, p->in_w, &xlo, &xhi);
                const int full = ylo == 0 && yhi == p->k_h && xlo == 0 && xhi == p->k_w;
                for (oc = 0; oc < p->out_c; oc++) {
                    const int32_t group_off = (oc / per_group) * p->k_in_c;
                    int32_t acc, fy, fx, ic;
                    if (full) { /* every tap inside: the input offset is folded into bias_full */
                        const int8_t *w = p->filter + (size_t)oc * p->k_h * p->k_w * p->k_in_c;
                        acc = p->bias_full[oc];
                        for (fy = 0; fy < p->k_h; fy++) {
                            const int8_t *x = in_b + ((size_t)(y0 + p->dil_h * fy) * p->in_w + x0) * p->in_c
                                              + group_off;
                            for (fx = 0; fx < p->k_w; fx++) {
                                for (ic = 0; ic < p->k_in_c; ic++) {
                                    acc += (int32_t)w[ic] * (int32_t)x[ic];
                                }
                                w += p->k_in_c;
                                x += (size_t)p->dil_w * p->in_c;
                            }
                        }
                    } else { /* at a border: TFLite's loop, taps outside the image skipped */
                        acc = 0;
                        for (fy = ylo; fy < yhi; fy++) {
                            const int8_t *in_row = in_b + (size_t)(y0 + p->dil_h * fy) * p->in_w * p->in_c;
                            const int8_t *f_row = p->filter + ((size_t)(oc * p->k_h + fy) * p->k_w) * p->k_in_c;
                            for (fx = xlo; fx < xhi; fx++) {
                                const int8_t *x = in_row + (size_t)(x0 + p->dil_w * fx) * p->in_c + group_off;
                                const int8_t *w = f_row + (size_t)fx * p->k_in_c;
                                for (ic = 0; ic < p->k_in_c; ic++) {
                                    acc += (int32_t)w[ic] * ((int32_t)x[ic] + p->input_offset);
                                }
                            }
                        }
                        if (p->bias != NULL) {
                            acc += p->bias[oc];
                        }
                    }
                    acc = smx_mbqm(acc, p->multiplier[oc], p->shift[oc]) + p->output_offset;
                    *output++ = clamp_s8(acc, p->act_min, p->act_max);
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
            acc = smx_mbqm(acc, p->multiplier[oc], p->shift[oc]) + p->output_offset;
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
            v = smx_mbqm(sum - zero_sum, p->multiplier, p->shift) + p->output_zero_point;
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
