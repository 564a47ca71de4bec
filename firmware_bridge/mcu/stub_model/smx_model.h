/* TEST-ONLY stand-in for the generated plain-C model (same interface); deleted once
 * `selfmis deploy export-c --engine plain` lands. */
#ifndef SMX_MODEL_H
#define SMX_MODEL_H
#include <stdint.h>
#include "smx_chain_params.h"
#define SMX_MODEL_INPUT_LEN SMX_W
#define SMX_MODEL_OUTPUT_LEN SMX_N_LABELS
#define SMX_MODEL_ARENA_BYTES 0
extern const float smx_model_input_scale;
extern const int32_t smx_model_input_zero_point;
extern const float smx_model_output_scale;
extern const int32_t smx_model_output_zero_point;
int smx_model_invoke(const int8_t *input, int8_t *output);
#endif
