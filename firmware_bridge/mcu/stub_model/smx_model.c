/* TEST-ONLY stub: out[j] = clamp(zp + floor(sum_i in[(37 j + 5 i) mod W] / 8)), i < 100.
 * tests/test_wearable_chain.py mirrors it in numpy. */
#include "smx_model.h"
const float smx_model_input_scale = SMX_IN_SCALE;
const int32_t smx_model_input_zero_point = SMX_IN_ZP;
const float smx_model_output_scale = SMX_OUT_SCALE;
const int32_t smx_model_output_zero_point = SMX_OUT_ZP;
int smx_model_invoke(const int8_t *input, int8_t *output) {
  int j, i;
  for (j = 0; j < SMX_MODEL_OUTPUT_LEN; j++) {
    int32_t s = 0, v;
    for (i = 0; i < 100; i++) s += input[(37 * j + 5 * i) % SMX_MODEL_INPUT_LEN];
    v = SMX_OUT_ZP + (s >= 0 ? s / 8 : -((-s + 7) / 8));
    output[j] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
  }
  return 0;
}
