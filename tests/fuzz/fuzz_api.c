// fuzz_api.c - api_handle as a whole: routing, authorization, body parsing, every handler.
//
// Input: up to MAX_REQUESTS requests separated by a line "%%" ("\n%%\n"). Each request:
//   [!]METHOD PATH[?k=v&k=v]\n      '!' asks api_handle with inline_only first
//   Header-Name: value\n            up to MAX_HEADERS lines, until an empty line
//   \n
//   body bytes (the rest; no blank line: no body)
// Every input starts from a fresh engine and api ctx holding the same layers (one of each kind
// and convention, one with a shared array, one with an Automatic dim), so a finding reproduces
// from its file alone and leak detection sees everything freed.
//
// Oracles: the status is in 100..599 and never 500 (no store hooks: nothing may be internal);
// a JSON reply is valid UTF-8 and parses with jansson; the reply is at most REPLY_MAX bytes.
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "core/engine.h"
#include "tests/fuzz/fuzz_util.h"

#define MAX_ELEMENTS   4096
#define MAX_BODY_BYTES (1u << 20)
#define MAX_LAYERS     64
#define MAX_REQUESTS   8
#define MAX_HEADERS    8
#define MAX_QUERY      8
// The largest reply: a train-step returns at most about a dozen tensors (output, input
// gradient, each array's gradient, batch statistics), each at most MAX_ELEMENTS floats of at
// most 17 characters plus a separator and brackets (< 20 bytes each), and a few KiB of keys;
// 64 tensors' worth plus 64 KiB leaves room for a layer list of MAX_LAYERS infos too.
#define REPLY_MAX ((size_t)64 * MAX_ELEMENTS * 20 + 64 * 1024)

static const struct {
    const char *name, *body;
} layer_defs[] = {
    {"bn", "{\"type\":\"BatchNormalization\",\"input\":[3],"
           "\"arrays\":{\"Scaling\":[1,2,3],\"MovingVariance\":[1,4,9]}}"},
    {"bnk", "{\"type\":\"BatchNormalization\",\"convention\":\"keras\",\"input\":[2,3]}"},
    {"bnt", "{\"type\":\"BatchNormalization\",\"convention\":\"pytorch\",\"input\":[3,2]}"},
    {"bno", "{\"type\":\"BatchNormalization\",\"convention\":\"onnx\",\"input\":[3]}"},
    {"bnp", "{\"type\":\"BatchNormalization\",\"convention\":\"puzzlelib\",\"input\":[3],"
            "\"options\":{\"inplace\":true}}"},
    {"norm", "{\"type\":\"Normalization\",\"input\":[2,3],"
             "\"options\":{\"aggregation_levels\":\"All\",\"epsilon\":0.01}}"},
    {"ln", "{\"type\":\"LayerNormalization\",\"convention\":\"keras\",\"input\":[2,3]}"},
    {"inorm", "{\"type\":\"InstanceNormalization\",\"input\":[2,3]}"},
    {"gn", "{\"type\":\"GroupNormalization\",\"input\":[4,2],\"options\":{\"groups\":2}}"},
    {"rms", "{\"type\":\"RMSNormalization\",\"input\":[3],\"arrays\":{\"Scaling\":[1,2,3]}}"},
    {"sa", "{\"type\":\"BatchNormalization\",\"input\":[2],"
           "\"arrays\":{\"Scaling\":{\"shared\":\"g1\"}}}"},
    {"sb", "{\"type\":\"LayerNormalization\",\"input\":[2],"
           "\"arrays\":{\"Scaling\":{\"shared\":\"g1\"}}}"},
    {"auto", "{\"type\":\"BatchNormalization\",\"input\":[3,null]}"},
    {"lnw", "{\"type\":\"LayerNormalization\",\"convention\":\"wolfram\",\"input\":[null,3]}"},
};

static struct nd_engine *engine;
static struct api_ctx *ctx;

static void check_reply(const struct api_response *resp) {
    if (resp->status < 100 || resp->status > 599)
        FUZZ_FAIL("status %d out of 100..599", resp->status);
    if (resp->status == 500)
        FUZZ_FAIL("status 500: %.*s", (int)(resp->body_len < 4096 ? resp->body_len : 4096),
                  resp->body ? resp->body : "");
    if (resp->body_len > REPLY_MAX)
        FUZZ_FAIL("reply of %zu bytes > bound %zu (route %s)", resp->body_len, (size_t)REPLY_MAX,
                  resp->route ? resp->route : "?");
    if (resp->body_len > 0 && !resp->body)
        FUZZ_FAIL("body_len %zu with a NULL body", resp->body_len);
    if (!resp->content_type || strcmp(resp->content_type, "application/json") != 0)
        return;
    if (!fuzz_utf8_valid((const unsigned char *)resp->body, resp->body_len))
        FUZZ_FAIL("JSON reply is not UTF-8: %.*s", (int)resp->body_len, resp->body);
    json_error_t jerr;
    json_t *v = json_loadb(resp->body, resp->body_len, 0, &jerr);
    if (!v)
        FUZZ_FAIL("JSON reply does not parse (%s at %d:%d): %.*s", jerr.text, jerr.line,
                  jerr.column, (int)(resp->body_len < 4096 ? resp->body_len : 4096), resp->body);
    json_decref(v);
}

