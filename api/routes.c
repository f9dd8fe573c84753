// routes.c - the route table, matching, content negotiation, authorization, and the response
// helpers every handler uses.
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/internal.h"
#include "api/tensor_io.h"

// ---- the table ----

enum route_flags {
    ROUTE_AUTH = 1u << 0,   // /v1: needs the API key when one is set
    ROUTE_INLINE = 1u << 1, // may run on the event loop: it never waits (or answers API_DEFER)
    ROUTE_BODY = 1u << 2,   // takes a body (JSON, or binary where the handler allows it)
};

struct route {
    const char *method;
    const char *pattern; // segments; {x} matches one segment
    api_handler_fn fn;
    unsigned flags;
    const struct api_query_param *query; // the query parameters it takes; NULL: none
};

// Query parameters are fields of the request like the body's (API.md 2.4): a route takes the
// ones declared here, anything else is 422 unknown_field.
// min_version: read-your-writes across replicas.
static const struct api_query_param Q_FORWARD[] = {
    {"mode", API_QUERY_STRING}, {"min_version", API_QUERY_STRING},
    {"batch", API_QUERY_BOOL},  {"output_format", API_QUERY_STRING},
    {NULL, API_QUERY_STRING},
};
static const struct api_query_param Q_FORMAT[] = {
    {"output_format", API_QUERY_STRING},
    {NULL, API_QUERY_STRING},
};
static const struct api_query_param Q_EXTRACT[] = {
    {"output_format", API_QUERY_STRING},
    {"min_version", API_QUERY_STRING},
    {NULL, API_QUERY_STRING},
};
static const struct api_query_param Q_MIN_VERSION[] = {
    {"min_version", API_QUERY_STRING},
    {NULL, API_QUERY_STRING},
};
static const struct api_query_param Q_HISTORY[] = {
    // the newest N records only
    {"limit", API_QUERY_STRING},
    {NULL, API_QUERY_STRING},
};
static const struct api_query_param Q_UI[] = {
    // the layer the dashboard opens with
    {"layer", API_QUERY_STRING},
    {NULL, API_QUERY_STRING},
};

