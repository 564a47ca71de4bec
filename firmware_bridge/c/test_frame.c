/*
 * test_frame.c -- checks selfmis_frame.c against the vectors generated from
 * the Python encoder (test_vectors.h).  Built and run by
 * tests/test_fb_c.py:
 *
 *   gcc -std=c99 -Wall -Wextra -Werror -I. test_frame.c selfmis_frame.c -o test_frame
 *
 * Prints one line per failure and exits non-zero if anything failed.
 */
#include <stdio.h>
#include <string.h>

#include "selfmis_frame.h"
#include "test_vectors.h"

static int failures = 0;
static int checks = 0;

#define CHECK(cond, ...)                                          \
    do {                                                          \
        checks++;                                                 \
        if (!(cond)) {                                            \
            failures++;                                           \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);           \
            printf(__VA_ARGS__);                                  \
            printf("\n");                                         \
        }                                                         \
    } while (0)

#define MAX_EVENTS 64

typedef struct {
    tv_event_t ev[MAX_EVENTS];
    size_t n;
    /* copies of strings seen in HELLO events */
    char strings[MAX_EVENTS][3][256];
} collected_t;

static void copy_str(char *dst, const uint8_t *s, uint8_t n)
{
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static void on_event(void *ctx, const sm_event_t *e)
{
    collected_t *c = (collected_t *)ctx;
    tv_event_t *t;
    if (c->n >= MAX_EVENTS) return;
    t = &c->ev[c->n];
    memset(t, 0, sizeof(*t));
    switch (e->kind) {
    case SM_EV_DATA: {
        uint16_t i;
        t->kind = 'D';
        t->seq = e->data.seq;
        t->flags = e->data.flags;
        t->fmt = e->data.sample_format;
        t->n = e->data.n_samples;
        t->fs_hz = e->data.fs_hz;
        for (i = 0; i < e->data.n_samples; i++) t->sum += sm_data_sample(&e->data, i);
        break;
    }
    case SM_EV_HELLO:
        t->kind = 'H';
        t->fmt = e->hello.sample_format;
        t->fs_hz = e->hello.fs_hz;
        t->uv_per_lsb = e->hello.uv_per_lsb;
        copy_str(c->strings[c->n][0], e->hello.lead, e->hello.lead_len);
        copy_str(c->strings[c->n][1], e->hello.firmware_version, e->hello.firmware_version_len);
        copy_str(c->strings[c->n][2], e->hello.device_id, e->hello.device_id_len);
        t->lead = c->strings[c->n][0];
        t->firmware_version = c->strings[c->n][1];
        t->device_id = c->strings[c->n][2];
        break;
    case SM_EV_ERROR: t->kind = 'E'; t->offset = e->offset; break;
    case SM_EV_UNKNOWN: t->kind = 'U'; t->offset = e->offset; break;
    }
    c->n++;
}

static void compare_events(const char *name, const char *how, const collected_t *got,
                           const tv_event_t *want, size_t n_want)
{
    size_t i;
    CHECK(got->n == n_want, "%s (%s): %u events, expected %u", name, how,
          (unsigned)got->n, (unsigned)n_want);
    for (i = 0; i < got->n && i < n_want; i++) {
        const tv_event_t *g = &got->ev[i], *w = &want[i];
        CHECK(g->kind == w->kind, "%s (%s) event %u: kind %c, expected %c", name, how,
              (unsigned)i, g->kind, w->kind);
        if (g->kind != w->kind) continue;
        if (w->kind == 'D') {
            CHECK(g->seq == w->seq && g->flags == w->flags && g->fmt == w->fmt && g->n == w->n
                  && g->fs_hz == w->fs_hz && g->sum == w->sum,
                  "%s (%s) event %u: DATA seq=%u flags=%u fmt=%u n=%u sum=%lld differs",
                  name, how, (unsigned)i, g->seq, g->flags, g->fmt, g->n, (long long)g->sum);
        } else if (w->kind == 'H') {
            CHECK(g->fmt == w->fmt && g->fs_hz == w->fs_hz && g->uv_per_lsb == w->uv_per_lsb
                  && strcmp(g->lead, w->lead) == 0
                  && strcmp(g->firmware_version, w->firmware_version) == 0
                  && strcmp(g->device_id, w->device_id) == 0,
                  "%s (%s) event %u: HELLO differs", name, how, (unsigned)i);
        } else {
            CHECK(g->offset == w->offset, "%s (%s) event %u: offset %lu, expected %lu", name,
                  how, (unsigned)i, (unsigned long)g->offset, (unsigned long)w->offset);
        }
    }
}

/* Decode `c` fed in chunks of `chunk` bytes (0 = all at once). */
static void decode_case(const tv_case_t *c, size_t chunk, const char *how)
{
    static sm_decoder_t dec;  /* static: the buffer is ~1 kB */
    static collected_t got;
    size_t pos = 0;
    memset(&got, 0, sizeof(got));
    sm_decoder_init(&dec, on_event, &got);
    if (chunk == 0) chunk = c->len ? c->len : 1;
    while (pos < c->len) {
        size_t n = c->len - pos < chunk ? c->len - pos : chunk;
        sm_decoder_feed(&dec, c->bytes + pos, n);
        pos += n;
    }
    sm_decoder_flush(&dec);
    compare_events(c->name, how, &got, c->events, c->n_events);
    if (c->frames_ok || c->bytes_skipped || c->crc_errors || c->frames_unknown
        || c->frames_malformed) {
        CHECK(dec.frames_ok == c->frames_ok && dec.crc_errors == c->crc_errors
              && dec.bytes_skipped == c->bytes_skipped && dec.frames_unknown == c->frames_unknown
              && dec.frames_malformed == c->frames_malformed,
              "%s (%s): counters ok=%lu crc=%lu skipped=%lu unknown=%lu malformed=%lu differ",
              c->name, how, (unsigned long)dec.frames_ok, (unsigned long)dec.crc_errors,
              (unsigned long)dec.bytes_skipped, (unsigned long)dec.frames_unknown,
              (unsigned long)dec.frames_malformed);
    }
}

static void test_encode(const tv_case_t *c)
{
    uint8_t out[512];
    size_t n = 0;
    const tv_event_t *e = &c->events[0];
    if (e->kind == 'H') {
        sm_hello_t h;
        h.sample_format = e->fmt;
        h.fs_hz = e->fs_hz;
        h.uv_per_lsb = e->uv_per_lsb;
        h.lead = e->lead;
        h.firmware_version = e->firmware_version;
        h.device_id = e->device_id;
        n = sm_encode_hello(out, sizeof(out), &h);
    } else {
        static const int32_t none[1] = {0};
        n = sm_encode_data(out, sizeof(out), e->seq, e->flags, e->fmt, e->fs_hz,
                           c->samples ? c->samples : none, e->n);
    }
    CHECK(n == c->len && memcmp(out, c->bytes, n) == 0, "%s: encoded bytes differ (%u vs %u)",
          c->name, (unsigned)n, (unsigned)c->len);
    /* too small an output buffer is refused, not overrun */
    CHECK((e->kind == 'H' ? sm_encode_hello(out, c->len - 1, &(sm_hello_t){e->fmt, e->fs_hz,
                                           e->uv_per_lsb, e->lead, e->firmware_version,
                                           e->device_id})
                          : sm_encode_data(out, c->len - 1, e->seq, e->flags, e->fmt, e->fs_hz,
                                           c->samples, e->n)) == 0,
          "%s: encoder ignored the capacity", c->name);
}

static void test_samples(const tv_case_t *c)
{
    sm_data_view_t v;
    uint16_t i;
    if (c->events[0].kind != 'D' || !c->samples) return;
    CHECK(sm_parse_data(c->bytes + SM_HEADER_LEN, (uint16_t)(c->len - SM_FRAME_OVERHEAD), &v) == 0,
          "%s: parse failed", c->name);
    for (i = 0; i < v.n_samples; i++) {
        CHECK(sm_data_sample(&v, i) == c->samples[i], "%s: sample %u is %ld, expected %ld",
              c->name, i, (long)sm_data_sample(&v, i), (long)c->samples[i]);
    }
}

int main(void)
{
    size_t i;
    static const size_t chunks[] = {0, 1, 2, 3, 7, 64};
    const char *hows[] = {"whole", "1-byte", "2-byte", "3-byte", "7-byte", "64-byte"};
    size_t k;

    CHECK(sm_crc16((const uint8_t *)"123456789", 9) == TV_CRC_CHECK, "CRC check value");
    CHECK(sm_crc16((const uint8_t *)"123456789", 9) == 0x29B1u, "CRC-16/CCITT-FALSE check value");

    for (i = 0; i < TV_N_FRAMES; i++) {
        test_encode(&tv_frames[i]);
        test_samples(&tv_frames[i]);
        for (k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++)
            decode_case(&tv_frames[i], chunks[k], hows[k]);
    }
    for (i = 0; i < TV_N_STREAMS; i++) {
        for (k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++)
            decode_case(&tv_streams[i], chunks[k], hows[k]);
    }
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
