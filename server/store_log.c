// store_log.c - the --data-dir log's records (store_log.h has the format).
#include "server/store_log.h"

#include <string.h>
#include <zlib.h>

static const unsigned char REC_MAGIC[4] = {'N', 'D', 'L', 'R'};

#define HDR_CRC_AT  20 // the header's CRC covers the bytes before it
#define BODY_CRC_AT 16

static void put_le(unsigned char *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

// zlib's crc32 takes lengths in uInt: long payloads in parts. *count (may be NULL) adds n.
static uLong crc_more(uLong crc, const unsigned char *p, uint64_t n, uint64_t *count) {
    if (count)
        *count += n;
    while (n > 0) {
        uInt part = n > (1u << 30) ? 1u << 30 : (uInt)n;
        crc = crc32(crc, p, part);
        p += part;
        n -= part;
    }
    return crc;
}

void srv_rec_header(unsigned char hdr[SRV_REC_HEADER], unsigned char kind, unsigned char op,
                    const char *name, const void *payload, uint64_t len) {
    size_t nlen = strlen(name);
    uLong body = crc_more(0L, (const unsigned char *)name, nlen, NULL);
    if (len > 0)
        body = crc_more(body, payload, len, NULL);
    memcpy(hdr, REC_MAGIC, 4);
    hdr[4] = kind;
    hdr[5] = op;
    put_le(hdr + 6, nlen, 2);
    put_le(hdr + 8, len, 8);
    put_le(hdr + BODY_CRC_AT, (uint32_t)body, 4);
    put_le(hdr + HDR_CRC_AT, (uint32_t)crc32(0L, hdr, HDR_CRC_AT), 4);
}

// How far a record at off got in being read.
enum rec_check {
    REC_WHOLE,     // a whole record
    REC_NO_HEADER, // no header there: too short, no magic, a CRC or a field that is wrong
    REC_CUT_SHORT, // a header whose CRC matches, claiming more bytes than there are
    REC_BAD_BODY,  // a header whose CRC matches, its body within n but not matching its CRC
};

// Reads the record at buf[off] (off <= n); *next: where it ends, from REC_BAD_BODY on. *count
// (may be NULL) adds the bytes CRC'd: HDR_CRC_AT for a header, then the body's bytes only once
// the header's CRC matched and the body lies within n.
static enum rec_check rec_check(const unsigned char *buf, uint64_t n, uint64_t off,
                                struct srv_rec *rec, uint64_t *next, uint64_t *count) {
    if (n - off < SRV_REC_HEADER)
        return REC_NO_HEADER;
    const unsigned char *h = buf + off;
    if (memcmp(h, REC_MAGIC, 4) != 0)
        return REC_NO_HEADER;
    uint64_t hcrc = crc_more(0L, h, HDR_CRC_AT, count);
    uint64_t nlen = get_le(h + 6, 2), len = get_le(h + 8, 8);
    if (hcrc != get_le(h + HDR_CRC_AT, 4) ||
        (h[4] != SRV_REC_KIND_LAYER && h[4] != SRV_REC_KIND_SHARED) ||
        (h[5] != SRV_REC_OP_PUT && h[5] != SRV_REC_OP_REMOVE &&
         (h[5] != SRV_REC_OP_PARTIAL || h[4] != SRV_REC_KIND_LAYER)) ||
        nlen < 1 || nlen > ND_NAME_MAX)
        return REC_NO_HEADER;
    uint64_t room = n - off - SRV_REC_HEADER;
    if (nlen > room || len > room - nlen)
        return REC_CUT_SHORT; // found without reading the body
    *next = off + SRV_REC_HEADER + nlen + len;
    memcpy(rec->name, h + SRV_REC_HEADER, nlen);
    rec->name[nlen] = '\0';
    if (strlen(rec->name) != nlen || !nd_name_valid(rec->name) ||
        crc_more(0L, h + SRV_REC_HEADER, nlen + len, count) != get_le(h + BODY_CRC_AT, 4))
        return REC_BAD_BODY;
    rec->kind = h[4];
    rec->op = h[5];
    rec->offset = off + SRV_REC_HEADER + nlen;
    rec->len = len;
    return REC_WHOLE;
}

bool srv_rec_parse(const unsigned char *buf, uint64_t n, uint64_t off, struct srv_rec *rec,
                   uint64_t *next) {
    return off <= n && rec_check(buf, n, off, rec, next, NULL) == REC_WHOLE;
}

// The first "NDLR" in buf[from..n), or n.
static uint64_t next_magic(const unsigned char *buf, uint64_t n, uint64_t from) {
    while (from + 4 <= n) {
        const unsigned char *m = memchr(buf + from, REC_MAGIC[0], (size_t)(n - 3 - from));
        if (!m)
            break;
        from = (uint64_t)(m - buf);
        if (memcmp(m, REC_MAGIC, 4) == 0)
            return from;
        from++;
    }
    return n;
}

// A whole record further on means the bad bytes are damage in the middle of what was
// acknowledged; anything else is a record a crash cut short (pages of an append reach the disk
// in any order, but nothing acknowledged follows an unsynced append).
//
// Why the scan is linear: p only moves forward. At each "NDLR" at most HDR_CRC_AT bytes are
// CRC'd for the header, and as "NDLR" cannot overlap itself there are at most (n - off) / 4 + 1
// of them: 5 (n - off) + HDR_CRC_AT bytes. A body is CRC'd only after its header's CRC matched
// and when it lies within the buffer, and then p moves past its end whatever the outcome, so
// the bodies CRC'd are disjoint parts of buf[off..n): n - off bytes. A claimed length, however
// large, costs nothing more than comparing it with what is left.
enum srv_rec_tail srv_rec_tail(const unsigned char *buf, uint64_t n, uint64_t off,
                               struct srv_rec_scan *scan) {
    struct srv_rec_scan local;
    scan = scan ? scan : &local;
    scan->crc_bytes = 0;
    scan->whole_at = 0;
    uint64_t nz = off;
    while (nz < n && buf[nz] == 0)
        nz++;
    if (nz == n)
        return SRV_REC_TAIL_CLEAN;
    struct srv_rec rec;
    uint64_t next = 0;
    for (uint64_t p = next_magic(buf, n, off); p < n; p = next_magic(buf, n, p)) {
        switch (rec_check(buf, n, p, &rec, &next, &scan->crc_bytes)) {
        case REC_WHOLE:
            if (p > off) {
                scan->whole_at = p;
                return SRV_REC_TAIL_DAMAGED;
            }
            p = next; // not reached when off is the last good record's end
            break;
        case REC_NO_HEADER:
            p++;
            break;
        case REC_CUT_SHORT: // no body read: looking on costs headers only
            p += SRV_REC_HEADER;
            break;
        case REC_BAD_BODY: // its header is trusted: no record starts inside what it claims
            p = next;
            break;
        }
    }
    return SRV_REC_TAIL_TORN;
}
