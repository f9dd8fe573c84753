// fuzz_store_log.c - the --data-dir log's records (server/store_log.c) on fuzzed bytes, read
// three ways every run.
//
// 1. The input as a log, replayed as srv_store_load does: every record read is in bounds (its
//    name valid and of the length the header says, its payload inside the input, the next
//    record after it) and writes back to the same bytes (header and name); the tail after the
//    last good record is clean only when it is zeros, damaged only with a whole record further
//    on (re-read at the offset the scan gives), and the scan CRCs at most 6 bytes per byte of
//    the tail (store_log.h: linear, however long the lengths claimed).
// 2. The input as a recipe for a log of N valid records (7 bytes of choices: where to cut,
//    which record and byte to change and how, how many zeros follow; then per record: a byte
//    of kind / op / name length, the name's bytes mapped to valid characters, a payload length
//    byte and the payload), then zeros: the log cut at any point reads back the records
//    before the cut and a clean end (cut at a boundary or in the zeros) or a torn one, never
//    damaged; the cut record's bytes zeroed instead (a torn append into the zeros written
//    ahead) is the same; one byte changed inside record k (not the last) stops the replay at k
//    and reads as damaged, the whole record found being k + 1. These hold for a log whose only
//    "NDLR"s are the records' starts (a payload holding a record of its own would be one to
//    any reader); the recipe breaks up "NDLR" in names and payloads, and the harness checks.
// 3. The input as in 1 with its headers made right (fix_headers), checked as in 1.
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

#include "core/layer.h"
#include "server/store_log.h"
#include "tests/fuzz/fuzz_util.h"

#define MAX_RECORDS 12
#define MAX_LOG     (MAX_RECORDS * (SRV_REC_HEADER + 32 + 255) + 255)

