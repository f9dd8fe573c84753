// internal.h - private to api/: the context, one call's state, the handler signature and the
// JSON helpers every handler uses.
#ifndef API_INTERNAL_H
#define API_INTERNAL_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "api/api.h"
#include "api/errors.h"
#include "api/json_fast.h"
#include "api/json_tensor.h"
#include "api/jw.h"
#include "core/alloc.h"
#include "core/engine.h"
#include "core/layer.h"

// ---- context and metrics ----

#define API_METRIC_ROUTES   48 // >= the number of routes, plus "unmatched" (asserted in routes.c)
#define API_LATENCY_BUCKETS 12

#define API_STATUS_MIN   100
#define API_STATUS_COUNT 500 // statuses 100..599

struct api_route_metrics {
    const char *route;
    atomic_ullong by_status[API_STATUS_COUNT];         // requests by exact status
    atomic_ullong latency_bucket[API_LATENCY_BUCKETS]; // per bucket; cumulated when rendered
    atomic_ullong latency_count;
    atomic_ullong latency_sum_us;
};

struct api_ctx {
    struct nd_engine *engine;
    struct api_config config;
    char *api_key; // owned copy, or NULL
    atomic_bool ready;
    atomic_bool store_down; // api_set_store_ready(false); zero-initialized: up
    atomic_llong inflight;
    atomic_ullong bytes_in, bytes_out, train_steps;
    atomic_ullong stale_retries; // requests run again after losing a compare-and-set (routes.c)
    struct api_route_metrics metrics[API_METRIC_ROUTES];
    int nmetrics;
};

// ---- one call ----

// A query parameter a route takes (routes.c declares them per route). An undeclared one is 422
// unknown_field; a JSON body takes the declared ones as its own fields (api_parse_body), in
// this type.
enum api_query_type {
    API_QUERY_STRING,
    API_QUERY_BOOL, // true, false, 1 or 0
};

struct api_query_param {
    const char *name;
    enum api_query_type type;
};

// The return words API_OK, API_FAIL (call->err holds the error) and API_DEFER: api/errors.h.

struct api_call {
    struct api_ctx *ctx;
    const struct api_request *req;
    struct api_response *resp;
    const char *param[2]; // path parameters ({name}, {array}) as zero-terminated copies
    char param_buf[2][256];
    json_t *body;                 // the parsed JSON body, or NULL
    struct api_fast_tensors fast; // its large numeric arrays, read before jansson
    bool binary;                  // the body is application/octet-stream
    bool inline_only;
    bool oip;                                 // a /v2 path: errors in the protocol's form (h_oip.c)
    const struct api_query_param *query_decl; // the route's query parameters ({NULL} ends)
    int64_t reserved; // bytes taken from the memory budget, given back when the call ends
    struct api_error err;
};

typedef int (*api_handler_fn)(struct api_call *call);

// ---- request helpers (routes.c) ----

// A request header (case-insensitive name) or query parameter, or NULL.
const char *api_header(const struct api_request *req, const char *name);
const char *api_query(const struct api_request *req, const char *name);

// A boolean query parameter: "true"/"1" or "false"/"0"; absent leaves *out and *present false.
// Anything else is 400 invalid_type naming it. Returns API_OK or API_FAIL.
int api_query_bool(struct api_call *call, const char *name, bool *present, bool *out);

// Parses the body as a JSON object into call->body (an empty body is {} when allow_empty),
// then adds the query parameters to it as fields (typed per the route's declaration): one given
// in both places is 422 invalid_value.
// 400 malformed_body with line and column, or nested deeper than API_JSON_MAX_DEPTH; 400
// invalid_type when not an object; 413 when jansson would need more than
// API_JSON_BYTES_PER_BODY_BYTE bytes per byte of max_body_bytes (tensors read by the fast path
// aside).
#define API_JSON_BYTES_PER_BODY_BYTE 16
int api_parse_body(struct api_call *call, bool allow_empty);

// Takes bytes from the memory budget before the call allocates them (what names them in the
// error); given back when the call ends. 413 when they could never fit in --max-memory, 503
// with Retry-After while others hold it. Returns API_OK or API_FAIL.
int api_reserve(struct api_call *call, int64_t bytes, const char *what);

// The version an If-Match header asks for: "7", 7 or W/"7" -> 7; absent or "*" -> 0 (any).
// Anything else is 412.
int api_if_match(struct api_call *call, uint64_t *version);

// ---- responses (routes.c) ----

// Starts a response writer bounded by the reply limit; on an event loop (inline_only) by
// API_INLINE_REPLY_MAX, past which the call moves to a worker.
#define API_INLINE_REPLY_MAX ((size_t)1 << 20)
void api_writer_init(struct api_call *call, struct jw *w);

// Finishes w into the response body with status and application/json. Returns API_OK; API_FAIL
// with 413 when the text passed the reply limit, 503 when the writer ran out of memory;
// API_DEFER when it passed the inline bound on an event loop.
int api_reply_json(struct api_call *call, int status, struct jw *w);