static const struct route routes[] = {
    {"GET", "/healthz", api_h_healthz, ROUTE_INLINE},
    {"GET", "/readyz", api_h_readyz, ROUTE_INLINE},
    {"GET", "/metrics", api_h_metrics, ROUTE_INLINE},
    {"GET", "/v1", api_h_info, ROUTE_AUTH | ROUTE_INLINE},
    {"GET", "/v1/types", api_h_types, ROUTE_AUTH | ROUTE_INLINE},
    {"GET", "/v1/types/{type}/options", api_h_type_options, ROUTE_AUTH | ROUTE_INLINE},
    {"GET", "/v1/layers", api_h_layers_list, ROUTE_AUTH},
    {"POST", "/v1/layers", api_h_layers_create, ROUTE_AUTH | ROUTE_BODY},
    {"GET", "/v1/layers/{name}", api_h_layer_get, ROUTE_AUTH, Q_MIN_VERSION},
    {"PUT", "/v1/layers/{name}", api_h_layer_put, ROUTE_AUTH | ROUTE_BODY},
    {"DELETE", "/v1/layers/{name}", api_h_layer_delete, ROUTE_AUTH},
    {"POST", "/v1/layers/{name}/initialize", api_h_initialize, ROUTE_AUTH | ROUTE_BODY},
    {"POST", "/v1/layers/{name}/forward", api_h_forward, ROUTE_AUTH | ROUTE_BODY | ROUTE_INLINE,
     Q_FORWARD},
    {"POST", "/v1/layers/{name}/train-step", api_h_train_step, ROUTE_AUTH | ROUTE_BODY},
    {"POST", "/v1/layers/{name}/extract", api_h_extract, ROUTE_AUTH | ROUTE_BODY, Q_EXTRACT},
    {"GET", "/v1/layers/{name}/arrays", api_h_arrays_list, ROUTE_AUTH},
    {"GET", "/v1/layers/{name}/history", api_h_history, ROUTE_AUTH, Q_HISTORY},
    {"GET", "/v1/layers/{name}/export", api_h_export, ROUTE_AUTH, Q_FORMAT},
    {"POST", "/v1/layers/{name}/import", api_h_import, ROUTE_AUTH | ROUTE_BODY},
    {"GET", "/v1/layers/{name}/arrays/{array}", api_h_array_get, ROUTE_AUTH, Q_FORMAT},
    {"PUT", "/v1/layers/{name}/arrays/{array}", api_h_array_put, ROUTE_AUTH | ROUTE_BODY},
    {"GET", "/v1/shared-arrays", api_h_shared_list, ROUTE_AUTH},
    {"GET", "/v1/shared-arrays/{name}", api_h_shared_get, ROUTE_AUTH, Q_FORMAT},
    // the Open Inference Protocol v2 (h_oip.c); its health routes need no key, as /healthz
    {"GET", "/v2", api_h_oip_server, ROUTE_AUTH | ROUTE_INLINE},
    {"GET", "/v2/health/live", api_h_oip_live, ROUTE_INLINE},
    {"GET", "/v2/health/ready", api_h_oip_ready, ROUTE_INLINE},
    {"GET", "/v2/models/{name}", api_h_oip_model, ROUTE_AUTH},
    {"GET", "/v2/models/{name}/versions/{v}", api_h_oip_model, ROUTE_AUTH},
    {"GET", "/v2/models/{name}/ready", api_h_oip_model_ready, ROUTE_AUTH},
    {"GET", "/v2/models/{name}/versions/{v}/ready", api_h_oip_model_ready, ROUTE_AUTH},
    {"POST", "/v2/models/{name}/infer", api_h_oip_infer, ROUTE_AUTH | ROUTE_BODY | ROUTE_INLINE},
    {"POST", "/v2/models/{name}/versions/{v}/infer", api_h_oip_infer,
     ROUTE_AUTH | ROUTE_BODY | ROUTE_INLINE},
    {"POST", "/v2/models/{name}/train", api_h_oip_train, ROUTE_AUTH | ROUTE_BODY},
    {"POST", "/v2/models/{name}/versions/{v}/train", api_h_oip_train, ROUTE_AUTH | ROUTE_BODY},
    // the dashboard's static files: no key (its script sends the key the user gives)
    {"GET", "/ui", api_h_ui, ROUTE_INLINE, Q_UI},
    {"GET", "/ui/{file}", api_h_ui, ROUTE_INLINE},
    {"GET", "/ui/vendor/{file}", api_h_ui, ROUTE_INLINE},
};
#define NROUTES ((int)(sizeof routes / sizeof routes[0]))
_Static_assert(sizeof routes / sizeof routes[0] < API_METRIC_ROUTES,
               "every route has its metrics, and \"unmatched\" one more");

static const char *const UNMATCHED = "unmatched";

// Matches path against pattern, copying {x} segments into call->param (at most 2). One
// trailing slash names the same resource ("/v1/layers/" is "/v1/layers"): what REST clients
// expect, and a POST is not redirected (clients may not follow a 308 with the body).
static bool match(const char *pattern, const char *path, struct api_call *call) {
    int np = 0;
    while (*pattern && *path) {
        if (*pattern != '/' || *path != '/')
            return false;
        pattern++, path++;
        const char *pe = strchr(pattern, '/'), *se = strchr(path, '/');
        size_t plen = pe ? (size_t)(pe - pattern) : strlen(pattern);
        size_t slen = se ? (size_t)(se - path) : strlen(path);
        if (pattern[0] == '{') {
            if (slen == 0 || slen >= sizeof call->param_buf[0] || np == 2)
                return false;
            memcpy(call->param_buf[np], path, slen);
            call->param_buf[np][slen] = '\0';
            call->param[np] = call->param_buf[np];
            np++;
        } else if (plen != slen || memcmp(pattern, path, plen) != 0) {
            return false;
        }
        pattern += plen, path += slen;
    }
    return *pattern == '\0' && (*path == '\0' || strcmp(path, "/") == 0);
}

// ---- request helpers ----

