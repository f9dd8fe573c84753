// fuzz_encoding.c - server/encoding.h: bounded inflate, the header parsers, gzip of replies;
// server/trace.h's traceparent parser, another header of server/; and server/change_msg.h's
// reader of the messages a shared store's channel carries (anyone who can publish there can
// send anything).
//
// Input: byte 0 picks the mode (low two bits) and, for inflate, bytes 1-2 the bound
// (max_out = 16 * value, so bombs reach it quickly) and byte 3 the budget (0: none, else
// 4096 * value); the rest is the data.
//   0, 1  srv_inflate as gzip / deflate. Oracles: a status of the enum; OK gives at most
//         max_out bytes, NUL-terminated, reserved == len + 1 and exactly that in the budget,
//         and the same bytes as a plain one-shot zlib inflate when that one ends the stream
//         with the input (a single member); any other status holds nothing and leaves the
//         budget empty.
//   2     the rest as a Content-Encoding and an Accept-Encoding value: the named bad coding
//         is NUL-terminated within its buffer, and the parsers never read past the value;
//         and as a traceparent: a valid one's reply is itself valid, with the same trace id;
//         and as a store's change message: one read formats back to a message read the same.
//   3     the rest as a reply body: srv_gzip_reply keeps it byte for byte unless it returns
//         COMPRESSED, and then the body is smaller and inflates back to the original.
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

#include "server/change_msg.h"
#include "server/encoding.h"
#include "server/trace.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return 0;
}

// One zlib inflate of a single stream into a buffer of max_out + 1 bytes; its length, or -1
// when the stream did not end exactly with the input (several members, error, too large).
static long reference_inflate(const uint8_t *in, size_t n, int window, uint8_t *out,
                              size_t max_out) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, window) != Z_OK)
        return -1;
    z.next_in = (uint8_t *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)(max_out + 1);
    int rc = inflate(&z, Z_FINISH);
    long len = rc == Z_STREAM_END && z.avail_in == 0 ? (long)z.total_out : -1;
    inflateEnd(&z);
    return len;
}

static int window_for(enum srv_coding c, const uint8_t *in, size_t n) {
    if (c == SRV_CODING_GZIP)
        return 16 + MAX_WBITS;
    bool zlib =
        n >= 2 && (in[0] & 0x0f) == 8 && (in[0] >> 4) <= 7 && ((in[0] << 8) | in[1]) % 31 == 0;
    return zlib ? MAX_WBITS : -MAX_WBITS;
}

static void fuzz_inflate(enum srv_coding c, const uint8_t *data, size_t size) {
    if (size < 4)
        return;
    size_t max_out = 16 * (size_t)(data[1] | data[2] << 8);
    struct nd_budget *b = nd_budget_create(data[3] ? 4096 * (int64_t)data[3] : 0);
    if (!b)
        return;
    const uint8_t *in = data + 4;
    size_t n = size - 4;
    struct srv_inflated out;
    enum srv_inflate_status st = srv_inflate(c, in, n, max_out, b, &out);
    if (st > SRV_INFLATE_NO_MEMORY)
        FUZZ_FAIL("status %d is not one of the enum", (int)st);
    uint8_t *ref = malloc(max_out + 1);
    long rlen = ref ? reference_inflate(in, n, window_for(c, in, n), ref, max_out) : -1;
    bool ref_ok = rlen >= 0 && (size_t)rlen <= max_out; // one whole stream within the bound
    if (st != SRV_INFLATE_OK) {
        if (out.data || out.len || out.reserved || nd_budget_used(b) != 0)
            FUZZ_FAIL("%s holds %zu bytes, budget %lld", srv_inflate_status_name(st), out.len,
                      (long long)nd_budget_used(b));
        if (ref_ok && (st == SRV_INFLATE_CORRUPT || st == SRV_INFLATE_TRUNCATED ||
                       st == SRV_INFLATE_TOO_LARGE))
            FUZZ_FAIL("%s, but zlib in one call inflates it to %ld bytes",
                      srv_inflate_status_name(st), rlen);
        free(ref);
        nd_budget_unref(b);
        return;
    }
    if (out.len > max_out || out.data[out.len] != '\0' || out.reserved != (int64_t)out.len + 1 ||
        nd_budget_used(b) != out.reserved)
        FUZZ_FAIL("ok: len %zu (max %zu), reserved %lld, budget %lld", out.len, max_out,
                  (long long)out.reserved, (long long)nd_budget_used(b));
    if (rlen >= 0 && ((size_t)rlen != out.len || memcmp(ref, out.data, out.len) != 0))
        FUZZ_FAIL("inflate gave %zu bytes, zlib in one call %ld", out.len, rlen);
    free(ref);
    free(out.data);
    nd_budget_give(b, out.reserved);
    nd_budget_unref(b);
}