// Adds a response header (value formatted; cut to API_HEADER_VALUE_MAX).
void api_reply_header(struct api_call *call, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// Sets the ETag header from a version.
void api_reply_etag(struct api_call *call, uint64_t version);

// ---- JSON field helpers (json_util.c) ----

// 422 unknown_field for the first key of obj not in allowed (NULL-terminated), naming
// prefix.key. Returns API_OK or API_FAIL.
int api_check_keys(const json_t *obj, const char *const *allowed, const char *prefix,
                   struct api_error *err);

// Typed field readers: API_OK when absent (defaults untouched) or read, API_FAIL (400 invalid_type)
// on a wrong JSON type. The field names the path for errors.
int api_get_string(const json_t *obj, const char *key, const char *field, const char **out,
                   struct api_error *err);
int api_get_bool(const json_t *obj, const char *key, const char *field, bool *out,
                 struct api_error *err);
int api_get_number(const json_t *obj, const char *key, const char *field, double *out,
                   struct api_error *err);

// A JSON value as a number / integer / bool; API_FAIL with 400 invalid_type naming field otherwise.
int api_as_number(const json_t *v, const char *field, double *out, struct api_error *err);
int api_as_int(const json_t *v, const char *field, int64_t *out, struct api_error *err);
int api_as_bool(const json_t *v, const char *field, bool *out, struct api_error *err);
int api_as_string(const json_t *v, const char *field, const char **out, struct api_error *err);

// A core error for this call: maps status and field (prefixed).
int api_core_error(struct api_call *call, const struct nd_error *err, const char *prefix);

// ---- layers (json_layer.c) ----

// A parsed definition: the core definition plus the tensors and names it borrows.
struct api_definition {
    char name[ND_NAME_MAX + 1];
    struct nd_layer_def def;
    char shared[ND_ARRAY_COUNT][ND_NAME_MAX + 1];
};

// Parses a definition body (API.md 1.2). path_name: the name from PUT's path, or NULL for POST
// (the body must then hold it). The definition's tensors are owned; release with
// api_definition_release.
int api_parse_definition(const json_t *body, const char *path_name,
                         const struct api_tensor_limits *limits, struct api_fast_tensors *fast,
                         struct api_definition *out, struct api_error *err);
void api_definition_release(struct api_definition *d);

// Writes GET /v1/layers/{name}'s object; returns the version it shows.
uint64_t api_write_layer_info(struct jw *w, struct nd_layer *layer);

// Writes the effective options of a spec (its type's options only).
void api_write_options(struct jw *w, const struct nd_spec *spec, const struct nd_layout *layout);

// An enabled array's facts as GET layer and GET .../arrays show them: its "shape" (known, else
// the layout's parameter shape, else unknown), "learning_rate_multiplier" and "shared" (the
// shared array's name or null), as keys of the object being written.
void api_write_array_facts(struct jw *w, const struct nd_layer_info *info, enum nd_array_id id);

// Writes the value of one option (canonical name or alias) of the spec's type; false when the
// type has no such option.
bool api_write_option_named(struct jw *w, const struct nd_spec *spec,
                            const struct nd_layout *layout, const char *name);

// Parses an array name (canonical or alias) that must exist for the layer type: 404 not_found
// naming field otherwise.
int api_parse_array_name(const char *name, enum nd_layer_type type, const char *field,
                         enum nd_array_id *id, struct api_error *err);

// Parses a per-example shape: an integer n ([n]), a list of integers >= 0 or nulls, or null
// (unknown). 400 invalid_type / 422 invalid_value naming field; 413 when its known dims hold
// more than max_elements (> 0) elements.
int api_parse_shape(const json_t *v, const char *field, int64_t max_elements, struct nd_shape *out,
                    struct api_error *err);

// Writes a shape as a list (null for unknown dims; null for an unknown rank).
void api_write_shape(struct jw *w, const struct nd_shape *shape);

// ---- handlers ----

int api_h_healthz(struct api_call *call);
int api_h_readyz(struct api_call *call);
int api_h_metrics(struct api_call *call);
int api_h_info(struct api_call *call);
int api_h_layers_list(struct api_call *call);
int api_h_layers_create(struct api_call *call);
int api_h_layer_get(struct api_call *call);
int api_h_layer_put(struct api_call *call);
int api_h_layer_delete(struct api_call *call);
int api_h_type_options(struct api_call *call);
int api_h_types(struct api_call *call);
int api_h_initialize(struct api_call *call);
int api_h_forward(struct api_call *call);
int api_h_train_step(struct api_call *call);
int api_h_extract(struct api_call *call);
int api_h_array_get(struct api_call *call);
int api_h_array_put(struct api_call *call);
int api_h_shared_list(struct api_call *call);
int api_h_shared_get(struct api_call *call);
int api_h_arrays_list(struct api_call *call);
int api_h_export(struct api_call *call);
int api_h_import(struct api_call *call);
int api_h_history(struct api_call *call); // GET /v1/layers/{name}/history (h_history.c)
int api_h_ui(struct api_call *call);      // GET /ui: the dashboard (h_ui.c)

// The Open Inference Protocol v2 (h_oip.c): /v2 routes, and their errors' form.
int api_h_oip_server(struct api_call *call);
int api_h_oip_live(struct api_call *call);
int api_h_oip_ready(struct api_call *call);
int api_h_oip_model(struct api_call *call);
int api_h_oip_model_ready(struct api_call *call);
int api_h_oip_infer(struct api_call *call);
int api_h_oip_train(struct api_call *call);
void api_oip_reply_error(struct api_call *call); // {"error": "message"}, 422 -> 400

// Ready to serve: started, not draining, and the shared store (if any) reachable.
bool api_is_ready(const struct api_ctx *ctx);

// Writes the server's "name" and "version" keys into the open object (GET /v1 and GET /v2).
void api_write_server_id(struct jw *w, const struct api_ctx *ctx);

// Takes a reference to the layer named by the path, or fails (404). On an event loop
// (inline_only) a layer this replica does not hold is API_DEFER: a worker loads it from a
// shared store.
int api_layer_from_path(struct api_call *call, struct nd_layer **out);

// min_version (body or query; API.md 2.4): when *layer is older, replaces it with the store's
// copy (API_DEFER on an event loop); 503 unavailable with Retry-After when that is older too,
// 422 for a bad value. *layer may be NULL after a failure (nd_layer_unref takes NULL).
int api_layer_at_least(struct api_call *call, struct nd_layer **layer);

#endif
