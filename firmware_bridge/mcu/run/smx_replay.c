/* Replay float32 samples through the chain, one sample per push, and print every event.
 *
 * The same program runs on the host (gcc) and on the Cortex-M4F under QEMU (semihosting
 * gives it fopen/printf): its output is the parity evidence. Input: little-endian float32
 * mV samples at SMX_FS_IN (argv[1], default "input.f32"). Output, one event per line, every
 * double as the 16 hex digits of its bits (so host and target are compared bit for bit):
 *   Q <block start> <reasons mask>
 *   B <r> <t> <rr> <hr>
 *   W <r> <int8 window, hex> <int8 model output, hex>     (only with -w)
 *   D <r> <t> <state> <active mask> <n_beats> <p_0> ... <p_L-1>
 *   E <error> <text>      (and exit status 1) | S <samples> <beats> <decisions>
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "selfmis_chain.h"

void smx_mark(int what);  /* instruction-count markers (qemu/); a no-op on the host */

static int show_windows;
static double fs_in = SMX_FS_IN;  /* host: -r RATE starts the chain at another rate (it must refuse) */
static smx_chain chain;

static void hexd(double v) {
  union { double d; uint64_t u; } b;
  b.d = v;
  printf(" %08lx%08lx", (unsigned long)(b.u >> 32), (unsigned long)(b.u & 0xffffffffu));
}

static int in_push;  /* the callback's printing is this harness's, not the chain's: not counted */

static void on_event(void *user, const smx_event *ev) {
  int i;
  (void)user;
  if (in_push) smx_mark(0);
  switch (ev->type) {
    case SMX_EV_QUALITY: printf("Q %ld %lu\n", (long)ev->r, (unsigned long)ev->quality); break;
    case SMX_EV_BEAT:
      printf("B %ld", (long)ev->r); hexd(ev->t); hexd(ev->rr); hexd(ev->hr); printf("\n");
      break;
    case SMX_EV_WINDOW:
      if (!show_windows) break;
      printf("W %ld ", (long)ev->r);
      for (i = 0; i < SMX_W; i++) printf("%02x", (unsigned)(uint8_t)ev->window[i]);
      printf(" ");
      for (i = 0; i < SMX_N_LABELS; i++) printf("%02x", (unsigned)(uint8_t)ev->logits_q[i]);
      printf("\n");
      break;
    case SMX_EV_DECISION:
      printf("D %ld", (long)ev->r); hexd(ev->t);
      printf(" %u %u %u", (unsigned)ev->state, (unsigned)ev->active, (unsigned)ev->n_beats);
      for (i = 0; i < SMX_N_LABELS; i++) hexd(ev->p[i]);
      printf("\n");
      break;
  }
  if (in_push) smx_mark(1);
}

static int run(const char *path) {
  FILE *f;
  float buf[256];
  size_t got, i;
  long n = 0;
  int err;
  f = fopen(path, "rb");
  if (!f) { printf("E 0 cannot open %s\n", path); return 1; }
  err = smx_chain_init(&chain, fs_in, on_event, 0);
  if (err == SMX_ERR_RATE) printf("E %d %s: input at %g Hz, generated for %g Hz\n", err, smx_chain_error_text(err), fs_in, SMX_FS_IN);
  if (err) { fclose(f); return 1; }
  while (!err && (got = fread(buf, sizeof(float), 256, f)) > 0) {
    for (i = 0; i < got && !err; i++, n++) {
      smx_mark(1);
      in_push = 1;
      err = smx_chain_push(&chain, &buf[i], 1, 0);
      in_push = 0;
      smx_mark(0);
    }
  }
  fclose(f);
  if (!err) err = smx_chain_flush(&chain);
  if (err) { printf("E %d %s\n", err, smx_chain_error_text(err)); return 1; }
  printf("S %ld %ld %ld\n", n, (long)chain.n_beats_total, (long)chain.n_decisions);
  return 0;
}

#ifdef SMX_TARGET
/* Cortex-M4F under QEMU: semihosting opens input.f32 in QEMU's working directory */
extern void initialise_monitor_handles(void);
uint32_t smx_stack_high_water(void);
int main(void) {
  int rc;
  initialise_monitor_handles();
  show_windows = 1;
  rc = run("input.f32");
  printf("M stack %lu chain %lu\n", (unsigned long)smx_stack_high_water(), (unsigned long)sizeof chain);
  fflush(stdout);
  return rc;
}
#else
int main(int argc, char **argv) {
  const char *path = "input.f32";
  int a;
  for (a = 1; a < argc; a++) {
    if (!strcmp(argv[a], "-w")) show_windows = 1;
    else if (!strcmp(argv[a], "-r") && a + 1 < argc) fs_in = atof(argv[++a]);
    else path = argv[a];
  }
  return run(path);
}
#endif
