// check_store_log.c - the --data-dir log's records (server/store_log.c): the byte layout against
// zlib's CRC-32, round trips, a torn tail, a damaged middle, zeros, fields no writer makes, and
// that the scan of a bad tail CRCs a bounded multiple of the file's bytes (no timing).
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "server/store_log.h"
#include "tests/check_suites.h"

// A log being built: records appended, their starts kept.
struct log {
    unsigned char buf[4096];
    uint64_t n;
    uint64_t start[8];
    int count;
};

static void append(struct log *l, unsigned char kind, unsigned char op, const char *name,
                   const void *payload, uint64_t len) {
    size_t nlen = strlen(name);
    ck_assert_uint_le(l->n + SRV_REC_HEADER + nlen + len, sizeof l->buf);
    l->start[l->count++] = l->n;
    srv_rec_header(l->buf + l->n, kind, op, name, payload, len);
    memcpy(l->buf + l->n + SRV_REC_HEADER, name, nlen);
    if (len)
        memcpy(l->buf + l->n + SRV_REC_HEADER + nlen, payload, len);
    l->n += SRV_REC_HEADER + nlen + len;
}

static const unsigned char PAYLOAD[] = "a layer's codec bytes \x00\x01\xff NDL";

// Three records: a layer put, a shared array put, a layer removal.
static void three(struct log *l) {
    memset(l, 0, sizeof *l);
    append(l, SRV_REC_KIND_LAYER, SRV_REC_OP_PUT, "bn.1", PAYLOAD, sizeof PAYLOAD);
    append(l, SRV_REC_KIND_SHARED, SRV_REC_OP_PUT, "scale_g", PAYLOAD, 7);
    append(l, SRV_REC_KIND_LAYER, SRV_REC_OP_REMOVE, "old-layer", NULL, 0);
}

// The records that parse from the start; *end: where the first bad one starts.
static int parse_all(const unsigned char *buf, uint64_t n, uint64_t *end) {
    struct srv_rec r;
    uint64_t off = 0, next = 0;
    int count = 0;
    while (off < n && srv_rec_parse(buf, n, off, &r, &next)) {
        ck_assert_uint_gt(next, off);
        off = next;
        count++;
    }
    *end = off;
    return count;
}

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

START_TEST(test_layout_matches_zlib) {
    struct log l;
    three(&l);
    const unsigned char *h = l.buf;
    ck_assert(memcmp(h, "NDLR", 4) == 0);
    ck_assert_uint_eq(h[4], 1);
    ck_assert_uint_eq(h[5], 1);
    ck_assert_uint_eq(h[6] | h[7] << 8, 4);
    ck_assert_uint_eq(le32(h + 8), sizeof PAYLOAD);
    ck_assert_uint_eq(le32(h + 12), 0);
    uLong body = crc32(crc32(0L, (const Bytef *)"bn.1", 4), PAYLOAD, sizeof PAYLOAD);
    ck_assert_uint_eq(le32(h + 16), body);
    ck_assert_uint_eq(le32(h + 20), crc32(0L, h, 20));
    ck_assert(memcmp(h + 24, "bn.1", 4) == 0);
    const unsigned char *rm = l.buf + l.start[2]; // a removal: no payload, the name's CRC
    ck_assert_uint_eq(rm[5], 2);
    ck_assert_uint_eq(le32(rm + 16), crc32(0L, (const Bytef *)"old-layer", 9));
    ck_assert_uint_eq(l.n - l.start[2], SRV_REC_HEADER + 9);
}
END_TEST

START_TEST(test_round_trip) {
    struct log l;
    three(&l);
    struct srv_rec r;
    uint64_t next = 0;
    const char *names[] = {"bn.1", "scale_g", "old-layer"};
    const uint64_t lens[] = {sizeof PAYLOAD, 7, 0};
    for (int i = 0; i < 3; i++) {
        ck_assert(srv_rec_parse(l.buf, l.n, l.start[i], &r, &next));
        ck_assert_str_eq(r.name, names[i]);
        ck_assert_uint_eq(r.len, lens[i]);
        ck_assert_uint_eq(r.offset, l.start[i] + SRV_REC_HEADER + strlen(names[i]));
        ck_assert_uint_eq(next, i < 2 ? l.start[i + 1] : l.n);
        ck_assert(memcmp(l.buf + r.offset, PAYLOAD, r.len) == 0);
        unsigned char again[SRV_REC_HEADER];
        srv_rec_header(again, r.kind, r.op, r.name, l.buf + r.offset, r.len);
        ck_assert(memcmp(again, l.buf + l.start[i], SRV_REC_HEADER) == 0);
    }
    ck_assert_uint_eq(r.kind, SRV_REC_KIND_LAYER);
    ck_assert_uint_eq(r.op, SRV_REC_OP_REMOVE);
    ck_assert(!srv_rec_parse(l.buf, l.n, l.n, &r, &next)); // the end
    uint64_t end;
    ck_assert_int_eq(parse_all(l.buf, l.n, &end), 3);
    ck_assert_uint_eq(end, l.n);
    ck_assert_int_eq(srv_rec_tail(l.buf, l.n, l.n, NULL), SRV_REC_TAIL_CLEAN);
    ck_assert_int_eq(srv_rec_tail(l.buf, 0, 0, NULL), SRV_REC_TAIL_CLEAN); // an empty log
}
END_TEST

