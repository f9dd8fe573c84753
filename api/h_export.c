// h_export.c - a layer leaves and comes back whole: GET /v1/layers/{name}/export and
// POST /v1/layers/{name}/import (API.md 2.4).
//
// Binary (Accept / Content-Type: application/octet-stream): core/export.h's container, the
// layer's stored file with its shared arrays' files. JSON:
//
//   {"format": "normd-layer", "format_version": 1,
//    "name": "bn1",                         the exported layer's (an import takes the path's)
//    "definition": {...},                   as POST /v1/layers takes it, every option at its
//                                           effective value, no "name", arrays only null
//                                           (disabled) or {"shared": NAME}
//    "seed": "12345678901234567890",        the layer's seed (decimal string: 64 bits)
//    "arrays": {"Scaling": {"values": T, "user_set": false, "version": 4} | null, ...},
//    "optimizer_state": {"Scaling": {"kind": "adam", "t": 3, "m": T, "v": T} | null, ...},
//    "counters": {"train_steps": 3, "optimizer_steps": 3},
//    "version": 5}
//
// Tensors are written flat by default ({"shape", "data"} in the shortest decimal text that
// reads back as the same float32: readable, exact, and what every other reply of the API
// writes); ?output_format=b64 gives base64 FP32 (smaller), nested too. An import takes any form.
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "api/tensor_io.h"
#include "core/export.h"

#define FORMAT_NAME    "normd-layer"
#define FORMAT_VERSION 1

static bool wants_binary(const struct api_call *call) {
    const char *accept = api_header(call->req, "Accept");
    return accept && strstr(accept, "application/octet-stream") != NULL;
}

// ---- export: writing ----

// The definition in canonical terms (type, explicit convention, every option): how a layer
// was named (a PyTorch class, a Keras type) is carried by the binary export only.
static void write_definition(struct jw *w, const struct nd_layer_state *s) {
    struct nd_spec canonical = s->spec;
    canonical.type_alias = 0;
    const struct nd_spec *spec = &canonical;
    struct nd_layout lay;
    bool known = spec->input.ndim != ND_RANK_UNKNOWN &&
                 nd_spec_resolve(spec, &spec->input, &lay, NULL) == ND_STATUS_OK;
    char type[32];
    snprintf(type, sizeof type, "%s", nd_layer_type_name(spec->type));
    if (spec->batchnorm_nd > 0) // the alias keeps its rank rule
        snprintf(type, sizeof type, "BatchNorm%dD", (int)spec->batchnorm_nd);
    jw_obj_begin(w);
    jw_key(w, "type");
    jw_string(w, type);
    jw_key(w, "convention");
    jw_string(w, nd_convention_name(spec->convention));
    jw_key(w, "input");
    api_write_shape(w, &spec->input);
    jw_key(w, "options");
    api_write_options(w, spec, known ? &lay : NULL);
    jw_key(w, "arrays");
    jw_obj_begin(w);
    // Disabled moving statistics come from the options (track_running_stats): only Scaling
    // and Biases are disabled by a null here.
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++) {
        if (spec->enabled[id] && !s->arrays[id].shared[0])
            continue;
        jw_key(w, nd_array_name((enum nd_array_id)id));
        if (!spec->enabled[id]) {
            jw_null(w);
            continue;
        }
        jw_obj_begin(w);
        jw_key(w, "shared");
        jw_string(w, s->arrays[id].shared);
        jw_obj_end(w);
    }
    jw_obj_end(w);
    jw_key(w, "learning_rate_multipliers");
    jw_obj_begin(w);
    for (int id = 0; id < nd_spec_array_count(spec); id++) {
        jw_key(w, nd_array_name((enum nd_array_id)id));
        jw_double(w, spec->lr_multiplier[id]);
    }
    jw_obj_end(w);
    if (spec->has_seed) {
        jw_key(w, "seed");
        jw_uint(w, spec->seed);
    }
    jw_obj_end(w);
}

static void write_floats(struct jw *w, const float *v, const struct nd_shape *shape,
                         enum api_tensor_form form) {
    struct nd_tensor t = nd_tensor_view((float *)v, shape);
    api_tensor_write(w, &t, form);
}

