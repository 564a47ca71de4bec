/*
 * selfmis_frame.c -- SelfMIS wire protocol v1, see selfmis_frame.h.
 *
 * The decoder mirrors StreamDecoder in protocol.py step by step (same
 * resync rule, same counters, same error offsets) so that the shared test
 * vectors expect identical events from both.
 */
#include "selfmis_frame.h"

#include <string.h>

/* IEEE-754 binary32 is assumed for float (true on AVR, ARM, Xtensa, RISC-V). */
typedef char sm_float_is_32bit[(sizeof(float) == 4) ? 1 : -1];

/* ---- CRC-16/CCITT-FALSE, bitwise: 8 shifts per byte, no 512-byte table,
 * which matters more than speed on an 8-bit MCU at a few kB/s. ---------- */
uint16_t sm_crc16_update(uint16_t crc, const uint8_t *data, size_t len)
{
    size_t i;
    int b;
    for (i = 0; i < len; i++) {
        crc ^= (uint16_t)((uint16_t)data[i] << 8);
        for (b = 0; b < 8; b++) {
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
        }
    }
    return crc;
}

uint16_t sm_crc16(const uint8_t *data, size_t len)
{
    return sm_crc16_update(0xFFFFu, data, len);
}

unsigned sm_sample_width(uint8_t sample_format)
{
    switch (sample_format) {
    case SM_FMT_INT16_LE: return 2;
    case SM_FMT_INT24_LE: return 3;
    case SM_FMT_INT32_LE: return 4;
    default: return 0;
    }
}

/* ---- little-endian helpers ------------------------------------------------ */
static void put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

static void put_f32(uint8_t *p, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | ((uint16_t)p[1] << 8)); }

static float get_f32(const uint8_t *p)
{
    uint32_t v = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    float f;
    memcpy(&f, &v, 4);
    return f;
}

/* ---- encoding ---------------------------------------------------------------- */
static size_t finish_frame(uint8_t *out, uint8_t version, uint8_t frame_type, uint16_t payload_len)
{
    uint16_t crc;
    out[0] = SM_SYNC0;
    out[1] = SM_SYNC1;
    out[2] = version;
    out[3] = frame_type;
    put_u16(out + 4, payload_len);
    crc = sm_crc16(out + 2, 4u + payload_len);
    put_u16(out + SM_HEADER_LEN + payload_len, crc);
    return SM_FRAME_OVERHEAD + payload_len;
}

size_t sm_encode_raw(uint8_t *out, size_t cap, uint8_t version, uint8_t frame_type,
                     const uint8_t *payload, uint16_t payload_len)
{
    if (cap < SM_FRAME_OVERHEAD + (size_t)payload_len) return 0;
    if (payload_len) memmove(out + SM_HEADER_LEN, payload, payload_len);
    return finish_frame(out, version, frame_type, payload_len);
}

size_t sm_encode_data(uint8_t *out, size_t cap, uint16_t seq, uint8_t flags,
                      uint8_t sample_format, float fs_hz,
                      const int32_t *samples, uint16_t n_samples)
{
    unsigned width = sm_sample_width(sample_format);
    size_t payload_len, i;
    uint8_t *p;
    if (width == 0) return 0;
    payload_len = SM_DATA_FIXED_LEN + (size_t)n_samples * width;
    if (payload_len > 0xFFFFu || cap < SM_FRAME_OVERHEAD + payload_len) return 0;
    p = out + SM_HEADER_LEN;
    put_u16(p, seq);
    p[2] = flags;
    p[3] = sample_format;
    put_f32(p + 4, fs_hz);
    put_u16(p + 8, n_samples);
    p += SM_DATA_FIXED_LEN;
    for (i = 0; i < n_samples; i++) {
        uint32_t v = (uint32_t)samples[i]; /* two's complement, low bytes first */
        unsigned k;
        for (k = 0; k < width; k++) *p++ = (uint8_t)(v >> (8u * k));
    }
    return finish_frame(out, SM_PROTOCOL_VERSION, SM_FRAME_DATA, (uint16_t)payload_len);
}

static size_t put_str(uint8_t *p, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n > 255) return (size_t)-1;
    p[0] = (uint8_t)n;
    if (n) memcpy(p + 1, s, n);
    return n + 1;
}

