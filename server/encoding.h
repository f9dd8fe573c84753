// encoding.h - content codings (RFC 9110 8.4, 12.5.3): request bodies sent gzip- or
// deflate-encoded are inflated, bounded by the body limit and counted in the memory budget;
// replies are gzip-compressed for clients that accept it.
//
// Inflating is linear in the input and the output, and its memory is the output (at most
// max_out + 1 bytes, taken from the budget before each growth) plus zlib's fixed ~40 KB state.
// A bomb (a small body inflating to gigabytes) stops as soon as the output passes max_out.
// Both directions take time proportional to the bytes: http.c runs them on a worker thread,
// except a reply small enough to compress on the event loop (SRV_GZIP_LOOP_MAX).
#ifndef SRV_ENCODING_H
#define SRV_ENCODING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/api.h"
#include "core/budget.h"

enum srv_coding {
    SRV_CODING_IDENTITY,    // no Content-Encoding, "identity", or an empty value
    SRV_CODING_GZIP,        // "gzip" or "x-gzip" (RFC 1952); concatenated members are accepted
    SRV_CODING_DEFLATE,     // "deflate": a zlib stream (RFC 1950), or a raw deflate stream
                            // (RFC 1951) when the zlib header is absent, as many clients send
    SRV_CODING_UNSUPPORTED, // any other coding, or more than one non-identity coding
};

// The coding of a request's body from every Content-Encoding header among headers (several
// headers are one list). "identity" entries are skipped; one gzip or deflate is supported, and
// a stack of codings ("gzip, gzip", or two headers) is not. On SRV_CODING_UNSUPPORTED the
// offending coding (truncated to badlen - 1 bytes) is copied to bad. Thread-safe.
enum srv_coding srv_coding_of(const struct api_kv *headers, size_t n, char *bad, size_t badlen);

enum srv_inflate_status {
    SRV_INFLATE_OK,
    SRV_INFLATE_TOO_LARGE,   // the output passed max_out (413)
    SRV_INFLATE_CORRUPT,     // not valid data of its coding, or bytes after its end (400)
    SRV_INFLATE_TRUNCATED,   // the data ends before the compressed stream does (400)
    SRV_INFLATE_OVER_BUDGET, // the memory budget cannot hold the output now (503, retry)
    SRV_INFLATE_NEVER_FITS,  // the output alone is larger than the whole budget (413)
    SRV_INFLATE_NO_MEMORY,   // malloc or zlib failed to allocate (503)
};

// An inflated body: data is malloc'd (free()), capacity len + 1, NUL-terminated; reserved bytes
// of it are counted in the budget passed to srv_inflate (give them back when freeing data).
struct srv_inflated {
    char *data;
    size_t len;
    int64_t reserved;
};

// Inflates n bytes of in (coding GZIP or DEFLATE) into *out, stopping with
// SRV_INFLATE_TOO_LARGE as soon as the output passes max_out bytes. Every growth of the output
// is taken from budget (NULL: not counted) before it is allocated. On SRV_INFLATE_OK the caller
// owns out->data and out->reserved; on any other status *out is empty and nothing is held.
// Thread-safe (no shared state).
enum srv_inflate_status srv_inflate(enum srv_coding coding, const void *in, size_t n,
                                    size_t max_out, struct nd_budget *budget,
                                    struct srv_inflated *out);

// A stable word for a status, for logs and tests ("too_large", ...).
const char *srv_inflate_status_name(enum srv_inflate_status s);

// Whether an Accept-Encoding list (every header of that name among headers, as one list)
// asks for gzip: gzip's weight is that of "gzip" or "x-gzip", else of "*", else 0 (not
// listed); gzip is chosen when that weight is above 0 and not below identity's, when
// identity is listed. Weights follow RFC 9110 12.4.2 ("q=0.5"); a malformed weight makes its
// entry count as 0. No Accept-Encoding header: false (replies stay uncompressed unless asked).
bool srv_accepts_gzip(const struct api_kv *headers, size_t n);

// Replies shorter than this are never compressed: they fit in one TCP segment (an Ethernet
// MSS is 1460 bytes, 1448 with timestamps) with their headers or nearly, so gzip would save no
// packet and no round trip, only spend CPU on every small reply (errors, health, metadata).
#define SRV_GZIP_MIN_BYTES 1400

// The deflate level: 1 is zlib's fastest. On a 32x256 forward's JSON reply (89.5 KB of
// floats) level 1 gives 2.13x in about 1.3-1.7 ms here, level 6 2.48x in 5.5 ms.
#define SRV_GZIP_LEVEL 1

// From this size on, replies are Huffman-coded only (Z_HUFFMAN_ONLY, still gzip): large replies
// here are tensors as text, where string matching finds almost nothing (the 32x256 forward:
// 41,969 bytes with matching, 42,082 without) but costs three quarters of the time (1.2-1.7
// ms against 0.4 ms, zlib alone into a warm buffer). The price: a large reply of repeated
// values (a constant tensor) shrinks 3x instead of 127x. Smaller replies (metrics, layer
// information) repeat their keys and keep the matching (metrics: 6.3x; Huffman-only 1.6x).
#define SRV_GZIP_HUFFMAN_MIN ((size_t)16384)

// Replies up to this size may be compressed on an event loop (0.2-0.6 ms at level 1 on this
// project's 2-core machine, busy or not); larger ones are compressed on a worker thread, which
// costs a hand-off of some microseconds.
#define SRV_GZIP_LOOP_MAX ((size_t)16384)

enum srv_gzip_outcome {
    SRV_GZIP_NONE,       // not eligible: HEAD, 204/304, no body, small, or binary (no header)
    SRV_GZIP_DECLINED,   // eligible, sent as is (not accepted, no gain, or no memory); the
                         // reply gets "Vary: Accept-Encoding"
    SRV_GZIP_COMPRESSED, // body replaced by its gzip form, with "Content-Encoding: gzip" and
                         // "Vary: Accept-Encoding"
};

// Whether resp (to a request with this method) may be compressed at all: a body of at least
// SRV_GZIP_MIN_BYTES, not application/octet-stream (float tensors barely shrink), status not
// 1xx, 204 or 304, method not HEAD, and room for two more headers. Thread-safe.
bool srv_gzip_eligible(const struct api_response *resp, const char *method);

// Compresses resp's body at SRV_GZIP_LEVEL when it is eligible and accepted is true, keeping
// the result only when smaller; adds the headers above to resp. The compressed text is taken
// from resp->budget before it is allocated (no room: sent as is), and resp->reserved then
// counts it instead of the original. Thread-safe (resp is the caller's).
enum srv_gzip_outcome srv_gzip_reply(struct api_response *resp, const char *method, bool accepted);

#endif