static const char *kv_find(const struct api_kv *kv, size_t n, const char *key, bool nocase) {
    for (size_t i = 0; i < n; i++)
        if (kv[i].key && (nocase ? strcasecmp(kv[i].key, key) : strcmp(kv[i].key, key)) == 0)
            return kv[i].value ? kv[i].value : "";
    return NULL;
}

const char *api_header(const struct api_request *req, const char *name) {
    return kv_find(req->headers, req->nheaders, name, true);
}

const char *api_query(const struct api_request *req, const char *name) {
    return kv_find(req->query, req->nquery, name, false);
}

// Not a boolean is a wrong type (400), as a JSON body's would be.
static int parse_bool_text(struct api_call *call, const char *name, const char *text, bool *out) {
    static const struct api_enum_name bools[] = {
        {"true", 1, false}, {"false", 0, false}, {"1", 1, true}, {"0", 0, true}, {NULL, 0, false}};
    int v = api_enum_find(text, bools, 0);
    char expected[32];
    if (v < 0)
        return api_fail(&call->err, API_E_INVALID_TYPE, name, "%s must be %s, not %.40s", name,
                        api_enum_expected(bools, "", expected, sizeof expected), text);
    *out = v == 1;
    return API_OK;
}

int api_query_bool(struct api_call *call, const char *name, bool *present, bool *out) {
    const char *text = api_query(call->req, name);
    *present = false;
    *out = false;
    if (!text)
        return API_OK;
    *present = true;
    return parse_bool_text(call, name, text, out);
}

static const struct api_query_param *query_param(const struct api_query_param *decl,
                                                 const char *name) {
    for (; decl && decl->name; decl++)
        if (strcmp(decl->name, name) == 0)
            return decl;
    return NULL;
}

// Every query parameter must be one the route declares, and given once: 422 naming it.
static int check_query(struct api_call *call) {
    const struct api_request *req = call->req;
    for (size_t i = 0; i < req->nquery; i++) {
        const char *name = req->query[i].key ? req->query[i].key : "";
        if (!query_param(call->query_decl, name)) {
            char takes[96] = "";
            for (const struct api_query_param *d = call->query_decl; d && d->name; d++) {
                size_t n = strlen(takes);
                snprintf(takes + n, sizeof takes - n, "%s%s", n ? ", " : "", d->name);
            }
            return api_fail(&call->err, API_E_UNKNOWN_FIELD, name,
                            "unknown query parameter %.60s (%s %.60s takes %s)", name, req->method,
                            req->path, takes[0] ? takes : "none");
        }
        for (size_t k = 0; k < i; k++)
            if (req->query[k].key && strcmp(req->query[k].key, name) == 0)
                return api_fail(&call->err, API_E_INVALID_VALUE, name,
                                "query parameter %.60s is given more than once", name);
    }
    return API_OK;
}

// The query parameters become fields of the parsed JSON body, so that a JSON route applies
// them as it applies the body's (never ignored); one in both places is refused, not chosen.
static int merge_query(struct api_call *call) {
    const struct api_request *req = call->req;
    for (size_t i = 0; i < req->nquery; i++) {
        const char *name = req->query[i].key;
        const char *text = req->query[i].value ? req->query[i].value : "";
        const struct api_query_param *d = name ? query_param(call->query_decl, name) : NULL;
        if (!d) // undeclared: check_query refused it before the handler ran
            continue;
        if (json_object_get(call->body, name))
            return api_fail(&call->err, API_E_INVALID_VALUE, name,
                            "%s is given both in the query and in the body: give it once", name);
        bool b = false;
        if (d->type == API_QUERY_BOOL && parse_bool_text(call, name, text, &b) != 0)
            return API_FAIL;
        // nocheck: a client's bytes may not be UTF-8; the handler judges the value, and every
        // reply escapes what it repeats
        json_t *v = d->type == API_QUERY_BOOL ? json_boolean(b) : json_string_nocheck(text);
        if (!v || json_object_set_new(call->body, name, v) != 0)
            return api_fail(&call->err, API_E_UNAVAILABLE, NULL, NULL);
    }
    return API_OK;
}