static bool all_zero(const uint8_t *p, uint64_t n) {
    for (uint64_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

// A record read at off: in bounds, and the same bytes written again.
static void check_record(const uint8_t *d, uint64_t n, uint64_t off, const struct srv_rec *r,
                         uint64_t next) {
    size_t nlen = strnlen(r->name, sizeof r->name);
    if (nlen < 1 || nlen > ND_NAME_MAX || !nd_name_valid(r->name))
        FUZZ_FAIL("a record at %llu read with a bad name", (unsigned long long)off);
    if ((r->kind != SRV_REC_KIND_LAYER && r->kind != SRV_REC_KIND_SHARED) ||
        (r->op != SRV_REC_OP_PUT && r->op != SRV_REC_OP_REMOVE &&
         (r->op != SRV_REC_OP_PARTIAL || r->kind != SRV_REC_KIND_LAYER)))
        FUZZ_FAIL("a record at %llu read with kind %u, op %u", (unsigned long long)off, r->kind,
                  r->op);
    if (r->offset != off + SRV_REC_HEADER + nlen || r->offset > n || r->len > n - r->offset ||
        next != r->offset + r->len)
        FUZZ_FAIL("a record at %llu out of bounds: payload at %llu, %llu bytes, next %llu, of %llu",
                  (unsigned long long)off, (unsigned long long)r->offset,
                  (unsigned long long)r->len, (unsigned long long)next, (unsigned long long)n);
    unsigned char h[SRV_REC_HEADER];
    srv_rec_header(h, r->kind, r->op, r->name, d + r->offset, r->len);
    if (memcmp(h, d + off, SRV_REC_HEADER) != 0 || memcmp(r->name, d + off + SRV_REC_HEADER, nlen))
        FUZZ_FAIL("the record at %llu does not write back to its bytes", (unsigned long long)off);
}

// Replays a log as srv_store_load does; the records read and *end, where the first bad one is.
static int replay(const uint8_t *d, uint64_t n, uint64_t *end) {
    uint64_t off = 0, next = 0;
    struct srv_rec r;
    int count = 0;
    while (off < n && srv_rec_parse(d, n, off, &r, &next)) {
        check_record(d, n, off, &r, next);
        off = next;
        count++;
    }
    *end = off;
    return count;
}

// The tail after off, checked against what it says; *scan: what the scan saw.
static enum srv_rec_tail tail(const uint8_t *d, uint64_t n, uint64_t off,
                              struct srv_rec_scan *scan) {
    enum srv_rec_tail t = srv_rec_tail(d, n, off, scan);
    if (scan->crc_bytes > 6 * (n - off) + SRV_REC_HEADER)
        FUZZ_FAIL("the tail scan CRC'd %llu bytes of a %llu-byte tail",
                  (unsigned long long)scan->crc_bytes, (unsigned long long)(n - off));
    struct srv_rec r;
    uint64_t next;
    switch (t) {
    case SRV_REC_TAIL_CLEAN:
        if (!all_zero(d + off, n - off))
            FUZZ_FAIL("a tail with a non-zero byte reads as clean");
        break;
    case SRV_REC_TAIL_TORN:
        if (all_zero(d + off, n - off))
            FUZZ_FAIL("a tail of zeros reads as torn");
        break;
    case SRV_REC_TAIL_DAMAGED:
        if (scan->whole_at <= off || !srv_rec_parse(d, n, scan->whole_at, &r, &next))
            FUZZ_FAIL("damaged, but no whole record at %llu", (unsigned long long)scan->whole_at);
        break;
    default:
        FUZZ_FAIL("the tail reads as %d", (int)t);
    }
    return t;
}

// ---- 2. a log built from a recipe ----

struct built {
    uint8_t buf[MAX_LOG];
    uint64_t start[MAX_RECORDS + 1]; // start[count]: the records' end
    int count;
    uint64_t pad; // zeros after the records
};

static const char NAME_CHARS[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";

// "NDLR" in a name or payload becomes "NDLS": a record's bytes hold no record start.
static void break_magic(uint8_t *p, size_t n) {
    for (size_t i = 0; i + 4 <= n; i++)
        if (memcmp(p + i, "NDLR", 4) == 0)
            p[i + 3] = 'S';
}

// Builds records from the recipe at d (n bytes) until it runs out or MAX_RECORDS.
static void build(struct built *b, const uint8_t *d, size_t n) {
    size_t at = 0;
    uint64_t len = 0;
    b->count = 0;
    while (at < n && b->count < MAX_RECORDS) {
        uint8_t s = d[at++];
        unsigned char kind = 1 + (s & 1), op = 1 + ((s >> 1) & 1);
        if (kind == SRV_REC_KIND_LAYER && op == SRV_REC_OP_PUT && (s & 0x80))
            op = SRV_REC_OP_PARTIAL;
        size_t nlen = 1 + (s >> 2) % 32;
        char name[33];
        for (size_t i = 0; i < nlen; i++) {
            uint8_t c = at < n ? d[at++] : (uint8_t)i;
            name[i] = NAME_CHARS[i == 0 ? c % 62 : c % (sizeof NAME_CHARS - 1)];
        }
        name[nlen] = '\0';
        break_magic((uint8_t *)name, nlen);
        size_t plen = op != SRV_REC_OP_REMOVE && at < n ? d[at++] : 0;
        plen = plen < n - at ? plen : n - at;
        uint8_t *rec = b->buf + len;
        memcpy(rec + SRV_REC_HEADER, name, nlen);
        memcpy(rec + SRV_REC_HEADER + nlen, d + at, plen);
        at += plen;
        break_magic(rec + SRV_REC_HEADER + nlen, plen);
        srv_rec_header(rec, kind, op, name, rec + SRV_REC_HEADER + nlen, plen);
        b->start[b->count++] = len;
        len += SRV_REC_HEADER + nlen + plen;
    }
    b->start[b->count] = len;
    memset(b->buf + len, 0, b->pad);
}

// The only "NDLR"s in the log are its records' starts (header bytes may form one by chance).
static bool magics_only_at_starts(const struct built *b) {
    uint64_t end = b->start[b->count];
    int k = 0;
    for (uint64_t p = 0; p + 4 <= end; p++) {
        while (k < b->count && b->start[k] < p)
            k++;
        if (memcmp(b->buf + p, "NDLR", 4) == 0 && !(k < b->count && b->start[k] == p))
            return false;
    }
    return true;
}

// The log (with its zeros) cut at c: the records before c, then clean or torn, never damaged.
static void check_cut(const struct built *b, uint64_t c) {
    int whole = 0;
    bool boundary = c >= b->start[b->count];
    for (int i = 0; i < b->count; i++) {
        whole += b->start[i + 1] <= c;
        boundary |= b->start[i] == c;
    }
    uint64_t end;
    struct srv_rec_scan scan;
    int got = replay(b->buf, c, &end);
    if (got != whole || end != b->start[whole])
        FUZZ_FAIL("cut at %llu: %d records read up to %llu, want %d", (unsigned long long)c, got,
                  (unsigned long long)end, whole);
    enum srv_rec_tail t = tail(b->buf, c, end, &scan);
    if (t != (boundary ? SRV_REC_TAIL_CLEAN : SRV_REC_TAIL_TORN))
        FUZZ_FAIL("cut at %llu (%s): the tail reads as %d", (unsigned long long)c,
                  boundary ? "a boundary" : "inside a record", (int)t);
}

// The bytes from c to the records' end zeroed, the zeros after kept: a torn append into the
// space written ahead. Records whose bytes did not change read; then the end is torn, or clean
// when what was zeroed starts at a record (or the zeroed bytes were zeros already).
static void check_zeroed(const struct built *b, uint64_t c) {
    static uint8_t z[MAX_LOG];
    uint64_t n = b->start[b->count] + b->pad;
    memcpy(z, b->buf, n);
    memset(z + c, 0, b->start[b->count] - c);
    int whole = 0;
    while (whole < b->count && memcmp(z + b->start[whole], b->buf + b->start[whole],
                                      b->start[whole + 1] - b->start[whole]) == 0)
        whole++;
    uint64_t end;
    struct srv_rec_scan scan;
    int got = replay(z, n, &end);
    if (got != whole || end != b->start[whole])
        FUZZ_FAIL("zeroed from %llu: %d records read up to %llu, want %d", (unsigned long long)c,
                  got, (unsigned long long)end, whole);
    enum srv_rec_tail t = tail(z, n, end, &scan);
    bool clean = all_zero(z + end, n - end);
    if (t != (clean ? SRV_REC_TAIL_CLEAN : SRV_REC_TAIL_TORN))
        FUZZ_FAIL("zeroed from %llu: the tail reads as %d", (unsigned long long)c, (int)t);
}

// One byte of record k (not the last) changed: replay stops at k, and record k + 1 says damage.
static void check_damage(const struct built *b, int k, uint64_t at, uint8_t x) {
    static uint8_t f[MAX_LOG];
    uint64_t n = b->start[b->count] + b->pad;
    memcpy(f, b->buf, n);
    f[at] ^= x;
    uint64_t end;
    int got = replay(f, n, &end);
    if (got != k || end != b->start[k])
        FUZZ_FAIL("byte %llu of record %d changed: %d records read up to %llu",
                  (unsigned long long)(at - b->start[k]), k, got, (unsigned long long)end);
    for (uint64_t p = b->start[k] + 1; p < b->start[k + 1]; p++)
        if (memcmp(f + p, "NDLR", 4) == 0)
            return; // the change made a record start inside record k: a reader may trust it
    struct srv_rec_scan scan;
    enum srv_rec_tail t = tail(f, n, end, &scan);
    if (t != SRV_REC_TAIL_DAMAGED || scan.whole_at != b->start[k + 1])
        FUZZ_FAIL("byte %llu of record %d (of %d) changed: the tail reads as %d, a whole record "
                  "at %llu",
                  (unsigned long long)(at - b->start[k]), k, b->count, (int)t,
                  (unsigned long long)scan.whole_at);
}

static void from_recipe(const uint8_t *d, size_t n) {
    if (n < 7)
        return;
    static struct built b;
    uint64_t cut = d[0] | (uint64_t)d[1] << 8, flip = d[3] | (uint64_t)d[4] << 8;
    int k_sel = d[2];
    uint8_t x = d[5] ? d[5] : 0x5a;
    b.pad = d[6];
    build(&b, d + 7, n - 7);
    if (b.count == 0 || !magics_only_at_starts(&b))
        return;
    uint64_t total = b.start[b.count];
    uint64_t end;
    struct srv_rec_scan scan;
    if (replay(b.buf, total + b.pad, &end) != b.count || end != total ||
        tail(b.buf, total + b.pad, end, &scan) != SRV_REC_TAIL_CLEAN)
        FUZZ_FAIL("a log of %d valid records does not read back whole", b.count);
    check_cut(&b, cut % (total + b.pad + 1));
    check_zeroed(&b, (cut ^ flip) % (total + 1));
    if (b.count >= 2) {
        int k = k_sel % (b.count - 1);
        check_damage(&b, k, b.start[k] + flip % (b.start[k + 1] - b.start[k]), x);
    }
}

// ---- 3. the input with its headers made right ----

static void put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

// Every "NDLR" of d gets a header a writer could have made: kind and op in range, a name
// length of 1..128 and a payload length within n (both taken modulo what fits), the header CRC
// its bytes call for, and for the first 16 whose body is under 512 bytes the body CRC too;
// right to left, so that a record's CRCs cover the headers fixed inside it. Mutations then
// reach what follows a header (its extent, its name, records inside records: what the scan's
// cost depends on) instead of dying at a CRC.
static void fix_headers(uint8_t *d, size_t n) {
    int bodies = 0;
    for (size_t p = n >= SRV_REC_HEADER + 1 ? n - SRV_REC_HEADER : 0; p-- > 0;) {
        if (memcmp(d + p, "NDLR", 4) != 0)
            continue;
        uint64_t room = n - p - SRV_REC_HEADER, len = 0; // at least 1
        uint64_t nmax = room < ND_NAME_MAX ? room : ND_NAME_MAX;
        uint64_t nlen = 1 + (d[p + 6] | (uint64_t)d[p + 7] << 8) % nmax;
        for (int i = 7; i >= 0; i--)
            len = len << 8 | d[p + 8 + i];
        len %= room - nlen + 1;
        d[p + 4] = 1 + (d[p + 4] & 1);
        d[p + 5] = d[p + 4] == SRV_REC_KIND_LAYER && (d[p + 5] & 2) ? SRV_REC_OP_PARTIAL
                                                                    : 1 + (d[p + 5] & 1);
        d[p + 6] = (uint8_t)nlen;
        d[p + 7] = 0;
        for (int i = 0; i < 8; i++)
            d[p + 8 + i] = (uint8_t)(len >> (8 * i));
        if (nlen + len < 512 && bodies++ < 16)
            put_le32(d + p + 16, (uint32_t)crc32(0L, d + p + SRV_REC_HEADER, (uInt)(nlen + len)));
        put_le32(d + p + 20, (uint32_t)crc32(0L, d + p, 20));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint64_t end;
    struct srv_rec_scan scan;
    replay(data, size, &end);
    tail(data, size, end, &scan);
    uint8_t *fixed = (uint8_t *)fuzz_strndup(data, size);
    fix_headers(fixed, size);
    replay(fixed, size, &end);
    tail(fixed, size, end, &scan);
    free(fixed);
    from_recipe(data, size);
    return 0;
}
