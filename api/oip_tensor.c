// oip_tensor.c - Open Inference Protocol requests and replies: the JSON header, its tensors
// (FP32, FP64 and FP16; JSON data or binary after the header) and the reply with its binary
// outputs (Triton's binary tensor data extension).
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/oip.h"
#include "api/tensor_io.h"

// Binary tensors are little-endian, the machine's own layout here (as tensor_io.c asserts).
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "binary tensors assume little-endian");

#define HEADER_LENGTH "Inference-Header-Content-Length"

// The binary data after the JSON header, taken input by input in the header's order.
struct tail {
    const char *p;
    size_t left;
};

enum dtype { DT_FP32, DT_FP64, DT_FP16 };

// Most of the protocol's errors: invalid_value naming the field (400 in the protocol's form).
#define bad(call, field, ...) api_fail(&(call)->err, API_E_INVALID_VALUE, field, __VA_ARGS__)

// ---- the header's length ----

// Inference-Header-Content-Length: absent, the body is all JSON; 0, a raw binary request;
// otherwise the JSON's length, at most the body's. Digits only (Triton refuses what stoi
// cannot read and what is out of [0, body]).
static int header_length(struct api_call *call, size_t *len, bool *raw) {
    const char *h = api_header(call->req, HEADER_LENGTH);
    size_t body = call->req->body_len;
    *len = body;
    *raw = false;
    if (!h)
        return API_OK;
    if (h[0] == '-')
        return bad(call, HEADER_LENGTH, "%s must not be negative", HEADER_LENGTH);
    char *end;
    errno = 0;
    unsigned long long v = strtoull(h, &end, 10);
    if (h[0] < '0' || h[0] > '9' || *end || errno)
        return bad(call, HEADER_LENGTH, "%s must be a byte count (digits)", HEADER_LENGTH);
    if (v > body)
        return api_fail(&call->err, API_E_INVALID_VALUE, HEADER_LENGTH,
                        "%s is %llu but the body has only %zu bytes", HEADER_LENGTH, v, body);
    *len = (size_t)v;
    *raw = v == 0;
    return API_OK;
}

// Parses the first len bytes of the body as the JSON header, through the route's usual reader
// (its fast path for large numeric lists, its memory and nesting bounds) on a request that
// ends there.
static int parse_header(struct api_call *call, size_t len) {
    struct api_request head = *call->req;
    const struct api_request *whole = call->req;
    head.body_len = len;
    call->req = &head;
    int rc = api_parse_body(call, false);
    call->req = whole;
    return rc;
}

// ---- shapes and datatypes ----

static int read_shape(struct api_call *call, const json_t *v, const char *field,
                      struct nd_shape *out, int64_t *numel) {
    if (!json_is_array(v))
        return api_fail(&call->err, API_E_INVALID_TYPE, field, "%s must be a list of dimensions",
                        field);
    if (json_array_size(v) > ND_MAX_DIMS)
        return api_fail(&call->err, API_E_INVALID_VALUE, field, "%s has %zu dimensions; at most %d",
                        field, json_array_size(v), ND_MAX_DIMS);
    out->ndim = (int32_t)json_array_size(v);
    for (int32_t d = 0; d < out->ndim; d++) {
        if (api_as_int(json_array_get(v, (size_t)d), field, &out->dim[d], &call->err) != 0)
            return API_FAIL;
        if (out->dim[d] < 0)
            return bad(call, field, "%s: a dimension is negative", field);
    }
    struct nd_error ce;
    nd_error_clear(&ce);
    int64_t limit = call->ctx->config.max_elements;
    if (nd_shape_numel(out, numel, &ce) != ND_STATUS_OK || (limit > 0 && *numel > limit))
        return api_fail(&call->err, API_E_PAYLOAD_TOO_LARGE, field,
                        "%s holds more than this server's %lld elements per tensor", field,
                        (long long)limit);
    return API_OK;
}

