/* The sketch's work without the Arduino core: what ad8232_decide.ino does per ADC sample,
 * built for Cortex-M4F with the same toolchain (CI) and run under QEMU for the memory figures.
 *
 * Samples come from input.f32 (semihosting) instead of analogRead; decisions become DECISION
 * frames in a buffer instead of BLE notifications. Prints, through semihosting:
 *   M stack <high-water bytes> chain <sizeof(smx_chain)> frames <n> bytes <n> decisions <n> error <code>
 */
#include "selfmis_chain.h"
#include "selfmis_decision.h"

int smx_sh_open(const char *path);
int smx_sh_read(int fd, void *buf, uint32_t len);
void smx_sh_write0(const char *s);
uint32_t smx_stack_high_water(void);

static smx_chain chain;
static uint8_t frame[SM_DECISION_FRAME_LEN(16, 32)];
static uint32_t n_frames, n_bytes;
static uint16_t seq;

static void on_event(void *user, const smx_event *ev) {
  sm_decision_t d;
  (void)user;
  if (ev->type != SMX_EV_DECISION) return;
  d.seq = seq++;
  d.t_ms = (uint32_t)(ev->t * 1000.0 + 0.5);
  d.bundle_id = SMX_BUNDLE_ID;
  d.state = ev->state;
  d.n_beats = ev->n_beats;
  d.active = ev->active;
  d.hr = (float)ev->hr;
  d.n_labels = SMX_N_LABELS;
  d.p = ev->p;
  d.operating_point = SMX_OPERATING_POINT;
  n_bytes += (uint32_t)sm_encode_decision(frame, sizeof frame, &d);  /* the sketch: ble_send(frame, n) */
  n_frames++;
}

static char *put_u(char *p, const char *label, uint32_t v) {
  char tmp[12];
  int n = 0;
  while (*label) *p++ = *label++;
  do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
  while (n) *p++ = tmp[--n];
  return p;
}

int main(void) {
  static float buf[64];
  char line[160], *p = line;
  int fd = smx_sh_open("input.f32"), got, i, err;
  err = smx_chain_init(&chain, SMX_FS_IN, on_event, 0);
  while (!err && fd >= 0 && (got = smx_sh_read(fd, buf, sizeof buf)) > 0) {
    for (i = 0; i < got / 4 && !err; i++) err = smx_chain_push(&chain, &buf[i], 1, 0);  /* one ADC sample */
  }
  p = put_u(p, "M stack ", smx_stack_high_water());
  p = put_u(p, " chain ", (uint32_t)sizeof chain);
  p = put_u(p, " frames ", n_frames);
  p = put_u(p, " bytes ", n_bytes);
  p = put_u(p, " decisions ", (uint32_t)chain.n_decisions);
  p = put_u(p, " error ", (uint32_t)err);
  *p++ = '\n';
  *p = 0;
  smx_sh_write0(line);
  return err;
}
