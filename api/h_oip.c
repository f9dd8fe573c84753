// h_oip.c - the Open Inference Protocol v2 (KServe V2 REST, API.md 5): server and model
// metadata, health, infer, and normd's own train extension. Every layer is a model; its
// version is the layer's version.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/oip.h"
#include "api/tensor_io.h"

static const char *const INFER_INPUTS[] = {"input", NULL};
static const char *const INFER_OUTPUTS[] = {"output", NULL};
static const char *const INFER_PARAMS[] = {"mode", NULL};
static const struct oip_route INFER = {INFER_INPUTS, INFER_OUTPUTS, INFER_PARAMS, 1};

enum { OUT_OUTPUT, OUT_INPUT_GRADIENT, OUT_SCALING_GRADIENT, OUT_BIASES_GRADIENT };
static const char *const TRAIN_INPUTS[] = {"input", "output_gradient", "target", NULL};
static const char *const TRAIN_OUTPUTS[] = {"output", "input_gradient", "scaling_gradient",
                                            "biases_gradient", NULL};
static const char *const TRAIN_PARAMS[] = {"optimizer", "learning_rate",    "momentum",
                                           "nesterov",  "beta_1",           "beta_2",
                                           "epsilon",   "return_gradients", NULL};
static const struct oip_route TRAIN = {TRAIN_INPUTS, TRAIN_OUTPUTS, TRAIN_PARAMS, 1};

// ---- errors in the protocol's form ----

// {"error": "message"} (the field in front when the message does not name it). The protocol
// knows no 422 and Triton answers its invalid arguments with 400: normd's 409, 412 and 422
// become 400; 401, 404, 405, 413, 415, 429, 500, 503 and 507 stay.
void api_oip_reply_error(struct api_call *call) {
    const struct api_error *e = &call->err;
    int status = e->status == 409 || e->status == 412 || e->status == 422 ? 400 : e->status;
    char text[API_FIELD_MAX + API_MESSAGE_MAX + 4];
    if (e->field[0] && !strstr(e->message, e->field))
        snprintf(text, sizeof text, "%s: %s", e->field, e->message);
    else
        snprintf(text, sizeof text, "%s", e->message);
    struct jw w;
    jw_init(&w);
    jw_obj_begin(&w);
    jw_key(&w, "error");
    jw_string(&w, text);
    jw_obj_end(&w);
    free(call->resp->body);
    call->resp->body = jw_finish(&w, &call->resp->body_len);
    call->resp->status = status;
    call->resp->content_type = call->resp->body ? "application/json; charset=utf-8" : NULL;
    if (!call->resp->body)
        call->resp->body_len = 0;
}

// ---- versions ----

// The {v} of .../versions/{v}: 0 when the path has none. Not a version number is 400, as
// Triton answers a version string it cannot read.
static int path_version(struct api_call *call, uint64_t *want) {
    const char *v = call->param[1];
    *want = 0;
    if (!v)
        return API_OK;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (v[0] < '0' || v[0] > '9' || *end || errno || n == 0)
        return api_fail(&call->err, API_E_INVALID_VALUE, "version",
                        "model version %.40s is not a version number (1, 2, ...)", v);
    *want = n;
    return API_OK;
}

// A model has one version, the layer's current one: another is not found (Triton's 404 for a
// version it does not serve).
static int check_version(struct api_call *call, uint64_t want, uint64_t have) {
    if (want && want != have)
        return api_fail(&call->err, API_E_NOT_FOUND, "version",
                        "model %.100s has version %llu, not %llu", call->param[0],
                        (unsigned long long)have, (unsigned long long)want);
    return API_OK;
}

// The layer of the path and its information, its version checked against the path's.
static int model_from_path(struct api_call *call, struct nd_layer **layer,
                           struct nd_layer_info *info) {
    uint64_t want;
    *layer = NULL;
    if (path_version(call, &want) != 0 || api_layer_from_path(call, layer) != 0)
        return API_FAIL;
    nd_layer_info(*layer, info);
    return check_version(call, want, info->version);
}

// ---- server ----

int api_h_oip_server(struct api_call *call) {
    struct jw w;
    jw_init(&w);
    jw_obj_begin(&w);
    api_write_server_id(&w, call->ctx);
    jw_key(&w, "extensions");
    jw_arr_begin(&w);
    jw_string(&w, "binary_tensor_data");
    jw_string(&w, "train");
    jw_arr_end(&w);
    jw_obj_end(&w);
    return api_reply_json(call, 200, &w);
}

static int reply_bool(struct api_call *call, const char *name, const char *key) {
    struct jw w;
    jw_init(&w);
    jw_obj_begin(&w);
    if (name) {
        jw_key(&w, "name");
        jw_string(&w, name);
    }
    jw_key(&w, key);
    jw_bool(&w, true);
    jw_obj_end(&w);
    return api_reply_json(call, 200, &w);
}

int api_h_oip_live(struct api_call *call) {
    return reply_bool(call, NULL, "live");
}

int api_h_oip_ready(struct api_call *call) {
    if (!api_is_ready(call->ctx))
        return api_fail(&call->err, API_E_UNAVAILABLE, NULL,
                        "not ready: starting, draining, or the store cannot be reached");
    return reply_bool(call, NULL, "ready");
}