static int read_dtype(struct api_call *call, const json_t *v, const char *field, enum dtype *out) {
    static const struct api_enum_name names[] = {{"FP32", DT_FP32, false},
                                                 {"FP64", DT_FP64, false},
                                                 {"FP16", DT_FP16, false},
                                                 {NULL, 0, false}};
    const char *s;
    if (api_as_string(v, field, &s, &call->err) != 0)
        return API_FAIL;
    int dt = api_enum_find(s, names, 0);
    char expected[32];
    if (dt < 0) // the protocol's wording, as Triton's
        return api_fail(&call->err, API_E_INVALID_VALUE, field,
                        "datatype %.40s is not supported: %s", s,
                        api_enum_expected(names, "", expected, sizeof expected));
    *out = (enum dtype)dt;
    return API_OK;
}

static size_t dtype_size(enum dtype dt) {
    return dt == DT_FP64 ? 8 : dt == DT_FP16 ? 2 : 4;
}

// IEEE 754 binary16 to float, exactly (every half is a float).
static float half_to_float(uint16_t h) {
    int exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    float v = exp == 0    ? ldexpf((float)mant, -24)
              : exp == 31 ? (mant ? NAN : INFINITY)
                          : ldexpf((float)(mant | 0x400), exp - 25);
    return (h & 0x8000) ? -v : v;
}

// n elements of little-endian dt at p into out; a finite FP64 outside float's range is refused
// as /v1's base64 FP64 is.
static int widen(struct api_call *call, const char *p, size_t n, enum dtype dt, float *out,
                 const char *field) {
    if (dt == DT_FP32) {
        memcpy(out, p, n * 4);
        return API_OK;
    }
    for (size_t i = 0; i < n; i++) {
        if (dt == DT_FP16) {
            uint16_t h;
            memcpy(&h, p + i * 2, 2);
            out[i] = half_to_float(h);
            continue;
        }
        double d;
        memcpy(&d, p + i * 8, 8);
        if (isfinite(d) && fabs(d) > FLT_MAX)
            return api_fail(&call->err, API_E_INVALID_VALUE, field,
                            "%s[%zu] = %g is outside FP32's range", field, i, d);
        out[i] = (float)d;
    }
    return API_OK;
}

// ---- inputs ----

static int input_data_json(struct api_call *call, const json_t *data, const char *field,
                           struct oip_input *in, const struct nd_shape *shape, int64_t numel) {
    struct api_tensor_limits limits = api_limits(call);
    enum api_tensor_form form;
    if (json_is_object(data))
        return api_fail(&call->err, API_E_INVALID_TYPE, field,
                        "%s must be a list of numbers, nested or flat", field);
    if (api_tensor_value(&call->fast, data, &limits, field, &in->t, &form, &call->err) != 0)
        return API_FAIL;
    bool flat = in->t.shape.ndim == 1;
    if (in->t.numel != numel || (!flat && !nd_shape_equal(&in->t.shape, shape))) {
        char got[96], want[96];
        nd_shape_format(&in->t.shape, got, sizeof got);
        nd_shape_format(shape, want, sizeof want);
        return api_fail(&call->err, API_E_SHAPE_MISMATCH, field,
                        "%s has shape %s; the input's shape is %s (give it nested in that "
                        "shape or flat with %lld values)",
                        field, got, want, (long long)numel);
    }
    in->t.shape = *shape;
    return API_OK;
}

static int input_data_binary(struct api_call *call, int64_t size, const char *field,
                             struct tail *tail, struct oip_input *in, enum dtype dt,
                             const struct nd_shape *shape, int64_t numel) {
    size_t want = (size_t)numel * dtype_size(dt);
    if (size < 0 || (uint64_t)size != want)
        return api_fail(&call->err, API_E_INVALID_VALUE, field,
                        "%s is %lld but the shape and datatype make %zu bytes", field,
                        (long long)size, want);
    if (want > tail->left)
        return api_fail(&call->err, API_E_INVALID_VALUE, field,
                        "%s is %zu but only %zu bytes of binary data remain after the JSON", field,
                        want, tail->left);
    struct nd_error ce;
    nd_error_clear(&ce);
    if (api_reserve(call, numel * (int64_t)sizeof(float), "the binary input") != 0)
        return API_FAIL;
    if (nd_tensor_init_uninit(&in->t, shape, &ce) != ND_STATUS_OK)
        return api_core_error(call, &ce, field);
    int rc = numel ? widen(call, tail->p, (size_t)numel, dt, in->t.data, field) : API_OK;
    if (want) { // a NULL tail (an empty body) is never advanced
        tail->p += want;
        tail->left -= want;
    }
    return rc;
}

