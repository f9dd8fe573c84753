// h_forward.c - POST /v1/layers/{name}/forward: one tensor (a batch or one example), a ragged
// list of examples, or a binary body.
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "api/tensor_io.h"

struct forward_req {
    bool train_mode;
    int batch_hint; // -1 from the rank, 0 one example, 1 a batch
    bool has_format;
    enum api_tensor_form format;
};

int api_parse_mode(struct api_call *call, const char *text, bool *train) {
    static const struct api_enum_name modes[] = {{"inference", 0, false},
                                                 {"train", 1, false},
                                                 {"test", 0, true},
                                                 {"training", 1, true},
                                                 {NULL, 0, false}};
    int v;
    if (api_parse_enum(text, "mode", modes, API_ENUM_NOCASE, &v, &call->err) != API_OK)
        return API_FAIL;
    *train = v == 1;
    return API_OK;
}

// mode, batch and output_format from the JSON body (which holds the query's too, see
// api_parse_body) or, for a binary body, the query. A binary reply has no output_format: asked
// for one, it is refused rather than ignored.
static int parse_forward_options(struct api_call *call, struct forward_req *fr) {
    const char *mode = NULL, *format = NULL;
    bool batch = false, has_batch = false;
    memset(fr, 0, sizeof *fr);
    fr->batch_hint = -1;
    if (call->body) {
        has_batch = json_object_get(call->body, "batch") != NULL;
        if (api_get_string(call->body, "mode", "mode", &mode, &call->err) ||
            api_get_string(call->body, "output_format", "output_format", &format, &call->err) ||
            api_get_bool(call->body, "batch", "batch", &batch, &call->err))
            return API_FAIL;
    } else {
        mode = api_query(call->req, "mode");
        if (api_query_bool(call, "batch", &has_batch, &batch) != 0)
            return API_FAIL;
        if (api_query(call->req, "output_format"))
            return api_fail(&call->err, API_E_INVALID_VALUE, "output_format",
                            "output_format applies to JSON replies; a binary body's reply "
                            "is binary");
    }
    if (mode && api_parse_mode(call, mode, &fr->train_mode) != 0)
        return API_FAIL;
    if (has_batch)
        fr->batch_hint = batch ? 1 : 0;
    if (format && api_form_parse(format, &fr->format, "output_format", &call->err) != 0)
        return API_FAIL;
    fr->has_format = format != NULL;
    return API_OK;
}

int api_forward_one(struct api_call *call, struct nd_layer *layer, struct nd_tensor *x,
                    int batch_hint, bool train, struct nd_tensor *out, uint64_t *version) {
    struct nd_error ce;
    nd_error_clear(&ce);
    if (nd_tensor_init_uninit(out, &x->shape, &ce) != ND_STATUS_OK) // the forward fills it
        return api_core_error(call, &ce, "");
    struct nd_pool *pool = nd_engine_pool(call->ctx->engine);
    bool is_batch;
    enum nd_status st = call->inline_only
                            ? nd_layer_try_forward_any(layer, pool, x, batch_hint, train, out->data,
                                                       &is_batch, version, &ce)
                            : nd_layer_forward_any(layer, pool, x, batch_hint, train, out->data,
                                                   &is_batch, version, &ce);
    if (st == ND_STATUS_BUSY) // an event loop never waits: a worker will
        return API_DEFER;
    if (st != ND_STATUS_OK)
        return api_core_error(call, &ce, "");
    return API_OK;
}

// Example i of the list: its own tensor, or a slice of the list read as one tensor (equal
// shapes, json_fast.h). *owned tells whether *x must be released.
static int list_item(struct api_call *call, const json_t *inputs, struct nd_tensor *all, size_t i,
                     struct nd_tensor *x, enum api_tensor_form *form) {
    if (all->data || all->numel) {
        struct nd_shape ex = nd_shape_make(all->shape.ndim - 1, all->shape.dim + 1);
        *x = nd_tensor_view(all->data, &ex);
        x->data += (size_t)i * (size_t)x->numel;
        *form = API_FORM_NESTED;
        return API_OK;
    }
    char field[32];
    snprintf(field, sizeof field, "inputs[%zu]", i);
    struct api_tensor_limits limits = api_limits(call);
    return api_tensor_value(&call->fast, json_array_get(inputs, i), &limits, field, x, form,
                            &call->err);
}

