// check_encoding.c - server/encoding.c: Content-Encoding and Accept-Encoding parsing, bounded
// and budgeted inflate (gzip, zlib and raw deflate; bombs, corrupt and truncated data), gzip
// of replies.
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "server/encoding.h"
#include "tests/check_suites.h"
#include "tests/test_rng.h"

// ---- helpers ----

// Compresses n bytes of in with windowBits wbits (31 gzip, 15 zlib, -15 raw) into a malloc'd
// buffer; *len is its size.
static unsigned char *zpack(int wbits, const void *in, size_t n, size_t *len) {
    z_stream z;
    memset(&z, 0, sizeof z);
    ck_assert_int_eq(deflateInit2(&z, 6, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&z, n) + 64;
    unsigned char *out = malloc(cap);
    ck_assert_ptr_nonnull(out);
    z.next_in = (unsigned char *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    ck_assert_int_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
    *len = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

// n bytes of JSON-like text that compresses well but not trivially.
static char *sample_text(size_t n) {
    char *s = malloc(n + 1);
    ck_assert_ptr_nonnull(s);
    for (size_t i = 0; i < n; i++)
        s[i] = "[0.125, -1.5e-3, 42]\n"[(i * 7 + i / 13) % 21];
    s[n] = '\0';
    return s;
}

static enum srv_coding coding(const char *value) {
    struct api_kv h[] = {{"Host", "x"}, {"content-encoding", value}};
    return srv_coding_of(h, value ? 2 : 1, NULL, 0);
}

static bool accepts(const char *value) {
    struct api_kv h[] = {{"Host", "x"}, {"accept-encoding", value}};
    return srv_accepts_gzip(h, value ? 2 : 1);
}

// Inflates in and checks it gives want (n bytes) under a fresh budget, all given back.
static void check_roundtrip(enum srv_coding c, const unsigned char *in, size_t inlen,
                            const char *want, size_t n) {
    struct nd_budget *b = nd_budget_create(0);
    struct srv_inflated out;
    ck_assert_int_eq(srv_inflate(c, in, inlen, n, b, &out), SRV_INFLATE_OK);
    ck_assert_uint_eq(out.len, n);
    ck_assert_mem_eq(out.data, want, n);
    ck_assert_int_eq(out.data[n], '\0');
    ck_assert_int_eq(nd_budget_used(b), out.reserved);
    ck_assert_int_eq(out.reserved, (int64_t)n + 1); // the doubling slack was handed back
    free(out.data);
    nd_budget_give(b, out.reserved);
    ck_assert_int_eq(nd_budget_used(b), 0);
    nd_budget_unref(b);
}

// ---- Content-Encoding ----

START_TEST(test_coding_parse) {
    ck_assert_int_eq(coding(NULL), SRV_CODING_IDENTITY);
    ck_assert_int_eq(coding(""), SRV_CODING_IDENTITY);
    ck_assert_int_eq(coding("identity"), SRV_CODING_IDENTITY);
    ck_assert_int_eq(coding("gzip"), SRV_CODING_GZIP);
    ck_assert_int_eq(coding("x-gzip"), SRV_CODING_GZIP);
    ck_assert_int_eq(coding("GZip"), SRV_CODING_GZIP);
    ck_assert_int_eq(coding("deflate"), SRV_CODING_DEFLATE);
    ck_assert_int_eq(coding(" identity , gzip ,"), SRV_CODING_GZIP);
    ck_assert_int_eq(coding("br"), SRV_CODING_UNSUPPORTED);
    ck_assert_int_eq(coding("gzip, gzip"), SRV_CODING_UNSUPPORTED);
    ck_assert_int_eq(coding("deflate, gzip"), SRV_CODING_UNSUPPORTED);
    ck_assert_int_eq(coding("gzip;q=1"), SRV_CODING_UNSUPPORTED);
    ck_assert_int_eq(coding("gzipx"), SRV_CODING_UNSUPPORTED);
    ck_assert_int_eq(coding("compress"), SRV_CODING_UNSUPPORTED);
}
END_TEST

START_TEST(test_coding_names_the_bad_one) {
    char bad[8];
    struct api_kv two[] = {{"Content-Encoding", "gzip"}, {"Content-Encoding", "deflate"}};
    ck_assert_int_eq(srv_coding_of(two, 2, bad, sizeof bad), SRV_CODING_UNSUPPORTED);
    ck_assert_str_eq(bad, "deflate"); // a second header stacks a second coding
    struct api_kv br[] = {{"Content-Encoding", "identity, br"}};
    ck_assert_int_eq(srv_coding_of(br, 1, bad, sizeof bad), SRV_CODING_UNSUPPORTED);
    ck_assert_str_eq(bad, "br");
    struct api_kv longer[] = {{"Content-Encoding", "zstandard-long"}};
    ck_assert_int_eq(srv_coding_of(longer, 1, bad, sizeof bad), SRV_CODING_UNSUPPORTED);
    ck_assert_str_eq(bad, "zstanda"); // truncated to the buffer
    char said[64];
    ck_assert_int_eq(srv_coding_of(two, 2, said, sizeof said), SRV_CODING_UNSUPPORTED);
    ck_assert_str_eq(said, "deflate stacked on another coding"); // not "deflate unsupported"
}
END_TEST

// ---- inflate ----

START_TEST(test_inflate_each_form) {
    size_t n = 100000, len;
    char *text = sample_text(n);
    unsigned char *gz = zpack(31, text, n, &len);
    check_roundtrip(SRV_CODING_GZIP, gz, len, text, n);
    free(gz);
    unsigned char *zl = zpack(15, text, n, &len);
    check_roundtrip(SRV_CODING_DEFLATE, zl, len, text, n);
    free(zl);
    unsigned char *raw = zpack(-15, text, n, &len);
    check_roundtrip(SRV_CODING_DEFLATE, raw, len, text, n);
    free(raw);
    free(text);
}
END_TEST

START_TEST(test_inflate_gzip_members) {
    size_t n = 5000, l1, l2;
    char *text = sample_text(2 * n);
    unsigned char *a = zpack(31, text, n, &l1), *b = zpack(31, text + n, n, &l2);
    unsigned char *both = malloc(l1 + l2);
    memcpy(both, a, l1);
    memcpy(both + l1, b, l2);
    check_roundtrip(SRV_CODING_GZIP, both, l1 + l2, text, 2 * n);
    free(a), free(b), free(both), free(text);
}
END_TEST

START_TEST(test_inflate_empty_stream) {
    size_t len;
    unsigned char *gz = zpack(31, "", 0, &len);
    struct srv_inflated out;
    ck_assert_int_eq(srv_inflate(SRV_CODING_GZIP, gz, len, 10, NULL, &out), SRV_INFLATE_OK);
    ck_assert_uint_eq(out.len, 0);
    ck_assert_int_eq(out.data[0], '\0');
    free(out.data);
    free(gz);
}
END_TEST

// ---- limits ----

START_TEST(test_inflate_bound_exact) {
    size_t n = 70000, len;
    char *text = sample_text(n);
    unsigned char *gz = zpack(31, text, n, &len);
    check_roundtrip(SRV_CODING_GZIP, gz, len, text, n); // max_out == n: fits
    struct srv_inflated out;
    ck_assert_int_eq(srv_inflate(SRV_CODING_GZIP, gz, len, n - 1, NULL, &out),
                     SRV_INFLATE_TOO_LARGE);
    ck_assert_ptr_null(out.data);
    free(gz), free(text);
}
END_TEST

// 64 MiB of zeros (about 64 KB gzip'd) against a 1 MiB bound under a 4 MiB budget: refused
// as too large, never over the budget (the output never grows past the bound), all given back.
START_TEST(test_inflate_bomb) {
    z_stream z;
    memset(&z, 0, sizeof z);
    ck_assert_int_eq(deflateInit2(&z, 9, Z_DEFLATED, 31, 9, Z_DEFAULT_STRATEGY), Z_OK);
    static unsigned char zeros[1 << 16];
    size_t cap = 1 << 20, len = 0;
    unsigned char *bomb = malloc(cap);
    for (int i = 0; i < 1024; i++) {
        z.next_in = zeros;
        z.avail_in = sizeof zeros;
        z.next_out = bomb + len;
        z.avail_out = (uInt)(cap - len);
        ck_assert_int_eq(deflate(&z, i == 1023 ? Z_FINISH : Z_NO_FLUSH),
                         i == 1023 ? Z_STREAM_END : Z_OK);
        len = cap - z.avail_out;
    }
    deflateEnd(&z);
    struct nd_budget *b = nd_budget_create(4 << 20);
    struct srv_inflated out;
    ck_assert_int_eq(srv_inflate(SRV_CODING_GZIP, bomb, len, 1 << 20, b, &out),
                     SRV_INFLATE_TOO_LARGE);
    ck_assert_int_eq(nd_budget_used(b), 0);
    nd_budget_unref(b);
    free(bomb);
}
END_TEST

START_TEST(test_inflate_budget) {
    size_t n = 200000, len;
    char *text = sample_text(n);
    unsigned char *gz = zpack(31, text, n, &len);
    struct srv_inflated out;
    struct nd_budget *small = nd_budget_create(100000); // the output alone never fits
    ck_assert_int_eq(srv_inflate(SRV_CODING_GZIP, gz, len, n, small, &out), SRV_INFLATE_NEVER_FITS);
    ck_assert_int_eq(nd_budget_used(small), 0);
    nd_budget_unref(small);
    struct nd_budget *busy = nd_budget_create(1 << 20); // fits, but not now
    ck_assert(nd_budget_take(busy, (1 << 20) - 50000));
    ck_assert_int_eq(srv_inflate(SRV_CODING_GZIP, gz, len, n, busy, &out), SRV_INFLATE_OVER_BUDGET);
    ck_assert_int_eq(nd_budget_used(busy), (1 << 20) - 50000);
    nd_budget_unref(busy);
    free(gz), free(text);
}
END_TEST

// ---- errors ----

static void check_status(enum srv_coding c, const unsigned char *in, size_t n,
                         enum srv_inflate_status want) {
    struct nd_budget *b = nd_budget_create(0);
    struct srv_inflated out;
    enum srv_inflate_status got = srv_inflate(c, in, n, 1 << 20, b, &out);
    ck_assert_msg(got == want, "got %s, want %s", srv_inflate_status_name(got),
                  srv_inflate_status_name(want));
    ck_assert_ptr_null(out.data);
    ck_assert_int_eq(nd_budget_used(b), 0);
    nd_budget_unref(b);
}

START_TEST(test_inflate_truncated) {
    size_t n = 20000, len;
    char *text = sample_text(n);
    unsigned char *gz = zpack(31, text, n, &len);
    check_status(SRV_CODING_GZIP, gz, len - 4, SRV_INFLATE_TRUNCATED); // no ISIZE
    check_status(SRV_CODING_GZIP, gz, len / 2, SRV_INFLATE_TRUNCATED);
    check_status(SRV_CODING_GZIP, gz, 5, SRV_INFLATE_TRUNCATED); // part of the header
    check_status(SRV_CODING_GZIP, gz, 0, SRV_INFLATE_TRUNCATED);
    unsigned char *raw = zpack(-15, text, n, &len);
    check_status(SRV_CODING_DEFLATE, raw, len - 1, SRV_INFLATE_TRUNCATED);
    free(gz), free(raw), free(text);
}
END_TEST

START_TEST(test_inflate_corrupt) {
    size_t n = 20000, len;
    char *text = sample_text(n);
    unsigned char *gz = zpack(31, text, n, &len);
    gz[len - 6] ^= 0x40; // the CRC-32
    check_status(SRV_CODING_GZIP, gz, len, SRV_INFLATE_CORRUPT);
    gz[len - 6] ^= 0x40;
    gz[0] = 0x1e; // the magic
    check_status(SRV_CODING_GZIP, gz, len, SRV_INFLATE_CORRUPT);
    free(gz);
    unsigned char *zl = zpack(15, text, n, &len);
    zl[len - 1] ^= 1; // the Adler-32
    check_status(SRV_CODING_DEFLATE, zl, len, SRV_INFLATE_CORRUPT);
    zl[len - 1] ^= 1;
    unsigned char *more = malloc(len + 3); // bytes after a deflate stream
    memcpy(more, zl, len);
    memcpy(more + len, "abc", 3);
    check_status(SRV_CODING_DEFLATE, more, len + 3, SRV_INFLATE_CORRUPT);
    free(more), free(zl);
    const unsigned char junk[] = "{\"input\": [1, 2, 3]} sent uncompressed";
    check_status(SRV_CODING_GZIP, junk, sizeof junk - 1, SRV_INFLATE_CORRUPT);
    check_status(SRV_CODING_IDENTITY, junk, sizeof junk - 1, SRV_INFLATE_CORRUPT);
    const unsigned char dict[] = {0x78, 0xbb, 0, 0, 0, 1}; // FDICT: a preset dictionary
    check_status(SRV_CODING_DEFLATE, dict, sizeof dict, SRV_INFLATE_CORRUPT);
    free(text);
}
END_TEST

// ---- Accept-Encoding ----

START_TEST(test_accept_encoding) {
    ck_assert(!accepts(NULL));
    ck_assert(!accepts(""));
    ck_assert(accepts("gzip"));
    ck_assert(accepts("x-gzip"));
    ck_assert(accepts("gzip, deflate, br"));
    ck_assert(accepts("br;q=1.0, GZIP; Q=0.8, *;q=0.1"));
    ck_assert(accepts("*"));
    ck_assert(accepts("gzip;q=0.001"));
    ck_assert(accepts("gzip;q=1.000"));
    ck_assert(accepts("gzip;q=0.5, identity;q=0.5"));
    ck_assert(!accepts("gzip;q=0"));
    ck_assert(!accepts("gzip;q=0.000"));
    ck_assert(!accepts("*;q=0"));
    ck_assert(!accepts("gzip;q=0, *"));
    ck_assert(!accepts("deflate, br"));
    ck_assert(!accepts("identity"));
    ck_assert(!accepts("identity;q=1, gzip;q=0.5"));
    ck_assert(!accepts("gzip;q=1.5"));    // malformed: not a yes
    ck_assert(!accepts("gzip;q=0.0001")); // four decimals
    ck_assert(!accepts("gzip;q="));
    ck_assert(!accepts("gzipped"));
    struct api_kv two[] = {{"Accept-Encoding", "br"}, {"Accept-Encoding", "gzip"}};
    ck_assert(srv_accepts_gzip(two, 2)); // two headers are one list
}
END_TEST

// ---- gzip replies ----

static struct api_response reply(size_t n, const char *type, struct nd_budget *b) {
    struct api_response r = {.status = 200, .content_type = type, .budget = b};
    r.body = sample_text(n);
    r.body_len = n;
    r.reserved = (int64_t)n;
    nd_budget_add(b, r.reserved);
    return r;
}

static void reply_free(struct api_response *r) {
    free(r->body);
    nd_budget_give(r->budget, r->reserved);
}

static const char *header(const struct api_response *r, const char *name) {
    for (int i = 0; i < r->nheaders; i++)
        if (strcmp(r->header_name[i], name) == 0)
            return r->header_value[i];
    return NULL;
}

// A small reply is matched (its repeats shrink it a lot), a large one Huffman-coded only.
static const size_t reply_sizes[] = {SRV_GZIP_MIN_BYTES, 8000, SRV_GZIP_HUFFMAN_MIN, 76000};

START_TEST(test_gzip_reply) {
    struct nd_budget *b = nd_budget_create(0);
    size_t n = reply_sizes[_i];
    struct api_response r = reply(n, "application/json", b);
    char *want = sample_text(n);
    ck_assert_int_eq(srv_gzip_reply(&r, "POST", true), SRV_GZIP_COMPRESSED);
    ck_assert_str_eq(header(&r, "Content-Encoding"), "gzip");
    ck_assert_str_eq(header(&r, "Vary"), "Accept-Encoding");
    if (n < SRV_GZIP_HUFFMAN_MIN)
        ck_assert_uint_lt(r.body_len, n / 4);
    else // 14 symbols: under 4 bits each
        ck_assert_uint_lt(r.body_len, n / 2);
    ck_assert_int_eq(nd_budget_used(b), (int64_t)r.body_len); // the original given back
    struct srv_inflated plain;
    ck_assert_int_eq(srv_inflate(SRV_CODING_GZIP, r.body, r.body_len, n, NULL, &plain),
                     SRV_INFLATE_OK);
    ck_assert_uint_eq(plain.len, n);
    ck_assert_mem_eq(plain.data, want, n);
    free(plain.data), free(want);
    reply_free(&r);
    ck_assert_int_eq(nd_budget_used(b), 0);
    nd_budget_unref(b);
}
END_TEST

START_TEST(test_gzip_reply_declined) {
    struct api_response r = reply(SRV_GZIP_MIN_BYTES, "application/json", NULL);
    ck_assert_int_eq(srv_gzip_reply(&r, "GET", false), SRV_GZIP_DECLINED); // not accepted
    ck_assert_str_eq(header(&r, "Vary"), "Accept-Encoding");
    ck_assert_ptr_null(header(&r, "Content-Encoding"));
    ck_assert_uint_eq(r.body_len, SRV_GZIP_MIN_BYTES);
    reply_free(&r);
    struct api_response noise = reply(4000, "text/plain", NULL); // incompressible: sent as is
    struct test_rng rng = test_rng_seed(0x2545f4914f6cdd1dull);
    for (size_t i = 0; i < noise.body_len; i++)
        noise.body[i] = (char)(test_rng_next(&rng) >> 56);
    char *copy = malloc(noise.body_len);
    memcpy(copy, noise.body, noise.body_len);
    ck_assert_int_eq(srv_gzip_reply(&noise, "GET", true), SRV_GZIP_DECLINED);
    ck_assert_mem_eq(noise.body, copy, noise.body_len);
    free(copy);
    reply_free(&noise);
    struct nd_budget *full = nd_budget_create(5000); // no room for the compressed copy
    struct api_response r2 = reply(3000, "application/json", full);
    ck_assert_int_eq(srv_gzip_reply(&r2, "GET", true), SRV_GZIP_DECLINED);
    ck_assert_int_eq(nd_budget_used(full), 3000);
    reply_free(&r2);
    nd_budget_unref(full);
}
END_TEST

START_TEST(test_gzip_reply_not_eligible) {
    struct api_response r = reply(SRV_GZIP_MIN_BYTES - 1, "application/json", NULL);
    ck_assert_int_eq(srv_gzip_reply(&r, "GET", true), SRV_GZIP_NONE);
    ck_assert_int_eq(r.nheaders, 0);
    reply_free(&r);
    const char *types[] = {"application/octet-stream", NULL};
    for (int i = 0; i < 2; i++) {
        struct api_response t = reply(5000, types[i], NULL);
        ck_assert_int_eq(srv_gzip_reply(&t, "GET", true), SRV_GZIP_NONE);
        reply_free(&t);
    }
    struct api_response h = reply(5000, "application/json", NULL);
    ck_assert_int_eq(srv_gzip_reply(&h, "HEAD", true), SRV_GZIP_NONE);
    int statuses[] = {204, 304, 101};
    for (int i = 0; i < 3; i++) {
        h.status = statuses[i];
        ck_assert_int_eq(srv_gzip_reply(&h, "GET", true), SRV_GZIP_NONE);
    }
    h.status = 200;
    h.nheaders = API_MAX_HEADERS - 1; // no room for both headers
    ck_assert_int_eq(srv_gzip_reply(&h, "GET", true), SRV_GZIP_NONE);
    ck_assert_uint_eq(h.body_len, 5000);
    reply_free(&h);
}
END_TEST

Suite *encoding_suite(void) {
    Suite *s = suite_create("encoding");
    TCase *core = tcase_create("core");
    tcase_add_test(core, test_coding_parse);
    tcase_add_test(core, test_coding_names_the_bad_one);
    tcase_add_test(core, test_inflate_each_form);
    tcase_add_test(core, test_inflate_gzip_members);
    tcase_add_test(core, test_inflate_empty_stream);
    tcase_add_test(core, test_accept_encoding);
    tcase_add_loop_test(core, test_gzip_reply, 0, 4);
    suite_add_tcase(s, core);
    TCase *limits = tcase_create("limits");
    tcase_add_test(limits, test_inflate_bound_exact);
    tcase_add_test(limits, test_inflate_bomb);
    tcase_add_test(limits, test_inflate_budget);
    tcase_add_test(limits, test_gzip_reply_declined);
    tcase_add_test(limits, test_gzip_reply_not_eligible);
    suite_add_tcase(s, limits);
    TCase *errors = tcase_create("errors");
    tcase_add_test(errors, test_inflate_truncated);
    tcase_add_test(errors, test_inflate_corrupt);
    suite_add_tcase(s, errors);
    return s;
}
