/* selfmis_decision.c -- encoder of the DECISION frame (see selfmis_decision.h). */
#include "selfmis_decision.h"

static void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, v & 0xFFFFu); put16(p + 2, v >> 16); }

size_t sm_encode_decision(uint8_t *out, size_t cap, const sm_decision_t *d) {
  uint8_t payload[SM_DECISION_FIXED_LEN + 32 + 256];
  size_t op_len = 0, pos, i;
  uint32_t hr;
  if (!d || d->n_labels < 1 || d->n_labels > 16 || d->state > 3) return 0;
  while (d->operating_point && d->operating_point[op_len]) op_len++;
  if (op_len > 255) return 0;
  hr = d->hr < 0 ? 0xFFFFu : (uint32_t)(d->hr * 10.0f + 0.5f);
  if (hr > 0xFFFEu && d->hr >= 0) hr = 0xFFFEu;
  put16(payload, d->seq);
  put32(payload + 2, d->t_ms);
  put32(payload + 6, d->bundle_id);
  payload[10] = d->state;
  payload[11] = d->n_beats;
  put16(payload + 12, d->active);
  put16(payload + 14, hr);
  payload[16] = d->n_labels;
  pos = SM_DECISION_FIXED_LEN;
  for (i = 0; i < d->n_labels; i++, pos += 2) {
    double v = d->p[i] * 65535.0, f;
    uint32_t q;
    if (!(v >= 0.0) || v > 65535.0) return 0;
    q = (uint32_t)v;                     /* round half to even, as numpy.round */
    f = v - (double)q;
    if (f > 0.5 || (f == 0.5 && (q & 1u))) q++;
    put16(payload + pos, q);
  }
  payload[pos++] = (uint8_t)op_len;
  for (i = 0; i < op_len; i++) payload[pos++] = (uint8_t)d->operating_point[i];
  return sm_encode_raw(out, cap, SM_PROTOCOL_VERSION, SM_FRAME_DECISION, payload, (uint16_t)pos);
}