size_t sm_encode_hello(uint8_t *out, size_t cap, const sm_hello_t *h)
{
    size_t l1 = h->lead ? strlen(h->lead) : 0;
    size_t l2 = h->firmware_version ? strlen(h->firmware_version) : 0;
    size_t l3 = h->device_id ? strlen(h->device_id) : 0;
    size_t payload_len = 9 + 3 + l1 + l2 + l3;
    uint8_t *p;
    if (sm_sample_width(h->sample_format) == 0 || l1 > 255 || l2 > 255 || l3 > 255) return 0;
    if (cap < SM_FRAME_OVERHEAD + payload_len) return 0;
    p = out + SM_HEADER_LEN;
    p[0] = h->sample_format;
    put_f32(p + 1, h->fs_hz);
    put_f32(p + 5, h->uv_per_lsb);
    p += 9;
    p += put_str(p, h->lead);
    p += put_str(p, h->firmware_version);
    p += put_str(p, h->device_id);
    return finish_frame(out, SM_PROTOCOL_VERSION, SM_FRAME_HELLO, (uint16_t)payload_len);
}

/* ---- payload parsing ------------------------------------------------------- */
/* fs_hz and uv_per_lsb must be positive and finite: NaN fails every comparison. */
static int valid_rate(float x) { return x > 0.0f && x <= 1e9f; }

int32_t sm_data_sample(const sm_data_view_t *d, uint16_t i)
{
    unsigned w = sm_sample_width(d->sample_format);
    const uint8_t *p = d->raw + (size_t)i * w;
    uint32_t v = 0;
    unsigned k;
    for (k = 0; k < w; k++) v |= (uint32_t)p[k] << (8u * k);
    if (w < 4 && (p[w - 1] & 0x80u)) v |= ~((1u << (8u * w)) - 1u); /* sign-extend */
    return (int32_t)v;
}

int sm_parse_data(const uint8_t *payload, uint16_t len, sm_data_view_t *out)
{
    unsigned w;
    if (len < SM_DATA_FIXED_LEN) return -1;
    out->seq = get_u16(payload);
    out->flags = payload[2];
    out->sample_format = payload[3];
    out->fs_hz = get_f32(payload + 4);
    out->n_samples = get_u16(payload + 8);
    out->raw = payload + SM_DATA_FIXED_LEN;
    w = sm_sample_width(out->sample_format);
    if (w == 0 || !valid_rate(out->fs_hz)) return -1;
    /* trailing bytes after the samples are reserved for v1 extensions: ignored */
    if ((size_t)len < SM_DATA_FIXED_LEN + (size_t)out->n_samples * w) return -1;
    return 0;
}

static int get_str(const uint8_t *payload, uint16_t len, size_t *pos,
                   const uint8_t **s, uint8_t *n)
{
    if (*pos >= len) return -1;
    *n = payload[*pos];
    if (*pos + 1u + *n > len) return -1;
    *s = payload + *pos + 1;
    *pos += 1u + *n;
    return 0;
}

int sm_parse_hello(uint8_t version, const uint8_t *payload, uint16_t len, sm_hello_view_t *out)
{
    size_t pos = 9;
    if (len < SM_HELLO_FIXED_LEN) return -1;
    out->protocol_version = version;
    out->sample_format = payload[0];
    out->fs_hz = get_f32(payload + 1);
    out->uv_per_lsb = get_f32(payload + 5);
    if (sm_sample_width(out->sample_format) == 0) return -1;
    if (!valid_rate(out->fs_hz) || !valid_rate(out->uv_per_lsb)) return -1;
    if (get_str(payload, len, &pos, &out->lead, &out->lead_len)) return -1;
    if (get_str(payload, len, &pos, &out->firmware_version, &out->firmware_version_len)) return -1;
    if (get_str(payload, len, &pos, &out->device_id, &out->device_id_len)) return -1;
    /* UTF-8 validity is left to the host; firmware only compares bytes. */
    return 0;
}

/* ---- incremental decoder ----------------------------------------------- */
void sm_decoder_init(sm_decoder_t *d, sm_event_cb cb, void *ctx)
{
    memset(d, 0, sizeof(*d));
    d->max_payload = SM_MAX_PAYLOAD;
    d->cb = cb;
    d->ctx = ctx;
}

static void emit_error(sm_decoder_t *d, uint32_t offset, sm_error_t err)
{
    sm_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = SM_EV_ERROR;
    ev.offset = offset;
    ev.error = err;
    if (d->cb) d->cb(d->ctx, &ev);
}

/* Drop n bytes from the front (junk); report the first junk of an episode. */
static void skip(sm_decoder_t *d, size_t *start, size_t n, sm_error_t err)
{
    if (n == 0) return;
    if (!d->quiet) {
        emit_error(d, d->buf_offset, err);
        d->quiet = 1;
    }
    *start += n;
    d->buf_offset += (uint32_t)n;
    d->bytes_skipped += (uint32_t)n;
}