int api_reserve(struct api_call *call, int64_t bytes, const char *what) {
    struct nd_budget *b = nd_engine_budget(call->ctx->engine);
    if (nd_budget_take(b, bytes)) {
        call->reserved += bytes > 0 ? bytes : 0;
        return API_OK;
    }
    // Past the whole budget together with what the call (and its body) already holds, the
    // request could never run: 413, not a 503 that retries forever.
    if (nd_budget_never_fits(b, bytes + call->reserved + (int64_t)call->req->body_len))
        return api_fail(&call->err, API_E_PAYLOAD_TOO_LARGE, NULL,
                        "%s would need %lld bytes of memory; this server's --max-memory is "
                        "%lld",
                        what, (long long)bytes, (long long)b->limit);
    api_reply_header(call, "Retry-After", "1");
    return api_fail(&call->err, API_E_UNAVAILABLE, NULL,
                    "%s would need %lld bytes of memory and the server's budget (%lld of "
                    "%lld in use) cannot give them now; retry",
                    what, (long long)bytes, (long long)nd_budget_used(b), (long long)b->limit);
}

// Before jansson builds anything: the nesting against API_JSON_MAX_DEPTH (400), and the heap
// its values would take against API_JSON_BYTES_PER_BODY_BYTE per byte a body may have (413):
// 64 MiB of "[{},{},...]" once made 5 GB of jansson objects.
static int check_json_cost(struct api_call *call, const char *text, size_t len) {
    struct api_json_cost cost = api_json_measure(text, len);
    // jansson's values, and tensors made from them (at most their size again), are counted
    // before jansson allocates them.
    if (cost.depth <= API_JSON_MAX_DEPTH &&
        api_reserve(call, (int64_t)cost.bytes * 2, "parsing the body") != 0)
        return API_FAIL;
    uint64_t cap = (uint64_t)call->ctx->config.max_body_bytes * API_JSON_BYTES_PER_BODY_BYTE;
    if (cost.depth > API_JSON_MAX_DEPTH)
        return api_fail(&call->err, API_E_MALFORMED_BODY, NULL,
                        "the body nests objects and lists %d deep; the limit is %d", cost.depth,
                        API_JSON_MAX_DEPTH);
    if (cap && cost.bytes > cap)
        return api_fail(&call->err, API_E_PAYLOAD_TOO_LARGE, NULL,
                        "the body's JSON would take %llu bytes to parse; the limit is %llu "
                        "(numeric tensors are not counted: send large tensors as nested "
                        "lists, base64 or a binary body)",
                        (unsigned long long)cost.bytes, (unsigned long long)cap);
    return API_OK;
}

int api_parse_body(struct api_call *call, bool allow_empty) {
    const struct api_request *req = call->req;
    if (req->body_len == 0 && allow_empty) {
        call->body = json_object();
        if (!call->body)
            return api_fail(&call->err, API_E_UNAVAILABLE, NULL, NULL);
        return merge_query(call);
    }
    // The large numeric arrays are read first, the rest of the text going to a new buffer
    // (as large as the body, though a forward's rest is a few bytes). It and those tensors (a
    // number takes at least 2 bytes of text, "1,", and 4 as a float) are counted first.
    if (api_reserve(call, (int64_t)req->body_len * 3 + 1, "reading the body") != 0)
        return API_FAIL;
    size_t len = 0;
    char *text = api_fast_extract_copy(req->body, req->body_len, call->ctx->config.max_elements,
                                       &call->fast, &len);
    if (!text)
        return api_fail(&call->err, API_E_UNAVAILABLE, NULL, NULL);
    if (check_json_cost(call, text, len) != 0) {
        free(text);
        return API_FAIL;
    }
    json_error_t jerr;
    call->body = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    free(text);
    if (!call->body)
        return api_fail(&call->err, API_E_MALFORMED_BODY, NULL,
                        "malformed JSON at line %d, column %d: %s", jerr.line, jerr.column,
                        jerr.text);
    if (!json_is_object(call->body))
        return api_fail(&call->err, API_E_INVALID_TYPE, NULL, "the body must be a JSON object");
    return merge_query(call);
}