// Zeros after the last record (written ahead) are a clean end, anything else is not; a log of
// zeros holds no record.
START_TEST(test_zeros) {
    struct log l;
    three(&l);
    uint64_t end, n = l.n + 1000; // l.buf is zeros past l.n
    ck_assert_int_eq(parse_all(l.buf, n, &end), 3);
    ck_assert_uint_eq(end, l.n);
    ck_assert_int_eq(srv_rec_tail(l.buf, n, end, NULL), SRV_REC_TAIL_CLEAN);
    l.buf[n - 1] = 1;
    ck_assert_int_eq(srv_rec_tail(l.buf, n, end, NULL), SRV_REC_TAIL_TORN);
    static const unsigned char zeros[100];
    ck_assert_int_eq(parse_all(zeros, sizeof zeros, &end), 0);
    ck_assert_int_eq(srv_rec_tail(zeros, sizeof zeros, 0, NULL), SRV_REC_TAIL_CLEAN);
}
END_TEST

// The log cut anywhere: the records before the cut load, and the end is clean at a record's
// boundary, torn inside a record, never damaged. The same with the cut record's missing bytes
// left as the zeros written ahead (its header whole, its body not).
START_TEST(test_torn_tail) {
    struct log l;
    three(&l);
    for (uint64_t cut = 0; cut <= l.n; cut++) {
        int whole = 0;
        bool boundary = cut == l.n;
        for (int i = 0; i < 3; i++) {
            boundary |= cut == l.start[i];
            whole += (i < 2 ? l.start[i + 1] : l.n) <= cut;
        }
        uint64_t end;
        ck_assert_int_eq(parse_all(l.buf, cut, &end), whole);
        ck_assert_int_eq(srv_rec_tail(l.buf, cut, end, NULL),
                         boundary ? SRV_REC_TAIL_CLEAN : SRV_REC_TAIL_TORN);
    }
    struct log z;
    three(&z);
    uint64_t mid = z.start[1] + SRV_REC_HEADER + 3; // inside record 1's name
    memset(z.buf + mid, 0, z.n - mid);
    uint64_t end;
    ck_assert_int_eq(parse_all(z.buf, z.n + 64, &end), 1);
    ck_assert_int_eq(srv_rec_tail(z.buf, z.n + 64, end, NULL), SRV_REC_TAIL_TORN);
}
END_TEST

// A byte changed anywhere in a record that is not the last: the replay stops there and the
// whole record after it says damage.
START_TEST(test_damaged_middle) {
    for (int k = 0; k < 2; k++) {
        struct log l;
        three(&l);
        for (uint64_t at = l.start[k]; at < l.start[k + 1]; at++) {
            for (int x = 0; x < 2; x++) {
                unsigned char was = l.buf[at];
                l.buf[at] ^= x ? 0xff : 0x01;
                uint64_t end;
                struct srv_rec_scan scan;
                ck_assert_int_eq(parse_all(l.buf, l.n, &end), k);
                ck_assert_uint_eq(end, l.start[k]);
                ck_assert_msg(srv_rec_tail(l.buf, l.n, end, &scan) == SRV_REC_TAIL_DAMAGED,
                              "record %d, byte %llu", k, (unsigned long long)(at - l.start[k]));
                ck_assert_uint_eq(scan.whole_at, l.start[k + 1]);
                l.buf[at] = was;
            }
        }
    }
}
END_TEST

// Rewrites the header CRC of the record at h (after a test changed a field).
static void reseal(unsigned char *h) {
    uLong c = crc32(0L, h, 20);
    for (int i = 0; i < 4; i++)
        h[20 + i] = (unsigned char)(c >> (8 * i));
}

// Headers whose CRCs match but whose fields no writer makes: not a record.
START_TEST(test_refuses_fields_no_writer_makes) {
    struct log l;
    struct srv_rec r;
    uint64_t next;
    struct {
        int at;
        unsigned char v;
    } bad[] = {{4, 0}, {4, 3}, {5, 0}, {5, 4}, {6, 0}, {6, 129}, {7, 1}, {15, 0x80}, {11, 1}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        three(&l);
        l.buf[bad[i].at] = bad[i].v;
        reseal(l.buf);
        ck_assert_msg(!srv_rec_parse(l.buf, l.n, 0, &r, &next), "byte %d = %u", bad[i].at,
                      bad[i].v);
    }
    const char *names[] = {"b\0.1", ".n.1", "bn/1", "bn 1"}; // a NUL, a dot first, '/', ' '
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        three(&l);
        memcpy(l.buf + 24, names[i], 4);
        uLong body = crc32(crc32(0L, l.buf + 24, 4), PAYLOAD, sizeof PAYLOAD);
        for (int b = 0; b < 4; b++)
            l.buf[16 + b] = (unsigned char)(body >> (8 * b));
        reseal(l.buf);
        ck_assert_msg(!srv_rec_parse(l.buf, l.n, 0, &r, &next), "name %zu", i);
    }
    three(&l); // the same bytes, untouched, parse: the changes above were what failed
    ck_assert(srv_rec_parse(l.buf, l.n, 0, &r, &next));
}
END_TEST