/* Reject the candidate frame at the front: report it, drop one byte. */
static void fail(sm_decoder_t *d, size_t *start, sm_error_t err)
{
    emit_error(d, d->buf_offset, err);
    d->quiet = 1;
    *start += 1;
    d->buf_offset += 1;
    d->bytes_skipped += 1;
}

static int known_type(uint8_t t) { return t == SM_FRAME_HELLO || t == SM_FRAME_DATA; }

static uint16_t min_payload(uint8_t t)
{
    return t == SM_FRAME_DATA ? SM_DATA_FIXED_LEN : t == SM_FRAME_HELLO ? SM_HELLO_FIXED_LEN : 0;
}

static void parse(sm_decoder_t *d, int final)
{
    size_t start = 0;
    while (start < d->len) {
        const uint8_t *b = d->buf + start;
        size_t avail = d->len - start, i, total;
        uint8_t version, ftype;
        uint16_t length, got, want;
        sm_event_t ev;

        for (i = 0; i + 1 < avail; i++) {
            if (b[i] == SM_SYNC0 && b[i + 1] == SM_SYNC1) break;
        }
        if (i + 1 >= avail) { /* no SYNC; keep a trailing A5 (half a SYNC) */
            size_t keep = (b[avail - 1] == SM_SYNC0 && !final) ? 1 : 0;
            skip(d, &start, avail - keep, SM_ERR_JUNK);
            break;
        }
        if (i) {
            skip(d, &start, i, SM_ERR_JUNK);
            continue;
        }
        if (avail < SM_HEADER_LEN) {
            if (final) skip(d, &start, avail, SM_ERR_TRUNCATED);
            break;
        }
        version = b[2];
        ftype = b[3];
        length = get_u16(b + 4);
        if (length > d->max_payload || length > SM_MAX_PAYLOAD) { fail(d, &start, SM_ERR_LENGTH); continue; }
        if (version == SM_PROTOCOL_VERSION && length < min_payload(ftype)) {
            fail(d, &start, SM_ERR_LENGTH);
            continue;
        }
        total = SM_HEADER_LEN + (size_t)length + SM_CRC_LEN;
        if (avail < total) {
            if (final) { fail(d, &start, SM_ERR_TRUNCATED); continue; }
            break;
        }
        got = get_u16(b + total - 2);
        want = sm_crc16(b + 2, total - 4);
        if (got != want) {
            d->crc_errors++;
            fail(d, &start, SM_ERR_CRC);
            continue;
        }
        memset(&ev, 0, sizeof(ev));
        ev.offset = d->buf_offset;
        ev.version = version;
        ev.frame_type = ftype;
        ev.payload = b + SM_HEADER_LEN;
        ev.payload_len = length;
        start += total;
        d->buf_offset += (uint32_t)total;
        d->quiet = 0;
        if (version != SM_PROTOCOL_VERSION || !known_type(ftype)) {
            d->frames_unknown++;
            if (d->report_unknown && d->cb) { ev.kind = SM_EV_UNKNOWN; d->cb(d->ctx, &ev); }
            continue;
        }
        if (ftype == SM_FRAME_DATA ? sm_parse_data(ev.payload, length, &ev.data)
                                   : sm_parse_hello(version, ev.payload, length, &ev.hello)) {
            d->frames_malformed++;
            ev.kind = SM_EV_ERROR;
            ev.error = SM_ERR_MALFORMED;
            if (d->cb) d->cb(d->ctx, &ev);
            continue;
        }
        d->frames_ok++;
        ev.kind = ftype == SM_FRAME_DATA ? SM_EV_DATA : SM_EV_HELLO;
        if (d->cb) d->cb(d->ctx, &ev);
    }
    if (start) {
        memmove(d->buf, d->buf + start, d->len - start);
        d->len -= start;
    }
}

void sm_decoder_feed(sm_decoder_t *d, const uint8_t *data, size_t len)
{
    while (len) {
        /* parse() always leaves less than one maximal frame, so there is room */
        size_t room = sizeof(d->buf) - d->len;
        size_t n = len < room ? len : room;
        memcpy(d->buf + d->len, data, n);
        d->len += n;
        data += n;
        len -= n;
        parse(d, 0);
    }
}

void sm_decoder_flush(sm_decoder_t *d)
{
    parse(d, 1);
}