int api_if_match(struct api_call *call, uint64_t *version) {
    const char *h = api_header(call->req, "If-Match");
    *version = 0;
    if (!h || strcmp(h, "*") == 0)
        return API_OK;
    h += strncmp(h, "W/", 2) == 0 ? 2 : 0;
    h += *h == '"';
    errno = 0;
    char *end;
    unsigned long long v = strtoull(h, &end, 10);
    if (errno || end == h || v == 0 || (*end && *end != '"'))
        return api_fail(&call->err, API_E_PRECONDITION_FAILED, "If-Match",
                        "If-Match must be a version ETag such as \"3\"");
    *version = v;
    return API_OK;
}

// JSON, no Content-Type, or curl -d's form type (its body is the JSON) are JSON; octet-stream
// is binary where the handler takes it; anything else is 415.
static int classify_body(struct api_call *call) {
    const char *ct = api_header(call->req, "Content-Type");
    if (!ct || !ct[0])
        return API_OK;
    size_t n = strcspn(ct, "; ");
    // before the empty-body rule: a tensor with a zero dimension is an empty binary body
    if (n == 24 && strncasecmp(ct, "application/octet-stream", n) == 0) {
        call->binary = true;
        return API_OK;
    }
    if (call->req->body_len == 0)
        return API_OK;
    if ((n == 16 && strncasecmp(ct, "application/json", n) == 0) ||
        (n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0) ||
        (n == 33 && strncasecmp(ct, "application/x-www-form-urlencoded", n) == 0))
        return API_OK;
    return api_fail(&call->err, API_E_UNSUPPORTED_MEDIA_TYPE, "Content-Type",
                    "Content-Type %.60s is not supported: send application/json (or "
                    "application/octet-stream with X-Tensor-Shape)",
                    ct);
}

// Constant-time comparison, so the key cannot be guessed byte by byte from response times.
static bool key_equal(const char *given, const char *key) {
    size_t n = strlen(key), m = strlen(given);
    unsigned diff = (unsigned)(n ^ m);
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)key[i] ^ (unsigned char)(i < m ? given[i] : 0);
    return diff == 0;
}

