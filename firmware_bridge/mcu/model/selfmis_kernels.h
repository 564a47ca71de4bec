/* selfmis_kernels.h -- the int8 operators of SelfMIS students as plain C99, bit-exact to TensorFlow Lite's
 * reference integer kernels (the ones TensorFlow Lite Micro runs).
 *
 * `selfmis deploy export-c --engine plain` writes a model file (smx_model.c) that holds the weights and the
 * per-operator parameters as `const` data (flash) and calls these kernels in order over one static arena.
 * No interpreter, no heap, no float: every requantisation is TFLite's MultiplyByQuantizedMultiplier
 * (double rounding: gemmlowp's SaturatingRoundingDoublingHighMul then RoundingDivideByPOT), with the
 * multipliers and shifts computed at generation time exactly as TFLite's QuantizeMultiplier does.
 *
 * Layouts are TFLite's: activations NHWC (row major), conv filters OHWI, fully-connected weights [out][in].
 * Requirements: a C99 compiler whose `>>` on a negative int32_t is an arithmetic shift (gcc, clang, armcc,
 * IAR all are; checked below) and a two's complement int32_t.
 */
#ifndef SELFMIS_KERNELS_H
#define SELFMIS_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* TFLite's MultiplyByQuantizedMultiplier (int32 overload, double rounding): round(x * m * 2^shift / 2^31). */
int32_t smx_mbqm(int32_t x, int32_t multiplier, int32_t shift);

/* CONV_2D, per-channel (or per-tensor: the generator repeats the one multiplier) int8, grouped when the
 * filter's input depth is smaller than the input's (groups = in_c / k_in_c), zero padding by skipping taps
 * outside the image as TFLite does. */
typedef struct {
    int32_t batches, in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t k_h, k_w, k_in_c;
    int32_t stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
    int32_t input_offset;            /* -input zero point */
    int32_t output_offset;           /* output zero point */
    int32_t act_min, act_max;        /* fused activation as an int8 clamp */
    const int8_t *filter;            /* [out_c][k_h][k_w][k_in_c] */
    const int32_t *bias;             /* [out_c] or NULL */
    const int32_t *multiplier;       /* [out_c] */
    const int32_t *shift;            /* [out_c] */
    /* [out_c]: bias + input_offset * (sum of the channel's filter taps), for output positions whose taps
     * all fall inside the image: there sum(w * (x + offset)) + bias == sum(w * x) + bias_full exactly. */
    const int32_t *bias_full;
} smx_conv_params;

void smx_conv2d_s8(const smx_conv_params *p, const int8_t *input, int8_t *output);

/* FULLY_CONNECTED int8: per-channel (filter_offset 0) or per-tensor (multiplier repeated, filter_offset =
 * -filter zero point, as TFLite's per-tensor kernel applies it). */
typedef struct {
    int32_t batches, in_depth, out_depth;
    int32_t input_offset, filter_offset, output_offset;
    int32_t act_min, act_max;
    const int8_t *filter;            /* [out_depth][in_depth] */
    const int32_t *bias;             /* [out_depth] or NULL */
    const int32_t *multiplier;       /* [out_depth] */
    const int32_t *shift;            /* [out_depth] */
} smx_fc_params;

void smx_fully_connected_s8(const smx_fc_params *p, const int8_t *input, int8_t *output);

/* MEAN int8 over one contiguous block of axes (the generator merges the shape into outer x reduce x inner):
 * TFLite's QuantizedMeanOrSum: the int32 sum, minus zero point x count, times the multiplier already
 * divided by the count at generation time, plus the output zero point, clamped. */
typedef struct {
    int32_t outer, reduce, inner;
    int32_t input_zero_point, output_zero_point;
    int32_t multiplier, shift;
} smx_mean_params;

void smx_mean_s8(const smx_mean_params *p, const int8_t *input, int8_t *output);

/* PAD int8 (up to 4 dimensions, fewer are left-filled with 1): the input copied into the middle, the rest
 * filled with the output zero point. */
typedef struct {
    int32_t in_dims[4];
    int32_t before[4], after[4];
    int8_t pad_value;
} smx_pad_params;

void smx_pad_s8(const smx_pad_params *p, const int8_t *input, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* SELFMIS_KERNELS_H */