static void write_arrays(struct jw *w, const struct nd_layer_state *s, enum api_tensor_form form) {
    jw_obj_begin(w);
    for (int id = 0; id < nd_spec_array_count(&s->spec); id++) {
        const struct nd_layer_state_array *a = &s->arrays[id];
        if (!s->spec.enabled[id])
            continue;
        jw_key(w, nd_array_name((enum nd_array_id)id));
        if (!a->present) {
            jw_null(w);
            continue;
        }
        jw_obj_begin(w);
        jw_key(w, "values");
        api_tensor_write(w, &a->value, form);
        jw_key(w, "user_set");
        jw_bool(w, a->user_set);
        jw_key(w, "version");
        jw_uint(w, a->version);
        jw_obj_end(w);
    }
    jw_obj_end(w);
}

static void write_optimizer_state(struct jw *w, const struct nd_layer_state *s,
                                  enum api_tensor_form form) {
    jw_obj_begin(w);
    for (int id = 0; id < nd_spec_array_count(&s->spec); id++) {
        const struct nd_layer_state_array *a = &s->arrays[id];
        if (!a->present)
            continue;
        jw_key(w, nd_array_name((enum nd_array_id)id));
        if (a->opt.n == 0) {
            jw_null(w);
            continue;
        }
        jw_obj_begin(w);
        jw_key(w, "kind");
        jw_string(w, nd_optimizer_kind_name(a->opt.kind));
        jw_key(w, "t");
        jw_int(w, a->opt.t);
        jw_key(w, "m");
        write_floats(w, a->opt.m, &a->value.shape, form);
        if (a->opt.v) {
            jw_key(w, "v");
            write_floats(w, a->opt.v, &a->value.shape, form);
        }
        jw_obj_end(w);
    }
    jw_obj_end(w);
}

static void write_document(struct jw *w, const struct nd_layer_state *s,
                           enum api_tensor_form form) {
    char seed[24];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)s->seed);
    jw_obj_begin(w);
    jw_key(w, "format");
    jw_string(w, FORMAT_NAME);
    jw_key(w, "format_version");
    jw_int(w, FORMAT_VERSION);
    jw_key(w, "name");
    jw_string(w, s->name);
    jw_key(w, "definition");
    write_definition(w, s);
    jw_key(w, "seed");
    jw_string(w, seed);
    jw_key(w, "arrays");
    write_arrays(w, s, form);
    jw_key(w, "optimizer_state");
    write_optimizer_state(w, s, form);
    jw_key(w, "counters");
    jw_obj_begin(w);
    jw_key(w, "train_steps");
    jw_int(w, s->train_steps);
    jw_key(w, "optimizer_steps");
    jw_int(w, s->optimizer_steps);
    jw_obj_end(w);
    jw_key(w, "version");
    jw_uint(w, s->version);
    jw_obj_end(w);
}

// ---- export: the route ----

// Values of every array the layer holds now, for the memory reservation.
static int64_t layer_values(struct nd_layer *layer) {
    struct nd_layer_info info;
    nd_layer_info(layer, &info);
    int64_t n = 0, k;
    for (int id = 0; id < ND_ARRAY_COUNT; id++)
        if (info.array_shape[id].ndim >= 0 &&
            nd_shape_numel(&info.array_shape[id], &k, NULL) == ND_STATUS_OK)
            n += k;
    return n;
}

static int reply_bytes(struct api_call *call, struct nd_buf *b) {
    if (api_query(call->req, "output_format")) // refused, never ignored (as array reads)
        return api_fail(&call->err, API_E_INVALID_VALUE, "output_format",
                        "output_format applies to JSON replies; Accept asks for the raw "
                        "bytes");
    if (call->ctx->config.max_reply_bytes && b->len > call->ctx->config.max_reply_bytes)
        return api_fail(&call->err, API_E_PAYLOAD_TOO_LARGE, NULL,
                        "the export (%zu bytes) is larger than this server's reply limit", b->len);
    call->resp->status = 200;
    call->resp->body = (char *)b->data; // ownership moves to the response
    call->resp->body_len = b->len;
    call->resp->content_type = "application/octet-stream";
    memset(b, 0, sizeof *b);
    return API_OK;
}

static int reply_document(struct api_call *call, const struct nd_buf *b) {
    enum api_tensor_form form = API_FORM_FLAT;
    const char *text = api_query(call->req, "output_format");
    if (text && api_form_parse(text, &form, "output_format", &call->err) != 0)
        return API_FAIL;
    struct nd_layer_state s;
    struct nd_error ce;
    nd_error_clear(&ce);
    if (nd_layer_state_decode(b->data, b->len, &s, &ce) != ND_STATUS_OK) {
        nd_layer_state_deinit(&s);
        return api_core_error(call, &ce, ""); // a layer the store could not load: a bug
    }
    struct jw w;
    api_writer_init(call, &w);
    write_document(&w, &s, form);
    nd_layer_state_deinit(&s);
    return api_reply_json(call, 200, &w);
}