static int authorize(struct api_call *call) {
    const char *key = call->ctx->api_key;
    if (!key)
        return API_OK;
    const char *auth = api_header(call->req, "Authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0 && key_equal(auth + 7, key))
        return API_OK;
    api_reply_header(call, "WWW-Authenticate", "Bearer");
    return api_fail(&call->err, API_E_UNAUTHORIZED, "Authorization",
                    "this server needs Authorization: Bearer <key>");
}

// ---- responses ----

void api_response_free(struct api_response *resp) {
    if (!resp)
        return;
    free(resp->body);
    nd_budget_give(resp->budget, resp->reserved);
    memset(resp, 0, sizeof *resp);
}

// At the end of a call: the reply's text outlives it (counted until api_response_free), the
// rest of what the call took was freed with it.
static void settle_budget(struct api_call *call) {
    struct nd_budget *b = nd_engine_budget(call->ctx->engine);
    call->resp->budget = b;
    call->resp->reserved = (int64_t)call->resp->body_len;
    nd_budget_add(b, call->resp->reserved);
    nd_budget_give(b, call->reserved);
    call->reserved = 0;
}

void api_reply_header(struct api_call *call, const char *name, const char *fmt, ...) {
    struct api_response *r = call->resp;
    if (r->nheaders == API_MAX_HEADERS)
        return;
    snprintf(r->header_name[r->nheaders], sizeof r->header_name[0], "%s", name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->header_value[r->nheaders], sizeof r->header_value[0], fmt, ap);
    va_end(ap);
    r->nheaders++;
}

// By hand, not through api_reply_header: every forward sends one, and printf was a visible
// share of a tiny forward's time under load.
void api_reply_etag(struct api_call *call, uint64_t version) {
    struct api_response *r = call->resp;
    if (r->nheaders == API_MAX_HEADERS)
        return;
    char digits[24], *v = r->header_value[r->nheaders];
    int n = 0;
    do
        digits[n++] = (char)('0' + version % 10);
    while ((version /= 10) != 0);
    *v++ = '"';
    while (n)
        *v++ = digits[--n];
    memcpy(v, "\"", 2);
    memcpy(r->header_name[r->nheaders], "ETag", 5);
    r->nheaders++;
}

void api_writer_init(struct api_call *call, struct jw *w) {
    size_t limit = call->ctx->config.max_reply_bytes;
    jw_init(w);
    jw_set_limit(w,
                 call->inline_only && limit > API_INLINE_REPLY_MAX ? API_INLINE_REPLY_MAX : limit);
}

int api_reply_json(struct api_call *call, int status, struct jw *w) {
    size_t len = 0;
    bool too_large = w->too_large;
    char *text = jw_finish(w, &len);
    if (!text && too_large && call->inline_only)
        return API_DEFER; // a worker may write it, bounded by the reply limit
    if (!text && too_large)
        return api_fail(&call->err, API_E_PAYLOAD_TOO_LARGE, NULL,
                        "the reply would be larger than this server's limit of %zu bytes",
                        call->ctx->config.max_reply_bytes);
    if (!text)
        return api_fail(&call->err, API_E_UNAVAILABLE, NULL,
                        "out of memory while writing the response");
    call->resp->status = status;
    call->resp->body = text;
    call->resp->body_len = len;
    call->resp->content_type = "application/json; charset=utf-8";
    return API_OK;
}

// A not-initialized layer's error says how to fix it, in the API's words (core knows no routes).
static void add_fix_hint(struct api_call *call) {
    struct api_error *e = &call->err;
    if (!e->code || strcmp(e->code, "not_initialized") != 0 || !call->param[0])
        return;
    size_t n = strlen(e->message);
    snprintf(e->message + n, sizeof e->message - n,
             "; give \"input\" when creating the layer, or POST /v1/layers/%s/initialize with "
             "{\"input\": [...]}",
             call->param[0]);
}

static void reply_error(struct api_call *call) {
    struct api_error *e = &call->err;
    if (call->oip) { // the protocol's own form
        api_oip_reply_error(call);
        return;
    }
    add_fix_hint(call);
    struct jw w;
    jw_init(&w);
    jw_obj_begin(&w);
    jw_key(&w, "error");
    jw_obj_begin(&w);
    jw_key(&w, "status");
    jw_int(&w, e->status);
    jw_key(&w, "code");
    jw_string(&w, e->code ? e->code : "internal");
    jw_key(&w, "message");
    jw_string(&w, e->message);
    if (e->field[0]) {
        jw_key(&w, "field");
        jw_string(&w, e->field);
    }
    jw_obj_end(&w);
    jw_obj_end(&w);
    free(call->resp->body);
    call->resp->body = jw_finish(&w, &call->resp->body_len);
    call->resp->status = e->status;
    call->resp->content_type = call->resp->body ? "application/json; charset=utf-8" : NULL;
    if (!call->resp->body)
        call->resp->body_len = 0;
}

// ---- dispatch ----

// The first route of the path under any method ("*", OPTIONS *, is the whole server); NULL
// when there is none.
static const struct route *path_route(struct api_call *call, const char *method) {
    bool server = strcmp(call->req->path, "*") == 0;
    for (int i = 0; i < NROUTES; i++)
        if ((!method || strcmp(routes[i].method, method) == 0) &&
            (server || match(routes[i].pattern, call->req->path, call)))
            return &routes[i];
    return NULL;
}

// The path's methods for Allow, in a fixed order with HEAD beside GET and OPTIONS last
// ("GET, HEAD, POST, OPTIONS"); "" when no route has the path.
static void allowed_methods(struct api_call *call, char *allow, size_t size) {
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    allow[0] = '\0';
    for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
        if (!path_route(call, methods[m]))
            continue;
        size_t n = strlen(allow);
        snprintf(allow + n, size - n, "%s%s%s", n ? ", " : "", methods[m],
                 strcmp(methods[m], "GET") == 0 ? ", HEAD" : "");
    }
    if (allow[0]) {
        size_t n = strlen(allow);
        snprintf(allow + n, size - n, ", OPTIONS");
    }
}