static void fuzz_headers(const uint8_t *data, size_t size) {
    char *value = fuzz_strndup(data, size);
    if (!value)
        return;
    struct api_kv h[] = {{"Content-Encoding", value}, {"Accept-Encoding", value}};
    char bad[16];
    memset(bad, 'x', sizeof bad);
    if (srv_coding_of(h, 2, bad, sizeof bad) == SRV_CODING_UNSUPPORTED &&
        memchr(bad, '\0', sizeof bad) == NULL)
        FUZZ_FAIL("the unsupported coding's name is not terminated");
    (void)srv_accepts_gzip(h, 2);
    struct api_kv tp[] = {{"traceparent", value}};
    struct srv_trace t, back;
    srv_trace_parse(tp, 1, &t);
    srv_trace_reply(&t, size);
    if (t.valid) {
        tp[0].value = t.reply;
        srv_trace_parse(tp, 1, &back);
        if (!back.valid || strcmp(back.trace_id, t.trace_id) != 0)
            FUZZ_FAIL("the reply's traceparent %s does not carry %s", t.reply, t.trace_id);
    }
    free(value);
}

static void fuzz_change_msg(const uint8_t *data, size_t size) {
    struct srv_change c, back;
    if (!srv_change_parse((const char *)data, size, &c))
        return;
    char text[SRV_CHANGE_NAME_MAX + 32];
    int n = srv_change_format(&c, text, sizeof text);
    if (n < 0 || !srv_change_parse(text, (size_t)n, &back) || back.shared != c.shared ||
        back.version != c.version || strcmp(back.name, c.name) != 0)
        FUZZ_FAIL("the change message %.*s does not read back", n > 0 ? n : 0, text);
    if (strlen(c.name) == 0 || strlen(c.name) > SRV_CHANGE_NAME_MAX || strchr(c.name, ' '))
        FUZZ_FAIL("a change message gave the name \"%s\"", c.name);
}

static void fuzz_reply(const uint8_t *data, size_t size) {
    struct api_response r = {.status = 200, .content_type = "application/json"};
    r.body = malloc(size + 1);
    if (!r.body)
        return;
    memcpy(r.body, data, size);
    r.body_len = size;
    enum srv_gzip_outcome o = srv_gzip_reply(&r, "POST", true);
    if (o != SRV_GZIP_COMPRESSED) {
        if (r.body_len != size || memcmp(r.body, data, size) != 0)
            FUZZ_FAIL("a reply sent as is changed");
        if (o == SRV_GZIP_NONE && size >= SRV_GZIP_MIN_BYTES)
            FUZZ_FAIL("a %zu-byte JSON reply was not eligible", size);
        free(r.body);
        return;
    }
    struct srv_inflated back;
    if (r.body_len >= size ||
        srv_inflate(SRV_CODING_GZIP, r.body, r.body_len, size, NULL, &back) != SRV_INFLATE_OK)
        FUZZ_FAIL("the gzip'd reply (%zu of %zu bytes) does not inflate", r.body_len, size);
    if (back.len != size || memcmp(back.data, data, size) != 0)
        FUZZ_FAIL("the gzip'd reply inflates to %zu other bytes", back.len);
    free(back.data);
    free(r.body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    switch (data[0] & 3) {
    case 0:
        fuzz_inflate(SRV_CODING_GZIP, data, size);
        break;
    case 1:
        fuzz_inflate(SRV_CODING_DEFLATE, data, size);
        break;
    case 2:
        fuzz_headers(data + 1, size - 1);
        fuzz_change_msg(data + 1, size - 1);
        break;
    default:
        fuzz_reply(data + 1, size - 1);
    }
    return 0;
}
