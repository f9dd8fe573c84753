// tensor_io.c - request tensors, batching and binary responses.
#include "api/tensor_io.h"

#include <stdlib.h>
#include <string.h>

// Binary bodies are little-endian float32, which is the machine's own layout here.
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "binary tensors assume little-endian");

struct api_tensor_limits api_limits(const struct api_call *call) {
    return (struct api_tensor_limits){.max_elements = call->ctx->config.max_elements};
}

int api_tensor_value(struct api_fast_tensors *fast, const json_t *v,
                     const struct api_tensor_limits *limits, const char *field,
                     struct nd_tensor *out, enum api_tensor_form *form, struct api_error *err) {
    int taken = api_fast_take(fast, v, out);
    if (taken < 0)
        return api_fail(err, API_E_INVALID_TYPE, field, "%s is not a tensor", field);
    if (taken > 0) {
        *form = API_FORM_NESTED;
        return API_OK;
    }
    return api_tensor_from_json(v, limits, field, out, form, err);
}

int api_read_input(struct api_call *call, const char *key, struct nd_tensor *out,
                   enum api_tensor_form *form) {
    struct api_tensor_limits limits = api_limits(call);
    *form = API_FORM_NESTED;
    if (call->binary && api_reserve(call, (int64_t)call->req->body_len, "the binary tensor") != 0)
        return API_FAIL;
    if (call->binary)
        return api_tensor_from_binary(call->req->body, call->req->body_len,
                                      api_header(call->req, "X-Tensor-Shape"), &limits, out,
                                      &call->err);
    const json_t *v = json_object_get(call->body, key);
    if (!v)
        return api_fail(&call->err, API_E_INVALID_VALUE, key, "%s is required", key);
    return api_tensor_value(&call->fast, v, &limits, key, out, form, &call->err);
}

int api_read_optional(struct api_call *call, const char *key, struct nd_tensor *out) {
    struct api_tensor_limits limits = api_limits(call);
    enum api_tensor_form form;
    memset(out, 0, sizeof *out);
    const json_t *v = call->body ? json_object_get(call->body, key) : NULL;
    if (!v || json_is_null(v))
        return API_OK;
    return api_tensor_value(&call->fast, v, &limits, key, out, &form, &call->err);
}

int api_batch_view(struct api_call *call, struct nd_layer *layer, const struct nd_tensor *x,
                   int batch_hint, struct nd_tensor *view, bool *is_batch) {
    struct nd_shape batched;
    struct nd_error ce;
    nd_error_clear(&ce);
    enum nd_status st =
        call->inline_only
            ? nd_layer_try_batch_shape(layer, &x->shape, batch_hint, &batched, is_batch, &ce)
            : nd_layer_batch_shape(layer, &x->shape, batch_hint, &batched, is_batch, &ce);
    if (st == ND_STATUS_BUSY)
        return API_DEFER;
    if (st != ND_STATUS_OK)
        return api_core_error(call, &ce, "");
    *view = nd_tensor_view(x->data, &batched);
    return API_OK;
}

static int reply_binary(struct api_call *call, const struct nd_tensor *t, char *body) {
    size_t bytes = (size_t)t->numel * sizeof(float);
    char shape[API_HEADER_VALUE_MAX];
    api_reply_header(call, "X-Tensor-Shape", "%s",
                     api_shape_header(&t->shape, shape, sizeof shape));
    call->resp->status = 200;
    call->resp->body = body;
    call->resp->body_len = bytes;
    call->resp->content_type = "application/octet-stream";
    return API_OK;
}

int api_reply_binary(struct api_call *call, const struct nd_tensor *t) {
    size_t bytes = (size_t)t->numel * sizeof(float);
    char *body = malloc(bytes ? bytes : 1);
    if (!body)
        return api_fail(&call->err, API_E_UNAVAILABLE, NULL, NULL);
    if (bytes)
        memcpy(body, t->data, bytes);
    return reply_binary(call, t, body);
}

// nd_alloc_aligned's memory is free()'s (alloc.c), as the response's body must be.
int api_reply_binary_take(struct api_call *call, struct nd_tensor *t) {
    if (!(t->flags & ND_TENSOR_OWNS_DATA) || t->numel == 0)
        return api_reply_binary(call, t);
    t->flags &= ~(uint32_t)ND_TENSOR_OWNS_DATA;
    return reply_binary(call, t, (char *)t->data);
}