#define ALLOW_MAX 96

// 405 with Allow when the path exists under other methods; 404 otherwise.
static int no_route(struct api_call *call) {
    char allow[ALLOW_MAX];
    allowed_methods(call, allow, sizeof allow);
    if (!allow[0])
        return api_fail(&call->err, API_E_NOT_FOUND, NULL, "no route %.100s", call->req->path);
    api_reply_header(call, "Allow", "%s", allow);
    return api_fail(&call->err, API_E_METHOD_NOT_ALLOWED, NULL,
                    "%.10s is not allowed on %.100s (allowed: %s)", call->req->method,
                    call->req->path, allow);
}

// OPTIONS: 204 with the path's methods in Allow (404 for no route). No key is needed: a
// browser's CORS preflight carries none, and Allow tells nothing the route table does not.
static int options(struct api_call *call) {
    char allow[ALLOW_MAX];
    const struct route *r = path_route(call, NULL);
    allowed_methods(call, allow, sizeof allow);
    if (!r || !allow[0])
        return api_fail(&call->err, API_E_NOT_FOUND, NULL, "no route %.100s", call->req->path);
    call->resp->route = r->pattern;
    api_reply_header(call, "Allow", "%s", allow);
    call->resp->status = 204;
    return API_OK;
}

static bool is_method(const struct api_request *req, const char *method) {
    return strcmp(req->method, method) == 0;
}

// /v2 and below: the Open Inference Protocol, whose errors have its own form.
static bool is_oip_path(const char *path) {
    return strncmp(path, "/v2", 3) == 0 && (path[3] == '\0' || path[3] == '/');
}

// HEAD runs the GET route; libmicrohttpd sends its status and headers (Content-Length of the
// GET's body) without the body.
static const struct route *find_route(struct api_call *call) {
    const char *method = is_method(call->req, "HEAD") ? "GET" : call->req->method;
    for (int i = 0; i < NROUTES; i++)
        if (strcmp(routes[i].method, method) == 0 &&
            match(routes[i].pattern, call->req->path, call))
            return &routes[i];
    return NULL;
}

static int run_route(struct api_call *call, const struct route *r) {
    call->query_decl = r->query;
    if ((r->flags & ROUTE_AUTH) && authorize(call) != 0)
        return API_FAIL;
    if (check_query(call) != 0)
        return API_FAIL;
    if (!(r->flags & ROUTE_BODY) && call->req->body_len > 0)
        return api_fail(&call->err, API_E_MALFORMED_BODY, NULL, "%s %s takes no body", r->method,
                        r->pattern);
    if ((r->flags & ROUTE_BODY) && classify_body(call) != 0)
        return API_FAIL;
    return r->fn(call);
}

// A change that lost a compare-and-set to another replica runs again on the store's state
// (the store dropped the stale copy): as many tries in all, then 409 conflict. Each try that
// loses means another replica's change of the layer got through meanwhile.
#define API_STALE_TRIES 8

// Lets go of what a try of the route parsed and reserved: its body, pre-read tensors and
// budget reservation.
static void call_release_input(struct api_call *call) {
    json_decref(call->body);
    call->body = NULL;
    api_fast_release(&call->fast);
    nd_budget_give(nd_engine_budget(call->ctx->engine), call->reserved);
    call->reserved = 0;
}

// Forgets what a try of the route did, for the next try: its reply, input and error (the
// path's parameters stay).
static void call_reset(struct api_call *call) {
    const char *route = call->resp->route;
    api_response_free(call->resp);
    memset(call->resp, 0, sizeof *call->resp);
    call->resp->route = route;
    call_release_input(call);
    call->binary = false;
    memset(&call->err, 0, sizeof call->err);
}

