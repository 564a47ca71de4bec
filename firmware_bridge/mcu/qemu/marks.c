/* Instruction-count markers: empty functions whose addresses trace_count.c watches for
 * in QEMU's execution trace (begin/end of a push, of a scored beat, of the model). */
#define MARK(name) __attribute__((noinline, used)) void name(void) { __asm__ volatile(""); }
MARK(smx_mark_push_begin)
MARK(smx_mark_push_end)
MARK(smx_mark_score_begin)
MARK(smx_mark_score_end)
MARK(smx_mark_model_begin)
MARK(smx_mark_model_end)
void smx_mark(int what) { if (what) smx_mark_push_begin(); else smx_mark_push_end(); }
