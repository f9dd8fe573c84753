// h_train.c - POST /v1/layers/{name}/train-step (API.md 2.2).
#include <string.h>

#include "api/internal.h"
#include "api/tensor_io.h"

void api_train_req_release(struct api_train_req *t) {
    nd_tensor_deinit(&t->input);
    nd_tensor_deinit(&t->output_grad);
    nd_tensor_deinit(&t->target);
}

// {"type": "sgd" | "adam", ...} with PyTorch's and Keras' parameter names.
int api_parse_optimizer(struct api_call *call, const json_t *v, struct nd_optimizer *opt) {
    static const char *const keys[] = {"type",   "learning_rate", "momentum", "nesterov",
                                       "beta_1", "beta_2",        "epsilon",  NULL};
    const char *type = "sgd";
    if (!json_is_object(v))
        return api_fail(&call->err, API_E_INVALID_TYPE, "optimizer", "optimizer must be an object");
    if (api_check_keys(v, keys, "optimizer", &call->err) != 0 ||
        api_get_string(v, "type", "optimizer.type", &type, &call->err) != 0)
        return API_FAIL;
    enum nd_optimizer_kind kind;
    struct nd_error ce;
    nd_error_clear(&ce);
    if (nd_optimizer_kind_parse(type, &kind, &ce) != ND_STATUS_OK)
        return api_core_error(call, &ce, "optimizer.type");
    *opt = nd_optimizer_default(kind);
    if (api_get_number(v, "learning_rate", "optimizer.learning_rate", &opt->learning_rate,
                       &call->err) ||
        api_get_number(v, "momentum", "optimizer.momentum", &opt->momentum, &call->err) ||
        api_get_bool(v, "nesterov", "optimizer.nesterov", &opt->nesterov, &call->err) ||
        api_get_number(v, "beta_1", "optimizer.beta_1", &opt->beta_1, &call->err) ||
        api_get_number(v, "beta_2", "optimizer.beta_2", &opt->beta_2, &call->err) ||
        api_get_number(v, "epsilon", "optimizer.epsilon", &opt->epsilon, &call->err))
        return API_FAIL;
    return API_OK;
}

// The items "return" names, each with the result it asks the engine for (loss and version are
// always there).
static const struct api_enum_name return_items[] = {
    {"output", ND_TRAIN_WANT_OUTPUT, false},
    {"input_gradient", ND_TRAIN_WANT_INPUT_GRADIENT, false},
    {"array_gradients", ND_TRAIN_WANT_ARRAY_GRADIENTS, false},
    {"arrays", ND_TRAIN_WANT_ARRAYS, false},
    {"batch_statistics", ND_TRAIN_WANT_BATCH_STATISTICS, false},
    {"loss", 0, false},
    {"version", 0, false},
    {NULL, 0, false}};

static int parse_return(struct api_call *call, const json_t *v, uint32_t *want) {
    if (!json_is_array(v))
        return api_fail(&call->err, API_E_INVALID_TYPE, "return",
                        "return must be a list of item names");
    *want = 0;
    for (size_t i = 0; i < json_array_size(v); i++) {
        const char *name;
        if (api_as_string(json_array_get(v, i), "return", &name, &call->err) != 0)
            return API_FAIL;
        int bit;
        if (api_parse_enum(name, "return", return_items, 0, &bit, &call->err) != API_OK)
            return API_FAIL;
        *want |= (uint32_t)bit;
    }
    return API_OK;
}

static int parse_loss(struct api_call *call, bool has_target) {
    const char *loss = NULL;
    if (api_get_string(call->body, "loss", "loss", &loss, &call->err) != 0)
        return API_FAIL;
    static const struct api_enum_name losses[] = {{"mean_squared", 0, false},
                                                  {"mean_squared_error", 0, true},
                                                  {"mse", 0, true},
                                                  {NULL, 0, false}};
    int kind;
    if (loss && api_parse_enum(loss, "loss", losses, 0, &kind, &call->err) != API_OK)
        return API_FAIL;
    if (loss && !has_target)
        return api_fail(&call->err, API_E_INVALID_VALUE, "target", "loss needs a target");
    return API_OK;
}

