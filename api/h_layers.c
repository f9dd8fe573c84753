// h_layers.c - the layer resource: list, create, replace, inspect, delete, initialize.
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "api/tensor_io.h"

int api_layer_from_path(struct api_call *call, struct nd_layer **out) {
    struct nd_registry *reg = nd_engine_registry(call->ctx->engine);
    // On an event loop only what this replica holds: loading from a shared store is I/O, for a
    // worker (which also answers 404 for a name no store has).
    if (call->inline_only)
        return nd_registry_get_local(reg, call->param[0], out, NULL) == ND_STATUS_OK ? 0
                                                                                     : API_DEFER;
    struct nd_error ce;
    nd_error_clear(&ce);
    if (nd_registry_get(reg, call->param[0], out, &ce) != ND_STATUS_OK)
        return api_core_error(call, &ce, "");
    return API_OK;
}

// min_version from the body (an integer, or the query's text merged into it) or the query: 0
// when absent.
static int read_min_version(struct api_call *call, uint64_t *want) {
    const json_t *v = call->body ? json_object_get(call->body, "min_version") : NULL;
    const char *text = v ? json_string_value(v) : api_query(call->req, "min_version");
    int64_t n = 0;
    *want = 0;
    if (v && !text && api_as_int(v, "min_version", &n, &call->err) != 0)
        return API_FAIL;
    if (text) {
        char *end;
        n = text[0] >= '0' && text[0] <= '9' ? (int64_t)strtoll(text, &end, 10) : -1;
        if (n < 0 || *end || strlen(text) > 19)
            return api_fail(&call->err, API_E_INVALID_VALUE, "min_version",
                            "min_version must be a version (an integer >= 1)");
    }
    if ((v || text) && n < 1)
        return api_fail(&call->err, API_E_INVALID_VALUE, "min_version",
                        "min_version must be >= 1, got %lld", (long long)n);
    *want = (uint64_t)n;
    return API_OK;
}

int api_layer_at_least(struct api_call *call, struct nd_layer **layer) {
    uint64_t want;
    if (read_min_version(call, &want) != 0)
        return API_FAIL;
    if (want == 0 || nd_layer_version(*layer) >= want)
        return API_OK;
    if (call->inline_only)
        return API_DEFER; // loading is I/O
    // Another replica acknowledged it, so a shared store holds it: drop this copy and load that.
    nd_registry_evict(nd_engine_registry(call->ctx->engine), call->param[0], want);
    nd_layer_unref(*layer);
    *layer = NULL;
    if (api_layer_from_path(call, layer) != 0)
        return API_FAIL;
    uint64_t have = nd_layer_version(*layer);
    if (have >= want)
        return API_OK;
    api_reply_header(call, "Retry-After", "1");
    return api_fail(&call->err, API_E_UNAVAILABLE, "min_version",
                    "layer %s is at version %llu, not yet %llu", call->param[0],
                    (unsigned long long)have, (unsigned long long)want);
}

static int reply_info(struct api_call *call, int status, struct nd_layer *layer) {
    struct jw w;
    jw_init(&w);
    api_reply_etag(call, api_write_layer_info(&w, layer)); // one snapshot: body and ETag agree
    return api_reply_json(call, status, &w);
}

// ---- list ----

int api_h_layers_list(struct api_call *call) {
    struct nd_layer **list;
    int64_t n;
    struct nd_error ce;
    nd_error_clear(&ce);
    if (nd_registry_list(nd_engine_registry(call->ctx->engine), &list, &n, &ce) != ND_STATUS_OK)
        return api_core_error(call, &ce, "");
    struct jw w;
    jw_init(&w);
    jw_obj_begin(&w);
    jw_key(&w, "layers");
    jw_arr_begin(&w);
    for (int64_t i = 0; i < n; i++) {
        struct nd_layer_info info;
        nd_layer_info(list[i], &info);
        jw_obj_begin(&w);
        jw_key(&w, "name");
        jw_string(&w, nd_layer_name(list[i]));
        jw_key(&w, "type");
        jw_string(&w, nd_layer_type_name(info.spec.type));
        jw_key(&w, "initialized");
        jw_bool(&w, info.initialized);
        jw_key(&w, "version");
        jw_uint(&w, info.version);
        jw_obj_end(&w);
        nd_layer_unref(list[i]);
    }
    nd_free(list);
    jw_arr_end(&w);
    jw_obj_end(&w);
    return api_reply_json(call, 200, &w);
}

// ---- create and replace ----

