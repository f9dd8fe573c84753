// framing.h - strict HTTP/1.1 framing (RFC 9112) on what libmicrohttpd 0.9.75 lets through.
//
// libmicrohttpd reads two different Content-Lengths (it takes the first), Content-Length with
// Transfer-Encoding (it takes the coding), an unknown transfer coding, "Content-Length :" (the
// space stays in the name, so the header is no length at all) and obs-fold (it appends the
// folded line to the header's name). Behind a proxy that frames the bytes otherwise, the rest
// of a body becomes another request (request smuggling). It also decodes "%00" in the path
// into a NUL, which cuts the path short. It passes an absolute-form target
// ("http://host/v1/layers") on as the path, and takes an HTTP/1.1 request without a Host, or
// with two. These checks run on the request line as received and on the parsed headers, before
// any body byte is read; a refusal is answered with "Connection: close".
#ifndef SRV_FRAMING_H
#define SRV_FRAMING_H

#include <stddef.h>

#include "api/api.h"

struct srv_refusal {
    int status;       // 0: none
    const char *code; // the API's error code word (static)
    char message[160];
};

// Checks the request target as received (before percent-decoding): 400 for a control byte, a
// byte outside ASCII, an invalid percent-escape or an encoded NUL ("%00"), and for a target in
// none of RFC 9112's forms that an origin server takes: origin-form ("/path"), absolute-form
// ("http[s]://authority/path", the authority without percent-escapes) or "*". Returns 0 or -1
// with *out set.
int srv_check_target(const char *raw, struct srv_refusal *out);

// The path of a decoded target that passed srv_check_target: itself in origin-form; the part
// after the authority in absolute-form ("/" when there is none: "http://h?x" is "/"); "*" as
// is. Points into url, or to a static "/".
const char *srv_target_path(const char *url);

// Checks what the request line and the headers say together (RFC 9112 3.2): an HTTP/1.1
// request has exactly one Host, with a valid value; "*" is OPTIONS's only. 400 otherwise.
// Returns 0 or -1 with *out set.
int srv_check_request(const char *method, const char *version, const char *path,
                      const struct api_kv *headers, size_t n, struct srv_refusal *out);

// Checks the parsed headers: every name a token (whitespace before a colon and folded lines
// leave other bytes in it), at most one distinct Content-Length, no Content-Length with
// Transfer-Encoding, "chunked" as the only transfer coding (400); more than max headers (the
// caller passes how many it saw, total >= n) is 431. Returns 0 or -1 with *out set.
int srv_check_headers(const struct api_kv *headers, size_t n, size_t total, size_t max,
                      struct srv_refusal *out);

#endif
