// cors.h - cross-origin requests from browsers (the Fetch standard's CORS protocol) for
// --cors-origins.
//
// HTTP-level, so in server/: the headers go on every answer, the ones server/ makes itself
// too (413, framing 400s, 503 while draining), where a browser page must read the error; and
// they are added to libmicrohttpd's response, not to api/'s few header slots. api/ answers
// OPTIONS (204 with Allow, without the API key); this adds what makes it a preflight's answer.
#ifndef SRV_CORS_H
#define SRV_CORS_H

#include <stdbool.h>

// What a page's script may read besides the CORS-safelisted headers.
#define SRV_CORS_EXPOSE_HEADERS                                                                    \
    "X-Request-Id, ETag, X-Tensor-Shape, traceparent, Inference-Header-Content-Length"
// What a page's script may send: JSON bodies, the key, binary tensors, conditional writes,
// compressed bodies, tracing, the Open Inference Protocol's binary tensors.
#define SRV_CORS_ALLOW_HEADERS                                                                     \
    "Content-Type, Authorization, X-Request-Id, X-Tensor-Shape, If-Match, Content-Encoding, "      \
    "Accept, traceparent, Inference-Header-Content-Length"
// Seconds a browser may keep a preflight's answer (Chromium caps it at 7200).
#define SRV_CORS_MAX_AGE "600"

// One answer's facts the headers depend on (borrowed strings; NULL when absent).
struct srv_cors_request {
    const char *origin;         // the request's Origin
    const char *method;         // the request's method
    const char *request_method; // its Access-Control-Request-Method (a preflight has one)
    const char *allow;          // the answer's Allow (OPTIONS: the path's methods)
};

typedef void (*srv_cors_add_fn)(void *cls, const char *name, const char *value);

// True when the comma-separated list (a --cors-origins value that server/config.c checked)
// allows origin: "*" allows any, else an exact, ASCII case-insensitive match of
// scheme://host[:port]. *any tells whether it was "*" (then the answer says "*").
bool srv_cors_allows(const char *list, const char *origin, bool *any);

// Adds one answer's CORS headers through add. list "" (off): none. Otherwise "Vary: Origin" on
// every answer (a cache must not give one origin's answer to another); when the Origin is
// allowed, Access-Control-Allow-Origin (the origin, or "*") and Access-Control-Expose-Headers;
// for a preflight (OPTIONS with Access-Control-Request-Method) also Access-Control-Allow-Methods
// (the Allow of api/'s answer), -Allow-Headers and -Max-Age. A disallowed Origin gets none of the
// Access-Control-* headers, so the browser keeps the answer from the page.
void srv_cors_headers(const char *list, const struct srv_cors_request *req, srv_cors_add_fn add,
                      void *cls);

#endif