enum api_outcome api_handle(struct api_ctx *ctx, const struct api_request *req,
                            struct api_response *resp, bool inline_only) {
    struct api_call call = {.ctx = ctx,
                            .req = req,
                            .resp = resp,
                            .inline_only = inline_only,
                            .oip = is_oip_path(req->path)};
    bool is_options = is_method(req, "OPTIONS");
    const struct route *r = is_options ? NULL : find_route(&call);
    if (inline_only && r && !(r->flags & ROUTE_INLINE))
        return API_DEFERRED;
    struct api_response caller; // given back byte for byte when the call defers
    memcpy(&caller, resp, sizeof caller);
    memset(resp, 0, sizeof *resp);
    resp->route = r ? r->pattern : UNMATCHED;
    int rc = is_options ? options(&call) : r ? run_route(&call, r) : no_route(&call);
    for (int tries = 1; rc != API_DEFER && call.err.stale && tries < API_STALE_TRIES; tries++) {
        atomic_fetch_add_explicit(&ctx->stale_retries, 1, memory_order_relaxed);
        call_reset(&call);
        rc = run_route(&call, r);
    }
    if (rc == API_DEFER) {
        api_response_free(resp);
        memcpy(resp, &caller, sizeof *resp);
        call_release_input(&call);
        return API_DEFERRED;
    }
    if (rc != API_OK || call.err.status != 0)
        reply_error(&call);
    json_decref(call.body);
    api_fast_release(&call.fast);
    settle_budget(&call);
    return API_DONE;
}

void api_error_reply(struct api_response *resp, int status, const char *code, const char *message) {
    struct api_call call = {.resp = resp};
    memset(resp, 0, sizeof *resp);
    resp->route = UNMATCHED;
    api_error_set(&call.err, status, code, NULL, "%s", message);
    reply_error(&call);
}

// A body follows the head: a Content-Length other than 0, or a Transfer-Encoding.
static bool announces_body(const struct api_request *req) {
    const char *length = api_header(req, "Content-Length");
    return api_header(req, "Transfer-Encoding") || (length && strcmp(length, "0") != 0);
}

bool api_answer_head(struct api_ctx *ctx, const struct api_request *req,
                     struct api_response *resp) {
    struct api_call call = {.ctx = ctx, .req = req, .resp = resp, .oip = is_oip_path(req->path)};
    memset(resp, 0, sizeof *resp);
    if (is_method(req, "OPTIONS")) { // needs no key: never reads a body for a client without one
        if (!announces_body(req))
            return false; // api_handle answers it; answered now, the connection would close
        if (options(&call) != API_OK)
            reply_error(&call);
        return true;
    }
    const struct route *r = find_route(&call);
    resp->route = r ? r->pattern : UNMATCHED;
    call.query_decl = r ? r->query : NULL;
    if (r && (!(r->flags & ROUTE_AUTH) || authorize(&call) == 0) && check_query(&call) == 0) {
        memset(resp, 0, sizeof *resp);
        return false;
    }
    if (!r)
        no_route(&call);
    reply_error(&call);
    return true;
}

// ---- context ----

struct api_ctx *api_ctx_create(struct nd_engine *engine, const struct api_config *config) {
    struct api_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return NULL;
    ctx->engine = engine;
    ctx->config = *config;
    if (!ctx->config.max_reply_bytes) {
        int64_t per = config->max_elements > 0 ? config->max_elements : 0;
        ctx->config.max_reply_bytes = (size_t)per * API_REPLY_BYTES_PER_ELEMENT + ((size_t)1 << 20);
    }
    if (config->api_key && config->api_key[0] && !(ctx->api_key = strdup(config->api_key))) {
        free(ctx);
        return NULL;
    }
    atomic_init(&ctx->ready, false);
    for (int i = 0; i < NROUTES; i++)
        ctx->metrics[ctx->nmetrics++].route = routes[i].pattern;
    ctx->metrics[ctx->nmetrics++].route = UNMATCHED;
    return ctx;
}

void api_ctx_free(struct api_ctx *ctx) {
    if (!ctx)
        return;
    free(ctx->api_key);
    free(ctx);
}

void api_set_ready(struct api_ctx *ctx, bool ready) {
    atomic_store(&ctx->ready, ready);
}