static int define(struct api_call *call, const char *path_name, enum nd_define_mode mode) {
    if (call->binary)
        return api_fail(&call->err, API_E_UNSUPPORTED_MEDIA_TYPE, "Content-Type",
                        "a layer definition is JSON");
    uint64_t version;
    if (api_parse_body(call, false) != 0 || api_if_match(call, &version) != 0)
        return API_FAIL;
    struct api_definition d;
    struct api_tensor_limits limits = api_limits(call);
    if (api_parse_definition(call->body, path_name, &limits, &call->fast, &d, &call->err) != 0) {
        api_definition_release(&d);
        return API_FAIL;
    }
    struct nd_error ce;
    nd_error_clear(&ce);
    struct nd_layer *layer = NULL;
    bool created = false;
    enum nd_status st =
        nd_registry_define(nd_engine_registry(call->ctx->engine), d.name, &d.def, mode, version,
                           nd_engine_next_seed(call->ctx->engine), &created, &layer, &ce);
    api_definition_release(&d);
    if (st == ND_STATUS_PRECONDITION_FAILED)
        snprintf(ce.field, sizeof ce.field, "If-Match");
    if (st != ND_STATUS_OK)
        return api_core_error(call, &ce, "");
    if (created)
        api_reply_header(call, "Location", "/v1/layers/%s", nd_layer_name(layer));
    int rc = reply_info(call, created ? 201 : 200, layer);
    nd_layer_unref(layer);
    return rc;
}

int api_h_layers_create(struct api_call *call) {
    return define(call, NULL, ND_DEFINE_CREATE);
}

int api_h_layer_put(struct api_call *call) {
    return define(call, call->param[0], ND_DEFINE_CREATE_OR_REPLACE);
}

// ---- inspect and delete ----

int api_h_layer_get(struct api_call *call) {
    struct nd_layer *layer = NULL;
    int rc = api_layer_from_path(call, &layer);
    if (rc == 0)
        rc = api_layer_at_least(call, &layer);
    if (rc == 0)
        rc = reply_info(call, 200, layer);
    nd_layer_unref(layer);
    return rc;
}

int api_h_layer_delete(struct api_call *call) {
    uint64_t version;
    if (api_if_match(call, &version) != 0)
        return API_FAIL;
    struct nd_error ce;
    nd_error_clear(&ce);
    if (nd_registry_delete_if(nd_engine_registry(call->ctx->engine), call->param[0], version,
                              &ce) != ND_STATUS_OK)
        return api_core_error(call, &ce, "");
    call->resp->status = 204;
    return API_OK;
}

// ---- initialize ----

static int parse_initialize(struct api_call *call, struct nd_initialize_args *args) {
    static const char *const keys[] = {"input", "seed", "reinitialize", NULL};
    const json_t *b = call->body, *v;
    memset(args, 0, sizeof *args);
    if (api_check_keys(b, keys, "", &call->err) != 0 ||
        api_get_bool(b, "reinitialize", "reinitialize", &args->reinitialize, &call->err) != 0)
        return API_FAIL;
    if ((v = json_object_get(b, "input")) && !json_is_null(v)) {
        if (api_parse_shape(v, "input", call->ctx->config.max_elements, &args->input, &call->err) !=
            0)
            return API_FAIL;
        args->has_input = true;
    }
    if ((v = json_object_get(b, "seed")) && !json_is_null(v)) {
        int64_t seed;
        if (api_as_int(v, "seed", &seed, &call->err) != 0)
            return API_FAIL;
        if (seed < 0)
            return api_fail(&call->err, API_E_INVALID_VALUE, "seed", "seed must be >= 0");
        args->has_seed = true;
        args->seed = (uint64_t)seed;
    }
    return API_OK;
}

int api_h_initialize(struct api_call *call) {
    struct nd_initialize_args args;
    if (call->binary)
        return api_fail(&call->err, API_E_UNSUPPORTED_MEDIA_TYPE, "Content-Type",
                        "initialize takes JSON");
    if (api_parse_body(call, true) != 0 || parse_initialize(call, &args) != 0)
        return API_FAIL;
    struct nd_error ce;
    nd_error_clear(&ce);
    struct nd_registry *reg = nd_engine_registry(call->ctx->engine);
    if (nd_registry_initialize(reg, call->param[0], &args, NULL, &ce) != ND_STATUS_OK)
        return api_core_error(call, &ce, "");
    return api_h_layer_get(call); // the initialized layer's information
}