static int parse_train(struct api_call *call, struct api_train_req *t) {
    static const char *const keys[] = {"input",  "output_gradient", "target", "loss", "optimizer",
                                       "return", "output_format",   "batch",  NULL};
    const json_t *b = call->body, *v;
    enum api_tensor_form form;
    const char *format = NULL;
    bool batch = false;
    t->optimizer = nd_optimizer_default(ND_OPTIMIZER_SGD);
    t->want = ND_TRAIN_WANT_OUTPUT;
    t->batch_hint = json_object_get(b, "batch") ? 0 : -1;
    if (api_check_keys(b, keys, "", &call->err) ||
        api_read_input(call, "input", &t->input, &form) ||
        api_read_optional(call, "output_gradient", &t->output_grad) ||
        api_read_optional(call, "target", &t->target) ||
        parse_loss(call, t->target.shape.ndim > 0 || t->target.numel > 0) ||
        api_get_string(b, "output_format", "output_format", &format, &call->err) ||
        api_get_bool(b, "batch", "batch", &batch, &call->err))
        return API_FAIL;
    if (t->batch_hint == 0 && batch)
        t->batch_hint = 1;
    if ((v = json_object_get(b, "optimizer")) && api_parse_optimizer(call, v, &t->optimizer))
        return API_FAIL;
    if ((v = json_object_get(b, "return")) && parse_return(call, v, &t->want))
        return API_FAIL;
    t->format = form;
    t->has_format = format != NULL;
    return format ? api_form_parse(format, &t->format, "output_format", &call->err) : API_OK;
}

// ---- running and rendering ----

// Batched views of the request's tensors; the gradient and target batch like the input.
static int batch_views(struct api_call *call, struct nd_layer *layer, struct api_train_req *t,
                       struct nd_tensor v[3], bool *is_batch) {
    if (api_batch_view(call, layer, &t->input, t->batch_hint, &v[0], is_batch) != 0)
        return API_FAIL;
    struct nd_tensor *src[2] = {&t->output_grad, &t->target};
    for (int i = 0; i < 2; i++) {
        v[i + 1] = *src[i];
        if (src[i]->data && nd_shape_equal(&src[i]->shape, &t->input.shape))
            v[i + 1] = nd_tensor_view(src[i]->data, &v[0].shape);
    }
    return API_OK;
}

// A result tensor in the request's batching (one example in, one example out).
static void write_item(struct jw *w, struct nd_tensor *t, const struct nd_shape *example,
                       enum api_tensor_form form) {
    struct nd_tensor view = *t;
    if (example)
        view.shape = *example;
    api_tensor_write(w, &view, form);
}

static void write_array_map(struct jw *w, struct nd_tensor *arrays, int count,
                            enum api_tensor_form form) {
    jw_obj_begin(w);
    for (int id = 0; id < count; id++) {
        if (!arrays[id].data && arrays[id].numel == 0 && arrays[id].shape.ndim == 0)
            continue;
        jw_key(w, nd_array_name((enum nd_array_id)id));
        api_tensor_write(w, &arrays[id], form);
    }
    jw_obj_end(w);
}

