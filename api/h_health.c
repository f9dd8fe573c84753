// h_health.c - liveness, readiness, server information and the type catalogue.
#include <string.h>

#include "api/internal.h"

int api_h_healthz(struct api_call *call) {
    struct jw w;
    jw_init(&w);
    jw_obj_begin(&w);
    jw_key(&w, "status");
    jw_string(&w, "ok");
    jw_obj_end(&w);
    return api_reply_json(call, 200, &w);
}

int api_h_readyz(struct api_call *call) {
    if (!atomic_load(&call->ctx->ready))
        return api_fail(&call->err, API_E_UNAVAILABLE, NULL, "not ready: starting or draining");
    if (atomic_load(&call->ctx->store_down))
        return api_fail(&call->err, API_E_UNAVAILABLE, NULL,
                        "not ready: the store %.200s cannot be reached",
                        call->ctx->config.store ? call->ctx->config.store : "");
    struct jw w;
    jw_init(&w);
    jw_obj_begin(&w);
    jw_key(&w, "status");
    jw_string(&w, "ready");
    jw_obj_end(&w);
    return api_reply_json(call, 200, &w);
}

bool api_is_ready(const struct api_ctx *ctx) {
    return atomic_load(&ctx->ready) && !atomic_load(&ctx->store_down);
}

void api_set_store_ready(struct api_ctx *ctx, bool ok) {
    atomic_store(&ctx->store_down, !ok);
}

static void write_names(struct jw *w, const char *(*name)(int), int count) {
    jw_arr_begin(w);
    for (int i = 0; i < count; i++)
        jw_string(w, name(i));
    jw_arr_end(w);
}

static const char *type_name(int i) {
    return nd_layer_type_name((enum nd_layer_type)i);
}

static const char *convention_name(int i) {
    return nd_convention_name((enum nd_convention)i);
}

void api_write_server_id(struct jw *w, const struct api_ctx *ctx) {
    jw_key(w, "name");
    jw_string(w, "normd");
    jw_key(w, "version");
    jw_string(w, ctx->config.version ? ctx->config.version : "unknown");
}

int api_h_info(struct api_call *call) {
    const struct api_config *c = &call->ctx->config;
    struct jw w;
    jw_init(&w);
    jw_obj_begin(&w);
    api_write_server_id(&w, call->ctx);
    jw_key(&w, "threads");
    jw_int(&w, nd_engine_threads(call->ctx->engine));
    jw_key(&w, "limits");
    jw_obj_begin(&w);
    jw_key(&w, "max_body_bytes");
    jw_uint(&w, c->max_body_bytes);
    jw_key(&w, "max_elements");
    jw_int(&w, c->max_elements);
    jw_key(&w, "max_layers");
    jw_int(&w, c->max_layers);
    jw_obj_end(&w);
    jw_key(&w, "layers");
    jw_int(&w, nd_registry_count(nd_engine_registry(call->ctx->engine)));
    jw_key(&w, "types");
    write_names(&w, type_name, ND_LAYER_TYPE_COUNT);
    jw_key(&w, "conventions");
    write_names(&w, convention_name, ND_CONVENTION_COUNT);
    jw_key(&w, "tensor_forms");
    jw_arr_begin(&w);
    jw_string(&w, "nested");
    jw_string(&w, "flat");
    jw_string(&w, "b64");
    jw_string(&w, "binary");
    jw_arr_end(&w);
    jw_obj_end(&w);
    return api_reply_json(call, 200, &w);
}

int api_h_types(struct api_call *call) {
    struct jw w;
    jw_init(&w);
    jw_obj_begin(&w);
    jw_key(&w, "types");
    write_names(&w, type_name, ND_LAYER_TYPE_COUNT);
    jw_obj_end(&w);
    return api_reply_json(call, 200, &w);
}

// GET /v1/types/{type}/options: Options[type] with every convention's defaults.
int api_h_type_options(struct api_call *call) {
    enum nd_layer_type type;
    int32_t nd = 0;
    struct nd_error ce;
    nd_error_clear(&ce);
    if (nd_layer_type_parse(call->param[0], &type, &nd, &ce) != ND_STATUS_OK)
        return api_fail(&call->err, API_E_NOT_FOUND, "type", "%s", ce.msg);
    struct jw w;
    jw_init(&w);
    jw_obj_begin(&w);
    jw_key(&w, "type");
    jw_string(&w, nd_layer_type_name(type));
    jw_key(&w, "defaults");
    jw_obj_begin(&w);
    for (int c = 0; c < ND_CONVENTION_COUNT; c++) {
        struct nd_spec spec;
        nd_spec_defaults(&spec, type, nd, (enum nd_convention)c);
        jw_key(&w, nd_convention_name((enum nd_convention)c));
        api_write_options(&w, &spec, NULL);
    }
    jw_obj_end(&w);
    jw_obj_end(&w);
    return api_reply_json(call, 200, &w);
}
