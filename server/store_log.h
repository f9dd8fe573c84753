// store_log.h - the records of the --data-dir log (DIR/log/CURRENT.ndlog): writing a record's
// header, reading a record back, and telling what follows the last good record. Pure functions
// over byte buffers: no I/O, no locks, no allocation; the buffers are the caller's, borrowed for
// the call only. Every function is linear in the bytes it is given (srv_rec_tail says why).
//
// A record (integers little-endian):
//   0  "NDLR"
//   4  kind: 1 layer, 2 shared array
//   5  op: 1 put, 2 remove, 3 partial (layers only: a train-step's copy whose history holds the
//      records since the layer's last whole copy, which the replay merges it with:
//      nd_persist_merge)
//   6  the name's length, u16 (1..ND_NAME_MAX)
//   8  the payload's length, u64
//   16 the body's CRC-32 (zlib's): over the name and the payload
//   20 the header's CRC-32: over bytes 0..19 (so over the body's CRC too)
//   24 the name (no NUL), then the payload (the codec's bytes; none for a removal)
// The header carries its own CRC so that a reader can trust a record's extent before reading
// its body: the scan of a bad tail (srv_rec_tail) stays linear however long the lengths claimed.
#ifndef SRV_STORE_LOG_H
#define SRV_STORE_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "core/layer.h" // ND_NAME_MAX

#define SRV_REC_HEADER 24

enum { SRV_REC_KIND_LAYER = 1, SRV_REC_KIND_SHARED = 2 };
enum { SRV_REC_OP_PUT = 1, SRV_REC_OP_REMOVE = 2, SRV_REC_OP_PARTIAL = 3 };

// One record as read back (or its latest state, as store.c indexes them).
struct srv_rec {
    char name[ND_NAME_MAX + 1]; // NUL-terminated, a valid name (nd_name_valid)
    unsigned char kind, op;     // SRV_REC_KIND_*, SRV_REC_OP_*
    uint64_t offset;            // of the payload in the buffer (the log)
    uint64_t len;               // of the payload
};

// Writes the header of the record (kind, op, name, payload of len bytes) into hdr; the record
// is hdr, then the name's strlen(name) bytes, then the payload. name: a valid name (the caller
// checks; store.c's check_name), payload: len bytes (NULL when len is 0).
void srv_rec_header(unsigned char hdr[SRV_REC_HEADER], unsigned char kind, unsigned char op,
                    const char *name, const void *payload, uint64_t len);

// Reads the record at buf[off] of a log of n bytes (off <= n) into *rec (rec->offset: where its
// payload starts in buf) and *next (where the record after it starts); false, with *rec and
// *next unspecified, when there is no whole record there: a header or body CRC that does not
// match, a kind, op or name that no writer makes, or a length past n.
bool srv_rec_parse(const unsigned char *buf, uint64_t n, uint64_t off, struct srv_rec *rec,
                   uint64_t *next);

// What follows the last good record of a log.
enum srv_rec_tail {
    SRV_REC_TAIL_CLEAN,  // zeros (written ahead) or nothing
    SRV_REC_TAIL_TORN,   // a record a crash cut short: nothing whole after it
    SRV_REC_TAIL_DAMAGED // a whole record further on: bad bytes inside what was acknowledged
};

// What srv_rec_tail saw; for tests and the fuzzer's oracles.
struct srv_rec_scan {
    uint64_t crc_bytes; // bytes run through CRC-32: at most 6 * (n - off) + SRV_REC_HEADER
    uint64_t whole_at;  // SRV_REC_TAIL_DAMAGED: where the whole record found starts (> off)
};

// Classifies the bytes buf[off..n) that follow the last good record (off <= n; when off < n,
// srv_rec_parse fails at off). A record further on counts only when whole; a header whose CRC
// matches is trusted for the record's extent, so a record with a good header and a bad body is
// skipped as a whole (its bytes are not searched for records: only a header matching its CRC by
// chance, 2^-32 per "NDLR" in them, or written on purpose into a payload, could hide one there,
// and then a damaged log reads as torn, the replay stopping at the same place). scan may be NULL.
enum srv_rec_tail srv_rec_tail(const unsigned char *buf, uint64_t n, uint64_t off,
                               struct srv_rec_scan *scan);

#endif
