// api.h - the one header server/ sees: HTTP-independent request handling in plain C types.
//
// server/ turns an HTTP request into a struct api_request, calls api_handle (inline on its
// event loop, or on a worker thread), and sends the struct api_response back. api/ owns the
// route table, the JSON parsing and rendering, authorization, and the request metrics that
// GET /metrics exposes; it never sees a socket.
#ifndef API_API_H
#define API_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nd_engine;
struct nd_budget;

struct api_config {
    const char *version;    // server version for GET /v1 (borrowed for the ctx's lifetime)
    size_t max_body_bytes;  // reported by GET /v1; server/ enforces it while receiving
    int64_t max_elements;   // per tensor; more is 413
    int64_t max_layers;     // reported by GET /v1; the engine enforces it (429)
    const char *api_key;    // NULL or "": no authorization; else /v1 needs "Bearer KEY"
    size_t max_reply_bytes; // a reply's text is refused (413) past it; 0: API_REPLY_BYTES_PER_
                            // ELEMENT * max_elements + 1 MiB, what the largest tensors need
    const char *store;      // a shared store's name for /readyz ("redis://host:6379/0"), or
                            // NULL (borrowed for the ctx's lifetime)
};

// The default reply bound per allowed element: a train-step may return four tensors of
// max_elements floats, each at most 17 bytes of text ("-1.17549435e-38,").
#define API_REPLY_BYTES_PER_ELEMENT 72

struct api_ctx;

// Creates the API context over an engine (borrowed; it must outlive the ctx). Returns NULL when
// out of memory. Caller owns; free with api_ctx_free (NULL-safe).
struct api_ctx *api_ctx_create(struct nd_engine *engine, const struct api_config *config);
void api_ctx_free(struct api_ctx *ctx);

// Readiness for GET /readyz: false while starting or draining (503). Thread-safe.
void api_set_ready(struct api_ctx *ctx, bool ready);

// Whether the store shared by replicas can be reached (initially true): while false, /readyz
// answers 503 naming config.store, whatever api_set_ready said. Thread-safe.
void api_set_store_ready(struct api_ctx *ctx, bool ok);

// A header or query parameter (borrowed strings).
struct api_kv {
    const char *key;
    const char *value;
};

struct api_request {
    const char *method;         // "GET", "POST", ...
    const char *path;           // without the query string, percent-decoded
    const struct api_kv *query; // query parameters
    size_t nquery;
    const struct api_kv *headers; // request headers (names compared case-insensitively)
    size_t nheaders;
    const char *body; // may be NULL when body_len is 0
    size_t body_len;
};

#define API_MAX_HEADERS      6
#define API_HEADER_VALUE_MAX 192

struct api_response {
    int status;
    char *body; // malloc'd (free()), or NULL for an empty body
    size_t body_len;
    const char *content_type; // static string, or NULL with an empty body
    int nheaders;             // extra headers: ETag, Location, Allow, X-Tensor-Shape, ...
    char header_name[API_MAX_HEADERS][32];
    char header_value[API_MAX_HEADERS][API_HEADER_VALUE_MAX];
    const char *route; // the matched route pattern ("/v1/layers/{name}/forward"), static; for
                       // metrics and logs
    struct nd_budget *budget; // the body's bytes are counted here until api_response_free
    int64_t reserved;
};

// Frees the body, gives its bytes back to the memory budget and resets *resp. NULL-safe.
void api_response_free(struct api_response *resp);

enum api_outcome {
    API_DONE,     // *resp holds the answer
    API_DEFERRED, // inline_only was set and the request needs a worker thread: call again there
};

// Handles one request. inline_only: the caller is an event loop that must not block; requests
// that would compute or wait on a layer answer API_DEFERRED (and leave *resp untouched).
// Thread-safe: any number of threads may call it at once.
enum api_outcome api_handle(struct api_ctx *ctx, const struct api_request *req,
                            struct api_response *resp, bool inline_only);

// Fills *resp with an error answer of the API's form ({"error": {"status", "code",
// "message"}}; the message escaped, valid UTF-8 whatever it holds), for errors server/
// answers itself (413 before a body, 400 framing, 503 draining). route is "unmatched".
// Out of memory leaves an empty body. resp is overwritten (not freed first).
void api_error_reply(struct api_response *resp, int status, const char *code, const char *message);

// Decides what the head of a request (method, path, query, headers; req->body unread) settles
// alone, so that server/ need not read a body it would refuse: no route (404, 405), a missing
// or wrong API key (401), a query parameter the route does not take (422); OPTIONS (no key
// needed) only when a body follows, so that none is read for it. Returns true with *resp
// holding the answer; false when the body must be read and the request handled with
// api_handle. Thread-safe; never waits.
//
// HTTP semantics both functions share: HEAD runs the GET route (server/ sends no body);
// OPTIONS answers 204 with Allow, the path's methods ("GET, HEAD, POST, OPTIONS"), also in
// 405s; one trailing slash names the same route ("/v1/layers/"); path "*" (OPTIONS *) is the
// whole server.
bool api_answer_head(struct api_ctx *ctx, const struct api_request *req, struct api_response *resp);

// Records one finished request for GET /metrics: its route (resp->route), status, latency and
// byte counts. Called by server/ after the response is sent. Thread-safe.
void api_observe(struct api_ctx *ctx, const char *route, const char *method, int status,
                 double seconds, uint64_t bytes_in, uint64_t bytes_out);

// Requests in flight, for GET /metrics (server/ increments and decrements). Thread-safe.
void api_inflight_add(struct api_ctx *ctx, int delta);

#endif
