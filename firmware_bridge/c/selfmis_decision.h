/* selfmis_decision.h -- the DECISION frame (type 0x03) for firmware, C99, no heap.
 *
 * What a wearable that decides on its own (firmware_bridge/mcu/chain) sends instead of
 * samples; layout in ../PROTOCOL.md "DECISION", decoded by selfmis.protocol.
 *
 *   seq u16 | t_ms u32 | bundle_id u32 | state u8 | n_beats u8 | active u16 |
 *   hr_decibpm u16 (0xFFFF unknown) | n_labels u8 | n_labels x p u16 (p x 65535) |
 *   operating point (u8 length + UTF-8)
 */
#ifndef SELFMIS_DECISION_H
#define SELFMIS_DECISION_H
#include <stddef.h>
#include <stdint.h>
#include "selfmis_frame.h"

#define SM_FRAME_DECISION 0x03u
#define SM_DECISION_FIXED_LEN 17u
#define SM_DECISION_FRAME_LEN(n_labels, op_len) \
  (SM_FRAME_OVERHEAD + SM_DECISION_FIXED_LEN + 2u * (n_labels) + 1u + (op_len))

typedef struct {
  uint16_t seq;
  uint32_t t_ms;            /* signal time of the beat, ms since the device started */
  uint32_t bundle_id;       /* first 4 bytes of the bundle's sha256, big-endian */
  uint8_t state;            /* 0 off, 1 onset, 2 ongoing, 3 cleared (primary label) */
  uint8_t n_beats;
  uint16_t active;          /* bit j: label j's alarm is on */
  float hr;                 /* bpm, < 0 when unknown */
  uint8_t n_labels;         /* 1..16 */
  const double *p;          /* n_labels probabilities in [0, 1] */
  const char *operating_point;
} sm_decision_t;

/* Bytes written to out (0 when cap is too small or the fields are out of range). */
size_t sm_encode_decision(uint8_t *out, size_t cap, const sm_decision_t *d);
#endif