static void write_result(struct jw *w, const struct api_train_req *t, struct nd_train_result *r,
                         bool is_batch) {
    const struct nd_shape *ex = is_batch ? NULL : &t->input.shape;
    enum api_tensor_form f = t->format;
    jw_obj_begin(w);
    if (t->want & ND_TRAIN_WANT_OUTPUT) {
        jw_key(w, "output");
        write_item(w, &r->output, ex, f);
    }
    if ((t->want & ND_TRAIN_WANT_INPUT_GRADIENT) && r->input_grad.data) {
        jw_key(w, "input_gradient");
        write_item(w, &r->input_grad, ex, f);
    }
    if ((t->want & ND_TRAIN_WANT_ARRAY_GRADIENTS) && (t->output_grad.data || t->target.data)) {
        jw_key(w, "array_gradients");
        write_array_map(w, r->array_grad, ND_ARRAY_AFFINE_COUNT, f);
    }
    if (t->want & ND_TRAIN_WANT_ARRAYS) {
        jw_key(w, "arrays");
        write_array_map(w, r->arrays, ND_ARRAY_COUNT, f);
    }
    if (t->want & ND_TRAIN_WANT_BATCH_STATISTICS) {
        jw_key(w, "batch_statistics");
        jw_obj_begin(w);
        jw_key(w, "mean");
        api_tensor_write(w, &r->batch_mean, f);
        jw_key(w, "variance");
        api_tensor_write(w, &r->batch_var, f);
        jw_obj_end(w);
    }
    if (r->has_loss) {
        jw_key(w, "loss");
        jw_double(w, r->loss);
    }
    jw_key(w, "version");
    jw_uint(w, r->version);
    jw_obj_end(w);
}

#define TRAIN_COPIES 8 // output, input gradient, caches (xhat, dy*scale), the result copies

int api_train_run(struct api_call *call, struct nd_layer *layer, struct api_train_req *t,
                  struct nd_train_result *r, bool *is_batch) {
    struct nd_tensor v[3];
    if (batch_views(call, layer, t, v, is_batch) != 0)
        return API_FAIL;
    // A step's tensors (its output, the gradients, the engine's caches) and its reply text are
    // counted first: at most TRAIN_COPIES copies of the input, and each as text.
    int64_t bytes = v[0].numel * (int64_t)sizeof(float) * TRAIN_COPIES;
    if (api_reserve(call, bytes + (int64_t)api_tensor_text_bound(&v[0].shape, API_FORM_NESTED) * 3,
                    "this train-step") != 0)
        return API_FAIL;
    struct nd_train_args args = {.input = &v[0],
                                 .output_grad =
                                     t->output_grad.data || t->output_grad.numel ? &v[1] : NULL,
                                 .target = t->target.data || t->target.numel ? &v[2] : NULL,
                                 .optimizer = t->optimizer,
                                 .want = t->want};
    struct nd_error ce;
    nd_error_clear(&ce);
    if (nd_layer_train_step(layer, nd_engine_pool(call->ctx->engine), &args, r, &ce) !=
        ND_STATUS_OK)
        return api_core_error(call, &ce, "");
    atomic_fetch_add_explicit(&call->ctx->train_steps, 1, memory_order_relaxed);
    return API_OK;
}

static int train(struct api_call *call, struct nd_layer *layer, struct api_train_req *t) {
    struct nd_train_result r;
    bool is_batch;
    if (api_train_run(call, layer, t, &r, &is_batch) != 0)
        return API_FAIL;
    struct jw w;
    api_writer_init(call, &w);
    write_result(&w, t, &r, is_batch);
    api_reply_etag(call, r.version);
    nd_train_result_deinit(&r);
    return api_reply_json(call, 200, &w);
}

int api_h_train_step(struct api_call *call) {
    if (call->binary)
        return api_fail(&call->err, API_E_UNSUPPORTED_MEDIA_TYPE, "Content-Type",
                        "train-step takes JSON (its gradient and options travel with the "
                        "input)");
    struct api_train_req t = {0};
    struct nd_layer *layer = NULL;
    int rc = API_FAIL;
    if (api_layer_from_path(call, &layer) == 0 && api_parse_body(call, false) == 0 &&
        parse_train(call, &t) == 0)
        rc = train(call, layer, &t);
    nd_layer_unref(layer);
    api_train_req_release(&t);
    return rc;
}