// A partial copy (op 3) is a layer's only: the same header on a shared array is no record.
START_TEST(test_partial_only_for_layers) {
    struct log l;
    struct srv_rec r;
    uint64_t next;
    memset(&l, 0, sizeof l);
    append(&l, SRV_REC_KIND_LAYER, SRV_REC_OP_PARTIAL, "bn.1", PAYLOAD, sizeof PAYLOAD);
    append(&l, SRV_REC_KIND_SHARED, SRV_REC_OP_PARTIAL, "scale_g", PAYLOAD, 7);
    ck_assert(srv_rec_parse(l.buf, l.n, 0, &r, &next));
    ck_assert_uint_eq(r.op, SRV_REC_OP_PARTIAL);
    ck_assert_uint_eq(r.len, sizeof PAYLOAD);
    ck_assert_uint_eq(next, l.start[1]);
    ck_assert(!srv_rec_parse(l.buf, l.n, l.start[1], &r, &next));
    ck_assert_int_eq(srv_rec_tail(l.buf, l.n, l.start[1], NULL), SRV_REC_TAIL_TORN);
}
END_TEST

// A header at h claiming nlen and len bytes (its body CRC 0, which no body here matches).
static void fake_header(unsigned char *h, unsigned nlen, uint64_t len) {
    memset(h, 0, SRV_REC_HEADER);
    memcpy(h, "NDLR", 4);
    h[4] = SRV_REC_KIND_LAYER;
    h[5] = SRV_REC_OP_PUT;
    h[6] = (unsigned char)nlen;
    for (int i = 0; i < 8; i++)
        h[8 + i] = (unsigned char)(len >> (8 * i));
    reseal(h);
}

#define MAGICS 100000
#define STRIDE (SRV_REC_HEADER + 8) // a header and an 8-byte name

// 100k headers whose CRCs match, each claiming a body that reaches past the end of the file, or
// to it (with a valid name, so that the body is CRC'd), then the same with magics only: the
// tail scan CRCs at most 6 bytes per byte of the file (store_log.h), where CRCing each
// candidate's claimed body would be quadratic (~1.6e11 bytes here).
START_TEST(test_tail_scan_is_linear) {
    uint64_t n = (uint64_t)MAGICS * STRIDE;
    unsigned char *buf = malloc(n);
    ck_assert_ptr_nonnull(buf);
    for (int variant = 0; variant < 4; variant++) {
        for (uint64_t i = 0; i < MAGICS; i++) {
            unsigned char *h = buf + i * STRIDE;
            uint64_t left = n - i * STRIDE - SRV_REC_HEADER - 8;
            memcpy(h + SRV_REC_HEADER, "abcdefgh", 8);
            if (variant == 0)
                fake_header(h, 8, UINT64_MAX - 3); // no room: nlen + len overflows
            else if (variant == 1)
                fake_header(h, 8, left + (i % 2)); // to the end, or one byte past it
            else if (variant == 2)
                fake_header(h, 8, 1u << 20); // within the file for most
            else
                memcpy(h, "NDLRNDLRNDLRNDLRNDLRNDLRNDLRNDLR", STRIDE); // magics, no header
        }
        buf[0] ^= 1; // the first record is the bad one the replay stopped at
        struct srv_rec_scan scan;
        enum srv_rec_tail t = srv_rec_tail(buf, n, 0, &scan);
        ck_assert_int_eq(t, SRV_REC_TAIL_TORN);
        ck_assert_msg(scan.crc_bytes <= 6 * n + SRV_REC_HEADER,
                      "variant %d: %llu bytes CRC'd for a file of %llu", variant,
                      (unsigned long long)scan.crc_bytes, (unsigned long long)n);
        if (variant == 1 || variant == 2) // a body was CRC'd: the count counts bodies
            ck_assert_uint_ge(scan.crc_bytes, 1u << 20);
    }
    free(buf);
}
END_TEST

Suite *store_log_suite(void) {
    Suite *s = suite_create("store_log");
    TCase *tc = tcase_create("records");
    tcase_add_test(tc, test_layout_matches_zlib);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_zeros);
    tcase_add_test(tc, test_torn_tail);
    tcase_add_test(tc, test_damaged_middle);
    tcase_add_test(tc, test_refuses_fields_no_writer_makes);
    tcase_add_test(tc, test_partial_only_for_layers);
    tcase_add_test(tc, test_tail_scan_is_linear);
    suite_add_tcase(s, tc);
    return s;
}