// ---- models ----

// The layer's per-example shape with the batch in front: -1 for the batch and Automatic dims;
// [-1] while the rank is unknown.
static void write_tensor_meta(struct jw *w, const char *name, const struct nd_shape *example) {
    oip_begin_fp32_tensor(w, name);
    jw_int(w, -1);
    for (int32_t d = 0; d < example->ndim; d++)
        jw_int(w, example->dim[d] == ND_DIM_AUTO ? -1 : example->dim[d]);
    jw_arr_end(w);
    jw_obj_end(w);
}

static int reply_metadata(struct api_call *call, const struct nd_layer_info *info) {
    char version[24], platform[64];
    snprintf(version, sizeof version, "%llu", (unsigned long long)info->version);
    snprintf(platform, sizeof platform, "normd_%s", nd_layer_type_name(info->spec.type));
    struct jw w;
    jw_init(&w);
    jw_obj_begin(&w);
    jw_key(&w, "name");
    jw_string(&w, call->param[0]);
    jw_key(&w, "versions");
    jw_arr_begin(&w);
    jw_string(&w, version);
    jw_arr_end(&w);
    jw_key(&w, "platform");
    jw_string(&w, platform);
    jw_key(&w, "inputs");
    jw_arr_begin(&w);
    write_tensor_meta(&w, "input", &info->spec.input);
    jw_arr_end(&w);
    jw_key(&w, "outputs");
    jw_arr_begin(&w);
    write_tensor_meta(&w, "output", &info->spec.input);
    jw_arr_end(&w);
    jw_obj_end(&w);
    api_reply_etag(call, info->version);
    return api_reply_json(call, 200, &w);
}

int api_h_oip_model(struct api_call *call) {
    struct nd_layer *layer;
    struct nd_layer_info info;
    int rc = model_from_path(call, &layer, &info) == 0 ? reply_metadata(call, &info) : API_FAIL;
    nd_layer_unref(layer);
    return rc;
}

// Ready: the server is, and the layer can answer an inference (initialized). Otherwise 503, so
// that a probe needs only the status.
int api_h_oip_model_ready(struct api_call *call) {
    struct nd_layer *layer;
    struct nd_layer_info info;
    int rc = model_from_path(call, &layer, &info);
    nd_layer_unref(layer);
    if (rc != 0)
        return API_FAIL;
    if (!atomic_load(&call->ctx->ready))
        return api_fail(&call->err, API_E_UNAVAILABLE, NULL,
                        "not ready: the server is starting or draining");
    if (!info.initialized)
        return api_fail(&call->err, API_E_UNAVAILABLE, NULL,
                        "model %.100s is not ready: it is not initialized", call->param[0]);
    return reply_bool(call, call->param[0], "ready");
}

// ---- infer ----

// The raw binary request's input shape comes from the layer's information, which may wait for
// its lock: on an event loop it moves to a worker.
static int read_raw(struct api_call *call, struct nd_layer *layer, struct oip_request *r) {
    if (call->inline_only)
        return API_DEFER;
    struct nd_layer_info info;
    nd_layer_info(layer, &info);
    return oip_read_raw(call, &info.spec.input, r);
}

static int infer(struct api_call *call, struct nd_layer *layer, uint64_t want,
                 struct oip_request *r) {
    const char *mode = NULL;
    bool train = false;
    if (oip_read_request(call, &INFER, r) != 0)
        return API_FAIL;
    int rc = r->raw ? read_raw(call, layer, r) : API_OK;
    if (rc != 0)
        return rc;
    if (r->params && (api_get_string(r->params, "mode", "parameters.mode", &mode, &call->err) ||
                      (mode && api_parse_mode(call, mode, &train))))
        return API_FAIL;
    struct nd_tensor y = {0};
    uint64_t version = 0;
    struct nd_tensor *x = &r->in[0].t;
    if (api_reserve(call, x->numel * (int64_t)sizeof(float), "this inference's output") != 0)
        return API_FAIL;
    // The declared shape holds the batch (the metadata's -1): always a batch.
    rc = api_forward_one(call, layer, x, 1, train, &y, &version);
    // After the forward, from the version it used: a request for another is not served.
    if (rc == 0)
        rc = check_version(call, want, version);
    if (rc == 0)
        rc = oip_reply(call, &INFER, r, (struct nd_tensor *[]){&y}, version, false);
    nd_tensor_deinit(&y);
    return rc;
}

int api_h_oip_infer(struct api_call *call) {
    struct nd_layer *layer = NULL;
    struct oip_request r = {0};
    uint64_t want;
    if (path_version(call, &want) != 0)
        return API_FAIL;
    int rc = api_layer_from_path(call, &layer); // API_DEFER on a loop when not held here
    if (rc != 0)
        return rc;
    rc = infer(call, layer, want, &r);
    oip_request_release(&r);
    nd_layer_unref(layer);
    return rc;
}

// ---- train ----