static int read_input_params(struct api_call *call, const json_t *p, const char *field,
                             const json_t **size) {
    static const char *const keys[] = {"binary_data_size", NULL};
    *size = NULL;
    if (!p)
        return API_OK;
    if (!json_is_object(p))
        return api_fail(&call->err, API_E_INVALID_TYPE, field, "%s must be an object", field);
    if (api_check_keys(p, keys, field, &call->err) != 0)
        return API_FAIL;
    *size = json_object_get(p, "binary_data_size");
    return API_OK;
}

// "a, b, c" from a NULL-terminated list of names.
static char *list_names(const char *const *names, char *buf, size_t size) {
    buf[0] = '\0';
    for (int k = 0; names[k]; k++) {
        size_t n = strlen(buf);
        snprintf(buf + n, size - n, "%s%s", k ? ", " : "", names[k]);
    }
    return buf;
}

static int input_name(struct api_call *call, const json_t *v, const char *field,
                      const struct oip_route *route, struct oip_input *in) {
    const char *name;
    char names[128];
    if (api_as_string(v, field, &name, &call->err) != 0)
        return API_FAIL;
    for (int k = 0; route->inputs[k]; k++)
        if (strcmp(route->inputs[k], name) == 0) {
            snprintf(in->name, sizeof in->name, "%s", name);
            return API_OK;
        }
    return api_fail(&call->err, API_E_INVALID_VALUE, field,
                    "unknown input %.60s: this model's inputs are %s", name,
                    list_names(route->inputs, names, sizeof names));
}

static int read_input(struct api_call *call, const struct oip_route *route, const json_t *v,
                      size_t i, struct tail *tail, struct oip_input *in) {
    static const char *const keys[] = {"name", "shape", "datatype", "parameters", "data", NULL};
    char f[64];
    const json_t *size = NULL;
    int64_t size_bytes = 0;
    struct nd_shape shape;
    int64_t numel;
    enum dtype dt = DT_FP32;
    if (!json_is_object(v))
        return api_fail(&call->err, API_E_INVALID_TYPE, "inputs", "inputs[%zu] must be an object",
                        i);
#define FIELD(k) (snprintf(f, sizeof f, "inputs[%zu].%s", i, k), f)
    snprintf(f, sizeof f, "inputs[%zu]", i);
    if (api_check_keys(v, keys, f, &call->err) != 0)
        return API_FAIL;
    const char *req[] = {"name", "shape", "datatype"};
    for (int k = 0; k < 3; k++)
        if (!json_object_get(v, req[k]))
            return bad(call, FIELD(req[k]), "%s is required", f);
    if (input_name(call, json_object_get(v, "name"), FIELD("name"), route, in) ||
        read_shape(call, json_object_get(v, "shape"), FIELD("shape"), &shape, &numel) ||
        read_dtype(call, json_object_get(v, "datatype"), FIELD("datatype"), &dt) ||
        read_input_params(call, json_object_get(v, "parameters"), FIELD("parameters"), &size))
        return API_FAIL;
    const json_t *data = json_object_get(v, "data");
    if (!data == !size)
        return bad(call, FIELD("data"), "%s: give data or parameters.binary_data_size, one of them",
                   f);
    if (data)
        return input_data_json(call, data, FIELD("data"), in, &shape, numel);
    if (api_as_int(size, FIELD("parameters.binary_data_size"), &size_bytes, &call->err) != 0)
        return API_FAIL;
    return input_data_binary(call, size_bytes, f, tail, in, dt, &shape, numel);
#undef FIELD
}

static int read_inputs(struct api_call *call, const struct oip_route *route, struct tail *tail,
                       struct oip_request *r) {
    const json_t *inputs = json_object_get(call->body, "inputs");
    size_t most = 0;
    while (route->inputs[most] && most < OIP_MAX_INPUTS)
        most++;
    if (!json_is_array(inputs))
        return api_fail(&call->err, API_E_INVALID_TYPE, "inputs",
                        "inputs must be a list of input tensors");
    if (json_array_size(inputs) == 0 || json_array_size(inputs) > most)
        return api_fail(
            &call->err, API_E_INVALID_VALUE, "inputs", "this request takes %s, not %zu inputs",
            most == 1 ? "exactly one input (\"input\")" : "the input and output_gradient or target",
            json_array_size(inputs));
    for (size_t i = 0; i < json_array_size(inputs); i++) {
        struct oip_input *in = &r->in[r->nin++]; // counted first: released on any failure
        if (read_input(call, route, json_array_get(inputs, i), i, tail, in) != 0)
            return API_FAIL;
        for (int k = 0; k < r->nin - 1; k++)
            if (strcmp(r->in[k].name, in->name) == 0)
                return bad(call, "inputs", "input %s is given twice", in->name);
    }
    if (tail->left)
        return api_fail(&call->err, API_E_INVALID_VALUE, HEADER_LENGTH,
                        "%zu bytes of binary data follow the JSON that no input's "
                        "binary_data_size claims",
                        tail->left);
    return API_OK;
}

