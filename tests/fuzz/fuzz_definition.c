// fuzz_definition.c - layer definitions: api_parse_definition (api/internal.h) on a fuzzed
// body, nd_registry_define when it parses, then the layer's information through GET
// /v1/layers/NAME and a small initialize, as api_handle serves them.
//
// Input: the first byte's low bit picks the name's source (set: PUT's path name "fz"; clear:
// POST, the body's "name"); the rest is the body, read as api_parse_body does (the fast array
// reader, then jansson with the same flags).
// Oracles: refusals are 4xx (never internal, never invalid_argument: those are bugs); a
// defined layer's information is a 200 with JSON that parses; everything is freed (leaks are
// reported by ASan at exit and by libFuzzer per input).
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "api/internal.h"
#include "core/engine.h"
#include "core/registry.h"
#include "tests/fuzz/fuzz_util.h"

#define MAX_ELEMENTS 4096
#define JSON_FLAGS   (JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL)

static struct nd_engine *engine;
static struct api_ctx *ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    struct nd_engine_config ec = nd_engine_config_default();
    ec.threads = 1;
    ec.max_layers = 64;
    struct api_config ac = {.version = "fuzz",
                            .max_body_bytes = 1u << 20,
                            .max_elements = MAX_ELEMENTS,
                            .max_layers = 64};
    if (nd_engine_create(&ec, &engine, NULL) != ND_STATUS_OK ||
        !(ctx = api_ctx_create(engine, &ac)))
        FUZZ_FAIL("cannot create the engine or the api ctx");
    return 0;
}

static void check_api_error(const struct api_error *err) {
    if (err->status < 400 || err->status > 499 || !err->code)
        FUZZ_FAIL("definition refused with %d %s: %s", err->status,
                  err->code ? err->code : "(null)", err->message);
}

// GET path (or POST with body) through api_handle: a 2xx with JSON that parses.
static void request(const char *method, const char *path, const char *body) {
    struct api_kv ct = {"Content-Type", "application/json"};
    struct api_request req = {.method = method,
                              .path = path,
                              .headers = &ct,
                              .nheaders = 1,
                              .body = body,
                              .body_len = body ? strlen(body) : 0};
    struct api_response resp;
    memset(&resp, 0, sizeof resp);
    api_handle(ctx, &req, &resp, false);
    // initialize may be refused (409 for an inplace layer, 422 for a shape) but never 5xx
    if (resp.status >= 500 || (strcmp(method, "GET") == 0 && resp.status != 200))
        FUZZ_FAIL("%s %s: %d %.*s", method, path, resp.status, (int)resp.body_len, resp.body);
    json_error_t jerr;
    json_t *v = json_loadb(resp.body, resp.body_len, 0, &jerr);
    if (!v || !fuzz_utf8_valid((const unsigned char *)resp.body, resp.body_len))
        FUZZ_FAIL("%s %s: reply is not JSON (%s): %.*s", method, path, jerr.text,
                  (int)resp.body_len, resp.body);
    json_decref(v);
    api_response_free(&resp);
}

// The defined layer: shown, initialized with a seed, shown again, deleted.
static void exercise(const char *name) {
    char path[ND_NAME_MAX + 64];
    snprintf(path, sizeof path, "/v1/layers/%s", name);
    request("GET", path, NULL);
    snprintf(path, sizeof path, "/v1/layers/%s/initialize", name);
    request("POST", path, "{\"seed\": 3}");
    snprintf(path, sizeof path, "/v1/layers/%s", name);
    request("GET", path, NULL);
    request("GET", "/v1/shared-arrays", NULL);
    struct nd_error ce;
    nd_error_clear(&ce);
    if (nd_registry_delete(nd_engine_registry(engine), name, &ce) != ND_STATUS_OK)
        FUZZ_FAIL("cannot delete the layer %s just defined: %s", name, ce.msg);
}

static void define(const json_t *body, const char *path_name, struct api_fast_tensors *fast) {
    struct api_definition d;
    struct api_error err;
    api_error_clear(&err);
    struct api_tensor_limits limits = {.max_elements = MAX_ELEMENTS};
    if (api_parse_definition(body, path_name, &limits, fast, &d, &err) != 0) {
        check_api_error(&err);
        api_definition_release(&d);
        return;
    }
    struct nd_error ce;
    nd_error_clear(&ce);
    struct nd_layer *layer = NULL;
    enum nd_status st = nd_registry_define(nd_engine_registry(engine), d.name, &d.def,
                                           ND_DEFINE_CREATE_OR_REPLACE, 0, 1, NULL, &layer, &ce);
    api_definition_release(&d);
    if (st == ND_STATUS_INVALID_ARGUMENT || st == ND_STATUS_INTERNAL)
        FUZZ_FAIL("nd_registry_define: status %d (%s): %s", (int)st, ce.field, ce.msg);
    if (st != ND_STATUS_OK)
        return;
    char name[ND_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s", nd_layer_name(layer));
    nd_layer_unref(layer);
    exercise(name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0)
        return 0;
    const char *path_name = data[0] & 1 ? "fz" : NULL;
    char *text = fuzz_strndup(data + 1, size - 1);
    struct api_fast_tensors fast;
    size_t len = api_fast_extract(text, size - 1, MAX_ELEMENTS, &fast);
    json_error_t jerr;
    json_t *body = json_loadb(text, len, JSON_FLAGS, &jerr);
    if (body && json_is_object(body))
        define(body, path_name, &fast);
    json_decref(body);
    api_fast_release(&fast);
    free(text);
    return 0;
}