int api_h_export(struct api_call *call) {
    struct nd_layer *layer;
    if (api_layer_from_path(call, &layer) != 0)
        return API_FAIL;
    // The container (values and moments), its decoded copy and the text, at most 17 bytes a float.
    int64_t n = layer_values(layer);
    bool binary = wants_binary(call);
    int rc = api_reserve(call, binary ? n * 12 + 65536 : n * (24 + 3 * 20) + 65536,
                         "exporting this layer");
    struct nd_buf b = {0};
    struct nd_error ce;
    nd_error_clear(&ce);
    uint64_t version = 0;
    if (rc == 0 && nd_layer_export(layer, &b, &version, &ce) != ND_STATUS_OK)
        rc = api_core_error(call, &ce, "");
    nd_layer_unref(layer);
    if (rc == 0)
        rc = binary ? reply_bytes(call, &b) : reply_document(call, &b);
    if (rc == API_OK)
        api_reply_etag(call, version);
    nd_buf_deinit(&b);
    return rc;
}

// ---- import: reading the JSON document ----

static int expect_object(const json_t *v, const char *field, bool allow_null,
                         struct api_error *err) {
    if (json_is_object(v) || (allow_null && json_is_null(v)))
        return API_OK;
    return api_fail(err, API_E_INVALID_TYPE, field, "%s must be an object%s", field,
                    allow_null ? " or null" : "");
}

static int read_uint(const json_t *v, const char *field, int64_t min, int64_t *out,
                     struct api_error *err) {
    if (api_as_int(v, field, out, err) != 0)
        return API_FAIL;
    if (*out < min)
        return api_fail(err, API_E_INVALID_VALUE, field, "%s must be >= %lld", field,
                        (long long)min);
    return API_OK;
}

static int check_header(const json_t *doc, struct api_error *err) {
    static const char *const keys[] = {
        "format", "format_version",  "name",     "definition", "seed",
        "arrays", "optimizer_state", "counters", "version",    NULL};
    const char *format = NULL, *name = NULL;
    const json_t *v = json_object_get(doc, "format_version");
    if (api_check_keys(doc, keys, "", err) != 0 ||
        api_get_string(doc, "format", "format", &format, err) != 0 ||
        api_get_string(doc, "name", "name", &name, err) != 0)
        return API_FAIL;
    if (!format || strcmp(format, FORMAT_NAME) != 0)
        return api_fail(err, API_E_INVALID_VALUE, "format",
                        "format must be \"" FORMAT_NAME "\" (a layer export)");
    int64_t version;
    if (!v)
        return api_fail(err, API_E_INVALID_VALUE, "format_version", "format_version is required");
    if (api_as_int(v, "format_version", &version, err) != 0)
        return API_FAIL;
    if (version != FORMAT_VERSION)
        return api_fail(err, API_E_INVALID_VALUE, "format_version",
                        "format_version %lld is not supported (this server reads %d)",
                        (long long)version, FORMAT_VERSION);
    return API_OK;
}

// The definition, its fields named under "definition."; values belong in "arrays".
static int read_definition(struct api_call *call, const json_t *doc, struct nd_layer_state *s) {
    const json_t *v = json_object_get(doc, "definition");
    if (!v)
        return api_fail(&call->err, API_E_INVALID_VALUE, "definition", "definition is required");
    if (expect_object(v, "definition", false, &call->err) != 0)
        return API_FAIL;
    struct api_definition d;
    struct api_tensor_limits limits = api_limits(call);
    struct api_error e;
    api_error_clear(&e);
    int rc = api_parse_definition(v, call->param[0], &limits, &call->fast, &d, &e);
    for (int id = 0; rc == 0 && id < ND_ARRAY_COUNT; id++)
        if (d.def.source[id] == ND_ARRAY_SOURCE_VALUE)
            rc = api_fail(&e, API_E_INVALID_VALUE, "arrays",
                          "%s: values go in the "
                          "document's arrays, not in its definition",
                          nd_array_name((enum nd_array_id)id));
    if (rc != 0) {
        char field[API_FIELD_MAX];
        snprintf(field, sizeof field, "definition%s%.100s", e.field[0] ? "." : "", e.field);
        api_error_copy(&call->err, &e, field);
    }
    s->spec = d.def.spec;
    for (int id = 0; id < ND_ARRAY_COUNT; id++)
        snprintf(s->arrays[id].shared, sizeof s->arrays[id].shared, "%s", d.shared[id]);
    snprintf(s->name, sizeof s->name, "%s", call->param[0]);
    api_definition_release(&d);
    return rc;
}