// ---- outputs and parameters ----

int oip_param_bool(struct api_call *call, const struct oip_request *r, const char *key, bool *out) {
    const json_t *v = r->params ? json_object_get(r->params, key) : NULL;
    char f[64];
    snprintf(f, sizeof f, "parameters.%s", key);
    return v ? api_as_bool(v, f, out, &call->err) : API_OK;
}

static int output_index(struct api_call *call, const struct oip_route *route, const char *name,
                        const char *field) {
    for (int k = 0; route->outputs[k]; k++)
        if (strcmp(route->outputs[k], name) == 0)
            return k;
    char names[128];
    api_fail(&call->err, API_E_INVALID_VALUE, field,
             "unknown output %.60s: this model's outputs are %s", name,
             list_names(route->outputs, names, sizeof names));
    return -1;
}

static int read_output(struct api_call *call, const struct oip_route *route, const json_t *v,
                       size_t i, bool binary, struct oip_output *out) {
    static const char *const keys[] = {"name", "parameters", NULL};
    static const char *const pkeys[] = {"binary_data", NULL};
    char f[64];
    const char *name;
    snprintf(f, sizeof f, "outputs[%zu]", i);
    if (!json_is_object(v))
        return api_fail(&call->err, API_E_INVALID_TYPE, f, "%s must be an object", f);
    if (api_check_keys(v, keys, f, &call->err) != 0)
        return API_FAIL;
    snprintf(f, sizeof f, "outputs[%zu].name", i);
    const json_t *p = json_object_get(v, "parameters");
    if (api_as_string(json_object_get(v, "name"), f, &name, &call->err) != 0 ||
        (out->index = output_index(call, route, name, f)) < 0)
        return API_FAIL;
    snprintf(f, sizeof f, "outputs[%zu].parameters", i);
    if (p && !json_is_object(p))
        return api_fail(&call->err, API_E_INVALID_TYPE, f, "%s must be an object", f);
    if (p && api_check_keys(p, pkeys, f, &call->err) != 0)
        return API_FAIL;
    out->binary = binary;
    const json_t *b = p ? json_object_get(p, "binary_data") : NULL;
    snprintf(f, sizeof f, "outputs[%zu].parameters.binary_data", i);
    return b ? api_as_bool(b, f, &out->binary, &call->err) : API_OK;
}

static int read_outputs(struct api_call *call, const struct oip_route *route,
                        struct oip_request *r) {
    bool binary = false;
    if (oip_param_bool(call, r, "binary_data_output", &binary) != 0)
        return API_FAIL;
    const json_t *outs = json_object_get(call->body, "outputs");
    if (!outs) {
        for (r->nout = 0; r->nout < route->default_outputs; r->nout++)
            r->out[r->nout] = (struct oip_output){.index = r->nout, .binary = binary};
        return API_OK;
    }
    if (!json_is_array(outs) || json_array_size(outs) > OIP_MAX_OUTPUTS)
        return api_fail(&call->err, API_E_INVALID_TYPE, "outputs",
                        "outputs must be a list of at most %d requested outputs", OIP_MAX_OUTPUTS);
    for (size_t i = 0; i < json_array_size(outs); i++) {
        if (read_output(call, route, json_array_get(outs, i), i, binary, &r->out[r->nout]) != 0)
            return API_FAIL;
        for (int k = 0; k < r->nout; k++)
            if (r->out[k].index == r->out[r->nout].index)
                return bad(call, "outputs", "output %s is requested twice",
                           route->outputs[r->out[k].index]);
        r->nout++;
    }
    return API_OK;
}

