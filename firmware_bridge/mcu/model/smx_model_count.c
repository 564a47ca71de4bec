/* smx_model_count.c -- one smx_model_invoke() between the instruction-count markers, for QEMU
 * (mcu/qemu: startup.c, marks.c, mps2_an386.ld; the trace is counted by mcu/qemu/trace_count.c).
 * Used by `python -m selfmis.benchmarks.wearable_model`: the model's instructions per invoke on
 * Cortex-M4F code. The input is a fixed synthetic int8 pattern; the count depends on the data only
 * through the clamps' conditional instructions. */
#include <stdint.h>

#include "smx_model.h"

void smx_mark_model_begin(void);
void smx_mark_model_end(void);

int main(void)
{
    static int8_t in[SMX_MODEL_INPUT_LEN], out[SMX_MODEL_OUTPUT_LEN];
    int i, rc;
    for (i = 0; i < SMX_MODEL_INPUT_LEN; i++) {
        in[i] = (int8_t)((i * 37) % 200 - 100);
    }
    smx_mark_model_begin();
    rc = smx_model_invoke(in, out);
    smx_mark_model_end();
    return rc;
}