// The layer's seed: a decimal string (or a non-negative integer); absent: the definition's,
// or a fresh one.
static int read_seed(struct api_call *call, const json_t *doc, struct nd_layer_state *s) {
    const json_t *v = json_object_get(doc, "seed");
    s->seed = s->spec.has_seed ? s->spec.seed : nd_engine_next_seed(call->ctx->engine);
    if (!v)
        return API_OK;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        s->seed = (uint64_t)json_integer_value(v);
        return API_OK;
    }
    const char *text = json_string_value(v);
    if (!text)
        return api_fail(&call->err, API_E_INVALID_TYPE, "seed",
                        "seed must be a decimal string or an integer");
    char *end;
    errno = 0;
    unsigned long long x = strtoull(text, &end, 10);
    if (errno || end == text || *end || text[0] < '0' || text[0] > '9')
        return api_fail(&call->err, API_E_INVALID_VALUE, "seed",
                        "seed must be a decimal number below 2^64");
    s->seed = x;
    return API_OK;
}

// The array id of a key of "arrays" or "optimizer_state" (aliases accepted, each array once).
static int read_array_key(const char *key, const struct nd_spec *spec, const char *where,
                          unsigned *seen, enum nd_array_id *id, struct api_error *err) {
    char field[API_FIELD_MAX];
    snprintf(field, sizeof field, "%s.%.100s", where, key);
    if (api_parse_array_name(key, spec->type, field, id, err) != 0)
        return api_error_recode(err, API_E_UNKNOWN_FIELD);
    if (*seen & (1u << *id))
        return api_fail(err, API_E_INVALID_VALUE, field,
                        "%s is given twice (under two of its names)", nd_array_name(*id));
    *seen |= 1u << *id;
    return API_OK;
}

static int read_array_entry(struct api_call *call, const json_t *v, enum nd_array_id id,
                            struct nd_layer_state_array *a) {
    static const char *const keys[] = {"values", "user_set", "version", NULL};
    char field[API_FIELD_MAX];
    snprintf(field, sizeof field, "arrays.%s", nd_array_name(id));
    if (json_is_null(v))
        return API_OK;
    if (expect_object(v, field, true, &call->err) != 0 ||
        api_check_keys(v, keys, field, &call->err) != 0)
        return API_FAIL;
    const json_t *values = json_object_get(v, "values"), *version;
    char sub[API_FIELD_MAX + 16];
    snprintf(sub, sizeof sub, "%s.values", field);
    if (!values)
        return api_fail(&call->err, API_E_INVALID_VALUE, sub, "%s is required", sub);
    struct api_tensor_limits limits = api_limits(call);
    enum api_tensor_form form;
    if (api_tensor_value(&call->fast, values, &limits, sub, &a->value, &form, &call->err) != 0)
        return API_FAIL;
    a->present = true;
    snprintf(sub, sizeof sub, "%s.user_set", field);
    if (api_get_bool(v, "user_set", sub, &a->user_set, &call->err) != 0)
        return API_FAIL;
    int64_t n = 0;
    snprintf(sub, sizeof sub, "%s.version", field);
    if ((version = json_object_get(v, "version")) &&
        read_uint(version, sub, 0, &n, &call->err) != 0)
        return API_FAIL;
    a->version = (uint64_t)n;
    return API_OK;
}

typedef int (*entry_fn)(struct api_call *call, const json_t *v, enum nd_array_id id,
                        struct nd_layer_state_array *a);

// An object keyed by array names (canonical or aliases, each array once), each entry read into
// its array's slot: "arrays" and "optimizer_state" alike.
static int read_per_array(struct api_call *call, const json_t *v, const char *field,
                          struct nd_layer_state *s, entry_fn read_entry) {
    const char *key;
    json_t *value;
    unsigned seen = 0;
    json_object_foreach((json_t *)v, key, value) {
        enum nd_array_id id;
        if (read_array_key(key, &s->spec, field, &seen, &id, &call->err) != 0 ||
            read_entry(call, value, id, &s->arrays[id]) != 0)
            return API_FAIL;
    }
    return API_OK;
}