// The request's parameters: the route's names and binary_data_output, each a string, number
// or boolean as the protocol defines them.
static int read_params(struct api_call *call, const struct oip_route *route,
                       struct oip_request *r) {
    const char *allowed[16] = {"binary_data_output"};
    int n = 1;
    for (int k = 0; route->params && route->params[k] && n < 15; k++)
        allowed[n++] = route->params[k];
    r->params = json_object_get(call->body, "parameters");
    if (!r->params)
        return API_OK;
    if (!json_is_object(r->params))
        return api_fail(&call->err, API_E_INVALID_TYPE, "parameters",
                        "parameters must be an object");
    return api_check_keys(r->params, allowed, "parameters", &call->err);
}

static int read_header_fields(struct api_call *call, struct oip_request *r) {
    static const char *const keys[] = {
        "id", "model_name", "model_version", "parameters", "inputs", "outputs", NULL};
    const char *name = NULL;
    if (api_check_keys(call->body, keys, "", &call->err) ||
        api_get_string(call->body, "id", "id", &r->id, &call->err) ||
        api_get_string(call->body, "model_name", "model_name", &name, &call->err))
        return API_FAIL;
    if (name && strcmp(name, call->param[0]) != 0)
        return bad(call, "model_name", "model_name %.60s differs from the path's model", name);
    return API_OK;
}

int oip_read_request(struct api_call *call, const struct oip_route *route, struct oip_request *r) {
    size_t len;
    memset(r, 0, sizeof *r);
    if (header_length(call, &len, &r->raw) != 0)
        return API_FAIL;
    if (r->raw)
        return API_OK;
    // an empty body may come as NULL, and NULL + 0 is undefined
    struct tail tail = {call->req->body ? call->req->body + len : NULL, call->req->body_len - len};
    if (parse_header(call, len) || read_header_fields(call, r) || read_params(call, route, r) ||
        read_inputs(call, route, &tail, r) || read_outputs(call, route, r))
        return API_FAIL;
    return API_OK;
}

int oip_read_raw(struct api_call *call, const struct nd_shape *example, struct oip_request *r) {
    struct nd_error ce;
    int64_t per = 0;
    nd_error_clear(&ce);
    if (!nd_shape_is_known(example) || nd_shape_numel(example, &per, &ce) != ND_STATUS_OK)
        return bad(call, HEADER_LENGTH,
                   "a raw binary request (%s: 0) needs the model's input shape fully known "
                   "but for the batch; send the JSON header with the input's shape",
                   HEADER_LENGTH);
    size_t ex_bytes = (size_t)per * sizeof(float), body = call->req->body_len;
    if (ex_bytes == 0 || body % ex_bytes != 0)
        return api_fail(&call->err, API_E_INVALID_VALUE, HEADER_LENGTH,
                        "a raw binary request's body (%zu bytes) must be whole FP32 "
                        "examples of %zu bytes each",
                        body, ex_bytes);
    int64_t limit = call->ctx->config.max_elements;
    if (limit > 0 && (int64_t)(body / sizeof(float)) > limit)
        return api_fail(&call->err, API_E_PAYLOAD_TOO_LARGE, HEADER_LENGTH,
                        "the raw binary input holds more than this server's %lld elements "
                        "per tensor",
                        (long long)limit);
    struct nd_shape shape = {.ndim = example->ndim + 1, .dim = {(int64_t)(body / ex_bytes)}};
    memcpy(shape.dim + 1, example->dim, sizeof(int64_t) * (size_t)example->ndim);
    snprintf(r->in[0].name, sizeof r->in[0].name, "input");
    struct tail tail = {call->req->body, body};
    r->nin = 1;
    r->out[0] = (struct oip_output){.index = 0, .binary = true};
    r->nout = 1;
    return input_data_binary(call, (int64_t)body, HEADER_LENGTH, &tail, &r->in[0], DT_FP32, &shape,
                             (int64_t)(body / sizeof(float)));
}

void oip_request_release(struct oip_request *r) {
    for (int i = 0; i < r->nin; i++)
        nd_tensor_deinit(&r->in[i].t);
    r->nin = 0;
}

// ---- the reply ----