static int forward_list(struct api_call *call, struct nd_layer *layer, const json_t *inputs,
                        const struct forward_req *fr) {
    struct nd_tensor all = {0};
    int taken = api_fast_take(&call->fast, inputs, &all);
    if (taken < 0 || (taken == 0 && !json_is_array(inputs)))
        return api_fail(&call->err, API_E_INVALID_TYPE, "inputs",
                        "inputs must be a list of examples");
    size_t count = taken ? (size_t)all.shape.dim[0] : json_array_size(inputs);
    struct nd_layer_info info;
    nd_layer_info(layer, &info);
    int rc = API_OK;
    if (fr->train_mode && nd_layer_type_is_batch(info.spec.type))
        rc = api_fail(&call->err, API_E_INVALID_VALUE, "inputs",
                      "mode train needs one batch (\"input\"), so the statistics are "
                      "the batch's");
    struct jw w;
    api_writer_init(call, &w);
    jw_obj_begin(&w);
    jw_key(&w, "outputs");
    jw_arr_begin(&w);
    uint64_t version = info.version; // an empty list still answers the layer's version
    for (size_t i = 0; rc == 0 && i < count; i++) {
        struct nd_tensor x = {0}, y = {0};
        enum api_tensor_form form;
        rc = list_item(call, inputs, &all, i, &x, &form);
        if (rc == 0) // its output, and its text in the reply
            rc = api_reserve(
                call,
                x.numel * (int64_t)sizeof(float) +
                    (int64_t)api_tensor_text_bound(&x.shape, fr->has_format ? fr->format : form),
                "this list's outputs");
        if (rc == 0)
            rc = api_forward_one(call, layer, &x, 0, fr->train_mode, &y, &version);
        if (rc == 0)
            api_tensor_write(&w, &y, fr->has_format ? fr->format : form);
        nd_tensor_deinit(&x); // a slice is a view: only reset
        nd_tensor_deinit(&y);
    }
    nd_tensor_deinit(&all);
    jw_arr_end(&w);
    jw_key(&w, "version");
    jw_uint(&w, version);
    jw_obj_end(&w);
    if (rc != 0) {
        jw_free(&w);
        return API_FAIL;
    }
    api_reply_etag(call, version);
    return api_reply_json(call, 200, &w);
}

static int forward_tensor(struct api_call *call, struct nd_layer *layer, struct nd_tensor *x,
                          enum api_tensor_form form, const struct forward_req *fr) {
    struct nd_tensor y = {0};
    uint64_t version = 0;
    enum api_tensor_form out_form = fr->has_format ? fr->format : form;
    size_t text = call->binary ? 0 : api_tensor_text_bound(&x->shape, out_form);
    if (call->inline_only && text > API_INLINE_REPLY_MAX)
        return API_DEFER; // a large reply is never written on an event loop
    if (api_reserve(call, x->numel * (int64_t)sizeof(float) * 2 + (int64_t)text,
                    "this forward's output") != 0)
        return API_FAIL;
    int rc = api_forward_one(call, layer, x, fr->batch_hint, fr->train_mode, &y, &version);
    if (rc == 0) {
        api_reply_etag(call, version);
        if (call->binary) {
            rc = api_reply_binary_take(call, &y);
        } else {
            struct jw w;
            api_writer_init(call, &w);
            jw_obj_begin(&w);
            jw_key(&w, "output");
            api_tensor_write(&w, &y, out_form);
            jw_key(&w, "version");
            jw_uint(&w, version);
            jw_obj_end(&w);
            rc = api_reply_json(call, 200, &w);
        }
    }
    nd_tensor_deinit(&y);
    return rc;
}

static int forward_body(struct api_call *call, struct nd_layer **at) {
    static const char *const keys[] = {"input", "inputs",      "mode", "output_format",
                                       "batch", "min_version", NULL};
    struct forward_req fr;
    if (!call->binary &&
        (api_parse_body(call, false) != 0 || api_check_keys(call->body, keys, "", &call->err)))
        return API_FAIL;
    int rc = api_layer_at_least(call, at);
    if (rc != 0)
        return rc;
    struct nd_layer *layer = *at;
    if (parse_forward_options(call, &fr) != 0)
        return API_FAIL;
    if (!call->binary && json_object_get(call->body, "inputs")) {
        if (call->inline_only) // a list reads the layer's information, which may wait
            return API_DEFER;
        if (json_object_get(call->body, "input"))
            return api_fail(&call->err, API_E_INVALID_VALUE, "inputs",
                            "give input or inputs, not both");
        return forward_list(call, layer, json_object_get(call->body, "inputs"), &fr);
    }
    struct nd_tensor x = {0};
    enum api_tensor_form form = API_FORM_NESTED;
    rc = api_read_input(call, "input", &x, &form);
    if (rc == 0)
        rc = forward_tensor(call, layer, &x, form, &fr);
    nd_tensor_deinit(&x);
    return rc;
}

int api_h_forward(struct api_call *call) {
    struct nd_layer *layer = NULL;
    int rc = api_layer_from_path(call, &layer);
    if (rc == 0)
        rc = forward_body(call, &layer);
    nd_layer_unref(layer);
    return rc;
}