static int read_arrays(struct api_call *call, const json_t *doc, struct nd_layer_state *s) {
    const json_t *v = json_object_get(doc, "arrays");
    if (!v)
        return api_fail(&call->err, API_E_INVALID_VALUE, "arrays", "arrays is required");
    if (expect_object(v, "arrays", false, &call->err) != 0)
        return API_FAIL;
    return read_per_array(call, v, "arrays", s, read_array_entry);
}

// m or v: a tensor of the array's shape, into dst.
static int read_moment(struct api_call *call, const json_t *v, const char *field,
                       const struct nd_layer_state_array *a, float *dst) {
    struct api_tensor_limits limits = api_limits(call);
    enum api_tensor_form form;
    struct nd_tensor t = {0};
    if (!v)
        return api_fail(&call->err, API_E_INVALID_VALUE, field, "%s is required", field);
    if (api_tensor_value(&call->fast, v, &limits, field, &t, &form, &call->err) != 0)
        return API_FAIL;
    int rc = API_OK;
    char have[96], want[96];
    if (!a->present || !nd_shape_equal(&t.shape, &a->value.shape))
        rc = api_fail(&call->err, API_E_SHAPE_MISMATCH, field, "%s has shape %s, its array %s",
                      field, nd_shape_format(&t.shape, have, sizeof have),
                      a->present ? nd_shape_format(&a->value.shape, want, sizeof want)
                                 : "has no values");
    else if (t.numel > 0)
        memcpy(dst, t.data, (size_t)t.numel * sizeof(float));
    nd_tensor_deinit(&t);
    return rc;
}

static int read_opt_entry(struct api_call *call, const json_t *v, enum nd_array_id id,
                          struct nd_layer_state_array *a) {
    char field[API_FIELD_MAX], sub[API_FIELD_MAX + 16];
    snprintf(field, sizeof field, "optimizer_state.%s", nd_array_name(id));
    if (json_is_null(v))
        return API_OK;
    const char *kind_text = NULL;
    enum nd_optimizer_kind kind;
    int64_t t = 0;
    bool adam;
    struct nd_error ce;
    nd_error_clear(&ce);
    snprintf(sub, sizeof sub, "%s.kind", field);
    if (expect_object(v, field, true, &call->err) != 0 ||
        api_get_string(v, "kind", sub, &kind_text, &call->err) != 0)
        return API_FAIL;
    if (!kind_text || nd_optimizer_kind_parse(kind_text, &kind, &ce) != ND_STATUS_OK)
        return api_fail(&call->err, API_E_INVALID_VALUE, sub, "%s: %s", sub,
                        kind_text ? ce.msg : "a kind is needed");
    adam = kind == ND_OPTIMIZER_ADAM;
    static const char *const sgd_keys[] = {"kind", "t", "m", NULL};
    static const char *const adam_keys[] = {"kind", "t", "m", "v", NULL};
    snprintf(sub, sizeof sub, "%s.t", field);
    const json_t *tv = json_object_get(v, "t");
    if (api_check_keys(v, adam ? adam_keys : sgd_keys, field, &call->err) != 0 ||
        (tv && read_uint(tv, sub, 0, &t, &call->err) != 0))
        return API_FAIL;
    int64_t n = a->present ? a->value.numel : 0;
    if (n > 0 && nd_optim_state_prepare(&a->opt, kind, n, &ce) != ND_STATUS_OK)
        return api_core_error(call, &ce, "");
    a->opt.t = t;
    snprintf(sub, sizeof sub, "%s.m", field);
    if (read_moment(call, json_object_get(v, "m"), sub, a, a->opt.m) != 0)
        return API_FAIL;
    snprintf(sub, sizeof sub, "%s.v", field);
    return adam ? read_moment(call, json_object_get(v, "v"), sub, a, a->opt.v) : API_OK;
}

static int read_optimizer_state(struct api_call *call, const json_t *doc,
                                struct nd_layer_state *s) {
    const json_t *v = json_object_get(doc, "optimizer_state");
    if (!v || json_is_null(v))
        return API_OK;
    if (expect_object(v, "optimizer_state", true, &call->err) != 0)
        return API_FAIL;
    return read_per_array(call, v, "optimizer_state", s, read_opt_entry);
}