void oip_begin_fp32_tensor(struct jw *w, const char *name) {
    jw_obj_begin(w);
    jw_key(w, "name");
    jw_string(w, name);
    jw_key(w, "datatype");
    jw_string(w, "FP32");
    jw_key(w, "shape");
    jw_arr_begin(w);
}

static void write_output(struct jw *w, const char *name, const struct nd_tensor *t, bool binary) {
    oip_begin_fp32_tensor(w, name);
    for (int32_t d = 0; d < t->shape.ndim; d++)
        jw_int(w, t->shape.dim[d]);
    jw_arr_end(w);
    if (binary) {
        jw_key(w, "parameters");
        jw_obj_begin(w);
        jw_key(w, "binary_data_size");
        jw_int(w, t->numel * (int64_t)sizeof(float));
        jw_obj_end(w);
    } else { // the protocol's flat form: row-major, one list
        struct nd_shape flat = {.ndim = 1, .dim = {t->numel}};
        jw_key(w, "data");
        api_tensor_write(w, &(struct nd_tensor){.data = t->data, .shape = flat, .numel = t->numel},
                         API_FORM_NESTED);
    }
    jw_obj_end(w);
}

static void write_reply(struct jw *w, struct api_call *call, const struct oip_route *route,
                        const struct oip_request *r, struct nd_tensor *const *outputs,
                        uint64_t version, bool with_parameters) {
    char v[24];
    snprintf(v, sizeof v, "%llu", (unsigned long long)version);
    jw_obj_begin(w);
    if (r->id) { // first, as the protocol's example and Triton write it
        jw_key(w, "id");
        jw_string(w, r->id);
    }
    jw_key(w, "model_name");
    jw_string(w, call->param[0]);
    jw_key(w, "model_version");
    jw_string(w, v);
    if (with_parameters) {
        jw_key(w, "parameters");
        jw_obj_begin(w);
        jw_key(w, "version");
        jw_uint(w, version);
        jw_obj_end(w);
    }
    jw_key(w, "outputs");
    jw_arr_begin(w);
    for (int k = 0; k < r->nout; k++)
        if (outputs[k])
            write_output(w, route->outputs[r->out[k].index], outputs[k], r->out[k].binary);
    jw_arr_end(w);
    jw_obj_end(w);
}

// Appends the binary outputs' bytes after the JSON already in the response.
static int append_binary(struct api_call *call, const struct oip_request *r,
                         struct nd_tensor *const *outputs, size_t bytes) {
    struct api_response *resp = call->resp;
    size_t json_len = resp->body_len;
    char *body = realloc(resp->body, json_len + bytes + 1);
    if (!body)
        return api_fail(&call->err, API_E_UNAVAILABLE, NULL, NULL);
    resp->body = body;
    for (int k = 0; k < r->nout; k++)
        if (outputs[k] && r->out[k].binary && outputs[k]->numel) {
            size_t n = (size_t)outputs[k]->numel * sizeof(float);
            memcpy(body + resp->body_len, outputs[k]->data, n);
            resp->body_len += n;
        }
    resp->content_type = "application/octet-stream";
    api_reply_header(call, HEADER_LENGTH, "%zu", json_len);
    return API_OK;
}

int oip_reply(struct api_call *call, const struct oip_route *route, const struct oip_request *r,
              struct nd_tensor *const *outputs, uint64_t version, bool with_parameters) {
    size_t bytes = 0, text = 4096;
    for (int k = 0; k < r->nout; k++)
        if (outputs[k] && r->out[k].binary)
            bytes += (size_t)outputs[k]->numel * sizeof(float);
        else if (outputs[k])
            text += api_tensor_text_bound(&outputs[k]->shape, API_FORM_NESTED);
    if (call->inline_only && text > API_INLINE_REPLY_MAX)
        return API_DEFER; // a large reply is never written on an event loop
    if (api_reserve(call, (int64_t)(bytes + text), "this reply") != 0)
        return API_FAIL;
    struct jw w;
    api_writer_init(call, &w);
    write_reply(&w, call, route, r, outputs, version, with_parameters);
    int rc = api_reply_json(call, 200, &w);
    if (rc == API_OK)
        api_reply_etag(call, version);
    bool any_binary = false;
    for (int k = 0; k < r->nout; k++)
        any_binary |= outputs[k] && r->out[k].binary;
    return rc == API_OK && any_binary ? append_binary(call, r, outputs, bytes) : rc;
}