// The optimizer object api_parse_optimizer reads, from the request's flat parameters.
static int train_optimizer(struct api_call *call, const json_t *params, struct nd_optimizer *opt) {
    static const char *const keys[] = {"learning_rate", "momentum", "nesterov",
                                       "beta_1",        "beta_2",   "epsilon"};
    *opt = nd_optimizer_default(ND_OPTIMIZER_SGD);
    if (!params)
        return API_OK;
    json_t *o = json_object();
    int rc = o ? API_OK : api_fail(&call->err, API_E_UNAVAILABLE, NULL, NULL);
    const json_t *type = json_object_get(params, "optimizer");
    if (rc == 0 && type)
        rc = json_object_set(o, "type", (json_t *)type);
    for (size_t k = 0; rc == 0 && k < sizeof keys / sizeof keys[0]; k++) {
        const json_t *v = json_object_get(params, keys[k]);
        if (v)
            rc = json_object_set(o, keys[k], (json_t *)v);
    }
    if (rc == 0)
        rc = api_parse_optimizer(call, o, opt);
    else
        api_fail(&call->err, API_E_UNAVAILABLE, NULL, NULL);
    json_decref(o);
    return rc;
}

// The request's inputs become the train-step's tensors (moved: t owns them).
static int train_inputs(struct api_call *call, struct oip_request *r, struct api_train_req *t) {
    for (int i = 0; i < r->nin; i++) {
        struct nd_tensor *dst = strcmp(r->in[i].name, "input") == 0             ? &t->input
                                : strcmp(r->in[i].name, "output_gradient") == 0 ? &t->output_grad
                                                                                : &t->target;
        *dst = r->in[i].t;
        memset(&r->in[i].t, 0, sizeof r->in[i].t);
    }
    if (!t->input.data && t->input.shape.ndim == 0)
        return api_fail(&call->err, API_E_INVALID_VALUE, "inputs",
                        "the train extension needs the input \"input\"");
    if (t->output_grad.shape.ndim && t->target.shape.ndim)
        return api_fail(&call->err, API_E_INVALID_VALUE, "inputs",
                        "give output_gradient or target, not both");
    return API_OK;
}

// Without a list of outputs, return_gradients asks for all four.
static int train_outputs(struct api_call *call, struct oip_request *r, struct api_train_req *t) {
    bool gradients = false;
    if (oip_param_bool(call, r, "return_gradients", &gradients) != 0)
        return API_FAIL;
    if (gradients && !json_object_get(call->body, "outputs"))
        for (r->nout = 1; r->nout < OIP_MAX_OUTPUTS; r->nout++)
            r->out[r->nout] = (struct oip_output){r->nout, r->out[0].binary};
    t->want = ND_TRAIN_WANT_OUTPUT;
    for (int k = 0; k < r->nout; k++)
        t->want |= r->out[k].index == OUT_INPUT_GRADIENT  ? ND_TRAIN_WANT_INPUT_GRADIENT
                   : r->out[k].index > OUT_INPUT_GRADIENT ? ND_TRAIN_WANT_ARRAY_GRADIENTS
                                                          : 0;
    return API_OK;
}

static struct nd_tensor *result_tensor(struct nd_train_result *res, int index) {
    struct nd_tensor *t = index == OUT_OUTPUT             ? &res->output
                          : index == OUT_INPUT_GRADIENT   ? &res->input_grad
                          : index == OUT_SCALING_GRADIENT ? &res->array_grad[ND_ARRAY_SCALING]
                                                          : &res->array_grad[ND_ARRAY_BIASES];
    return t->data || t->shape.ndim > 0 ? t : NULL; // not computed: left out of the reply
}

static int train(struct api_call *call, struct nd_layer *layer, struct oip_request *r) {
    struct api_train_req t = {.batch_hint = 1};
    struct nd_train_result res = {0};
    bool is_batch;
    int rc = API_FAIL;
    if (train_inputs(call, r, &t) == 0 && train_outputs(call, r, &t) == 0 &&
        train_optimizer(call, r->params, &t.optimizer) == 0 &&
        api_train_run(call, layer, &t, &res, &is_batch) == 0) {
        struct nd_tensor *outputs[OIP_MAX_OUTPUTS];
        for (int k = 0; k < r->nout; k++)
            outputs[k] = result_tensor(&res, r->out[k].index);
        rc = oip_reply(call, &TRAIN, r, outputs, res.version, true);
    }
    nd_train_result_deinit(&res);
    api_train_req_release(&t);
    return rc;
}

int api_h_oip_train(struct api_call *call) {
    struct nd_layer *layer;
    struct nd_layer_info info;
    struct oip_request r = {0};
    int rc =
        model_from_path(call, &layer, &info) == 0 ? oip_read_request(call, &TRAIN, &r) : API_FAIL;
    if (rc == 0 && r.raw)
        rc = api_fail(&call->err, API_E_INVALID_VALUE, "Inference-Header-Content-Length",
                      "the train extension takes a JSON header (its inputs are named)");
    // The version is checked before the step, not atomically with it: a concurrent change
    // between the two trains the newer version.
    if (rc == 0)
        rc = train(call, layer, &r);
    oip_request_release(&r);
    nd_layer_unref(layer);
    return rc;
}