static int read_counters(struct api_call *call, const json_t *doc, struct nd_layer_state *s) {
    static const char *const keys[] = {"train_steps", "optimizer_steps", NULL};
    const json_t *c = json_object_get(doc, "counters"), *v;
    const json_t *version = json_object_get(doc, "version");
    int64_t n = 1;
    if (version && read_uint(version, "version", 1, &n, &call->err) != 0)
        return API_FAIL;
    s->version = (uint64_t)n;
    if (!c || json_is_null(c))
        return API_OK;
    if (expect_object(c, "counters", true, &call->err) != 0 ||
        api_check_keys(c, keys, "counters", &call->err) != 0)
        return API_FAIL;
    if ((v = json_object_get(c, "train_steps")) &&
        read_uint(v, "counters.train_steps", 0, &s->train_steps, &call->err) != 0)
        return API_FAIL;
    if ((v = json_object_get(c, "optimizer_steps")) &&
        read_uint(v, "counters.optimizer_steps", 0, &s->optimizer_steps, &call->err) != 0)
        return API_FAIL;
    return API_OK;
}

// The JSON document as a container (checked whole by nd_layer_state_encode).
static int document_bytes(struct api_call *call, struct nd_buf *out) {
    struct nd_layer_state s;
    memset(&s, 0, sizeof s);
    const json_t *doc = call->body;
    int rc = check_header(doc, &call->err);
    if (rc == 0)
        rc = read_definition(call, doc, &s);
    if (rc == 0)
        rc = read_seed(call, doc, &s);
    if (rc == 0)
        rc = read_arrays(call, doc, &s);
    if (rc == 0)
        rc = read_counters(call, doc, &s);
    struct nd_error ce;
    nd_error_clear(&ce);
    // The arrays first (named fields), so that moments are then read against valid arrays.
    if (rc == 0 && nd_layer_state_check(&s, &ce) != ND_STATUS_OK)
        rc = api_core_error(call, &ce, "");
    if (rc == 0)
        rc = read_optimizer_state(call, doc, &s);
    int64_t values = 0;
    for (int id = 0; id < ND_ARRAY_COUNT; id++)
        values += s.arrays[id].value.numel;
    // The layer built aside, its container and the layer decoded from it: values and moments
    if (rc == 0)
        rc = api_reserve(call, values * 12 * 3 + 65536, "importing this layer");
    if (rc == 0 && nd_layer_state_encode(&s, out, &ce) != ND_STATUS_OK)
        rc = api_core_error(call, &ce, "");
    nd_layer_state_deinit(&s);
    return rc;
}

// ---- import: the route ----

int api_h_import(struct api_call *call) {
    uint64_t if_version;
    struct nd_buf doc = {0};
    if (api_if_match(call, &if_version) != 0)
        return API_FAIL;
    if (call->binary) {
        // the carried arrays decoded, and the canonical-form check's second copy
        if (api_reserve(call, (int64_t)call->req->body_len * 3, "importing this layer") != 0)
            return API_FAIL;
    } else if (api_parse_body(call, false) != 0 || document_bytes(call, &doc) != 0) {
        nd_buf_deinit(&doc);
        return API_FAIL;
    }
    const void *bytes = call->binary ? (const void *)call->req->body : doc.data;
    size_t len = call->binary ? call->req->body_len : doc.len;
    struct nd_error ce;
    nd_error_clear(&ce);
    struct nd_layer *layer = NULL;
    bool created = false;
    enum nd_status st =
        nd_registry_import(nd_engine_registry(call->ctx->engine), call->param[0],
                           bytes ? bytes : "", len, if_version, &created, &layer, &ce);
    nd_buf_deinit(&doc);
    if (st == ND_STATUS_PRECONDITION_FAILED)
        snprintf(ce.field, sizeof ce.field, "If-Match");
    if (st == ND_STATUS_INVALID_VALUE && call->binary && !ce.field[0]) // damaged bytes
        return api_fail(&call->err, API_E_MALFORMED_BODY, "body",
                        "the body is not a layer export: %s", ce.msg);
    if (st != ND_STATUS_OK)
        return api_core_error(call, &ce, "");
    if (created)
        api_reply_header(call, "Location", "/v1/layers/%s", nd_layer_name(layer));
    struct jw w;
    jw_init(&w);
    api_reply_etag(call, api_write_layer_info(&w, layer));
    nd_layer_unref(layer);
    return api_reply_json(call, created ? 201 : 200, &w);
}
