/*
 * selfmis_frame.h -- SelfMIS wire protocol (version 1) for firmware, C99.
 *
 * Byte-for-byte the same framing as selfmis/firmware_bridge/protocol.py;
 * the layout is specified in ../PROTOCOL.md and both implementations are
 * tested against the generated vectors in test_vectors.h / .json.
 *
 *   A5 5A | version | type | length (u16 LE) | payload | CRC-16 (u16 LE)
 *
 * CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over version..payload.
 *
 * No heap, no stdio; the decoder owns one fixed buffer of
 * SM_HEADER_LEN + SM_MAX_PAYLOAD + SM_CRC_LEN bytes (define SM_MAX_PAYLOAD
 * smaller before including this header on an AVR with 2 KB of RAM).
 * Floats are written as IEEE-754 binary32, little-endian, whatever the CPU.
 */
#ifndef SELFMIS_FRAME_H
#define SELFMIS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SM_SYNC0 0xA5u
#define SM_SYNC1 0x5Au
#define SM_PROTOCOL_VERSION 1u

#define SM_FRAME_HELLO 0x01u
#define SM_FRAME_DATA 0x02u

#define SM_FMT_INT16_LE 0x01u
#define SM_FMT_INT24_LE 0x02u
#define SM_FMT_INT32_LE 0x03u

#define SM_FLAG_LEAD_OFF 0x01u

#define SM_HEADER_LEN 6u
#define SM_CRC_LEN 2u
#define SM_FRAME_OVERHEAD (SM_HEADER_LEN + SM_CRC_LEN)
#define SM_DATA_FIXED_LEN 10u
#define SM_HELLO_FIXED_LEN 12u

#ifndef SM_MAX_PAYLOAD
#define SM_MAX_PAYLOAD 1024u
#endif

/* Bytes on the wire of a DATA frame with n samples of `width` bytes. */
#define SM_DATA_FRAME_LEN(n, width) (SM_FRAME_OVERHEAD + SM_DATA_FIXED_LEN + (size_t)(n) * (width))

/* BLE GATT (128-bit, this project's own); see PROTOCOL.md "BLE transport". */
#define SM_BLE_SERVICE_UUID "5e1f0001-6d15-4c8e-9d3a-3f6b2e0c7a11"
#define SM_BLE_DATA_CHAR_UUID "5e1f0002-6d15-4c8e-9d3a-3f6b2e0c7a11"
#define SM_BLE_CONTROL_CHAR_UUID "5e1f0003-6d15-4c8e-9d3a-3f6b2e0c7a11"
#define SM_CTRL_SEND_HELLO 0x01u
#define SM_CTRL_START 0x02u
#define SM_CTRL_STOP 0x03u

/* ---- CRC ---------------------------------------------------------------- */

/* Continue a CRC-16/CCITT-FALSE over more bytes (start with 0xFFFF). */
uint16_t sm_crc16_update(uint16_t crc, const uint8_t *data, size_t len);
/* CRC-16/CCITT-FALSE of a buffer; sm_crc16("123456789", 9) == 0x29B1. */
uint16_t sm_crc16(const uint8_t *data, size_t len);

/* ---- Encoding (return bytes written, 0 if `cap` is too small or args bad) */

/* Bytes per sample of a format code, 0 if unknown. */
unsigned sm_sample_width(uint8_t sample_format);

size_t sm_encode_raw(uint8_t *out, size_t cap, uint8_t version, uint8_t frame_type,
                     const uint8_t *payload, uint16_t payload_len);

/* Samples are ADC counts; they must fit the format (not clipped here). */
size_t sm_encode_data(uint8_t *out, size_t cap, uint16_t seq, uint8_t flags,
                      uint8_t sample_format, float fs_hz,
                      const int32_t *samples, uint16_t n_samples);

typedef struct {
    uint8_t sample_format;
    float fs_hz;
    float uv_per_lsb;            /* microvolts at the electrodes per ADC count */
    const char *lead;            /* NUL-terminated UTF-8, at most 255 bytes each */
    const char *firmware_version;
    const char *device_id;
} sm_hello_t;

size_t sm_encode_hello(uint8_t *out, size_t cap, const sm_hello_t *hello);

/* ---- Decoding ------------------------------------------------------------ */

typedef struct {
    uint16_t seq;
    uint8_t flags;
    uint8_t sample_format;
    float fs_hz;
    uint16_t n_samples;
    const uint8_t *raw;          /* n_samples * width bytes, little-endian */
} sm_data_view_t;

/* Sample i of a parsed DATA frame, sign-extended to int32. */
int32_t sm_data_sample(const sm_data_view_t *d, uint16_t i);

typedef struct {
    uint8_t protocol_version;
    uint8_t sample_format;
    float fs_hz;
    float uv_per_lsb;
    const uint8_t *lead; uint8_t lead_len;          /* not NUL-terminated */
    const uint8_t *firmware_version; uint8_t firmware_version_len;
    const uint8_t *device_id; uint8_t device_id_len;
} sm_hello_view_t;

/* Parse the payload of a CRC-valid frame; 0 on success, -1 if malformed. */
int sm_parse_data(const uint8_t *payload, uint16_t len, sm_data_view_t *out);
int sm_parse_hello(uint8_t version, const uint8_t *payload, uint16_t len, sm_hello_view_t *out);

typedef enum {
    SM_EV_HELLO = 1,
    SM_EV_DATA = 2,
    SM_EV_ERROR = 3,
    SM_EV_UNKNOWN = 4            /* only with report_unknown set */
} sm_event_kind_t;

typedef enum {
    SM_ERR_NONE = 0,
    SM_ERR_JUNK,                 /* bytes outside any frame (reported once per episode) */
    SM_ERR_LENGTH,               /* impossible length field */
    SM_ERR_CRC,
    SM_ERR_TRUNCATED,            /* stream ended inside a frame (flush) */
    SM_ERR_MALFORMED             /* valid CRC, invalid payload */
} sm_error_t;

typedef struct {
    sm_event_kind_t kind;
    uint32_t offset;             /* stream offset where the frame/junk starts (wraps at 4 GiB) */
    sm_error_t error;
    uint8_t version, frame_type;
    const uint8_t *payload; uint16_t payload_len;   /* valid during the callback only */
    sm_data_view_t data;         /* kind == SM_EV_DATA */
    sm_hello_view_t hello;       /* kind == SM_EV_HELLO */
} sm_event_t;

typedef void (*sm_event_cb)(void *ctx, const sm_event_t *ev);

typedef struct {
    uint8_t buf[SM_HEADER_LEN + SM_MAX_PAYLOAD + SM_CRC_LEN];
    size_t len;                  /* bytes held in buf */
    uint32_t buf_offset;         /* stream offset of buf[0] */
    uint16_t max_payload;        /* may be lowered after init, never above SM_MAX_PAYLOAD */
    uint8_t quiet;               /* inside an already reported corruption episode */
    uint8_t report_unknown;
    uint32_t frames_ok, crc_errors, bytes_skipped, frames_unknown, frames_malformed;
    sm_event_cb cb;
    void *ctx;
} sm_decoder_t;

void sm_decoder_init(sm_decoder_t *d, sm_event_cb cb, void *ctx);
/* Any chunking, down to one byte; events are delivered through cb. */
void sm_decoder_feed(sm_decoder_t *d, const uint8_t *data, size_t len);
/* End of stream: give up on a partial frame and rescan its bytes. */
void sm_decoder_flush(sm_decoder_t *d);

#ifdef __cplusplus
}
#endif

#endif /* SELFMIS_FRAME_H */