// Runs one request to completion (a second call, not inline, when the first deferred).
static void handle(const struct api_request *req, bool inline_only) {
    struct api_response resp;
    memset(&resp, 0, sizeof resp);
    if (api_handle(ctx, req, &resp, inline_only) == API_DEFERRED) {
        api_response_free(&resp); // untouched by contract, so this must be harmless
        memset(&resp, 0, sizeof resp);
        if (api_handle(ctx, req, &resp, false) != API_DONE)
            FUZZ_FAIL("api_handle deferred with inline_only false");
    }
    if (getenv("FUZZ_TRACE")) // FUZZ_TRACE=1 ./fuzz_api FILE: what each request answered
        fprintf(stderr, "%s %s -> %d %.*s\n", req->method, req->path, resp.status,
                (int)(resp.body_len < 300 ? resp.body_len : 300), resp.body ? resp.body : "");
    check_reply(&resp);
    api_response_free(&resp);
}

static int put_layer(const char *name, const char *body) {
    char path[64];
    snprintf(path, sizeof path, "/v1/layers/%s", name);
    struct api_kv ct = {"Content-Type", "application/json"};
    struct api_request req = {.method = "PUT",
                              .path = path,
                              .headers = &ct,
                              .nheaders = 1,
                              .body = body,
                              .body_len = strlen(body)};
    struct api_response resp;
    memset(&resp, 0, sizeof resp);
    api_handle(ctx, &req, &resp, false);
    int status = resp.status;
    if (status != 200 && status != 201)
        fprintf(stderr, "PUT %s: %d %.*s\n", name, status, (int)resp.body_len, resp.body);
    api_response_free(&resp);
    return status;
}

static void setup(void) {
    struct nd_engine_config ec = nd_engine_config_default();
    ec.threads = 1;
    ec.max_layers = MAX_LAYERS;
    ec.seed = 42; // a constant: reproducible initializations
    struct api_config ac = {.version = "fuzz",
                            .max_body_bytes = MAX_BODY_BYTES,
                            .max_elements = MAX_ELEMENTS,
                            .max_layers = MAX_LAYERS};
    if (nd_engine_create(&ec, &engine, NULL) != ND_STATUS_OK ||
        !(ctx = api_ctx_create(engine, &ac)))
        FUZZ_FAIL("cannot create the engine or the api ctx");
    api_set_ready(ctx, true);
    for (size_t i = 0; i < sizeof layer_defs / sizeof layer_defs[0]; i++)
        if (put_layer(layer_defs[i].name, layer_defs[i].body) >= 300)
            FUZZ_FAIL("harness layer %s does not define", layer_defs[i].name);
}

static void teardown(void) {
    api_ctx_free(ctx);
    nd_engine_free(engine);
    ctx = NULL;
    engine = NULL;
}

// Splits "k=v&k2=v2" in place into q (no percent-decoding: server/ decodes before api/).
static size_t split_query(char *s, struct api_kv *q) {
    size_t n = 0;
    for (char *p = s; p && *p && n < MAX_QUERY;) {
        char *amp = strchr(p, '&');
        if (amp)
            *amp++ = '\0';
        char *eq = strchr(p, '=');
        if (eq)
            *eq++ = '\0';
        q[n++] = (struct api_kv){p, eq ? eq : ""};
        p = amp;
    }
    return n;
}

// Parses and runs one request of the input (text is a NUL-terminated copy we may cut up; len
// keeps the body's bytes, NULs included).
static void run_request(char *text, size_t len) {
    char *end = text + len, *line = text, *nl = memchr(text, '\n', len);
    char *next = nl ? nl + 1 : end;
    if (nl)
        *nl = '\0';
    bool inline_only = line[0] == '!';
    line += inline_only;
    char *sp = strchr(line, ' ');
    if (!sp)
        return;
    *sp = '\0';
    char *path = sp + 1, *qm = strchr(path, '?');
    struct api_kv query[MAX_QUERY], headers[MAX_HEADERS];
    size_t nquery = 0, nheaders = 0;
    if (qm) {
        *qm = '\0';
        nquery = split_query(qm + 1, query);
    }
    const char *body = NULL;
    size_t body_len = 0;
    while (next < end) { // header lines until an empty one; the body follows it
        char *hl = next, *hnl = memchr(hl, '\n', (size_t)(end - hl));
        next = hnl ? hnl + 1 : end;
        if (hnl)
            *hnl = '\0';
        if (hl[0] == '\0') {
            body = next;
            body_len = (size_t)(end - next);
            break;
        }
        char *colon = strchr(hl, ':');
        if (colon && nheaders < MAX_HEADERS) {
            *colon = '\0';
            headers[nheaders++] = (struct api_kv){hl, colon[1] == ' ' ? colon + 2 : colon + 1};
        }
    }
    struct api_request req = {.method = line,
                              .path = path,
                              .query = query,
                              .nquery = nquery,
                              .headers = headers,
                              .nheaders = nheaders,
                              .body = body_len ? body : NULL,
                              .body_len = body_len};
    handle(&req, inline_only);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    setup(); // checks once that every harness layer defines
    teardown();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > MAX_BODY_BYTES)
        return 0;
    setup();
    const char *p = (const char *)data, *end = p + size;
    for (int k = 0; k < MAX_REQUESTS && p < end; k++) {
        const char *sep = fuzz_memmem(p, (size_t)(end - p), "\n%%\n", 4);
        size_t n = sep ? (size_t)(sep - p) : (size_t)(end - p);
        char *copy = fuzz_strndup(p, n);
        run_request(copy, n);
        free(copy);
        p = sep ? sep + 4 : end;
    }
    teardown();
    return 0;
}
