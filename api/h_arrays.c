// h_arrays.c - extract (NetExtract), one array of a layer, and shared arrays.
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/internal.h"
#include "api/tensor_io.h"

// The output_format of a JSON body or of the query string (default nested).
static int output_format(struct api_call *call, enum api_tensor_form *form) {
    const char *text = NULL;
    *form = API_FORM_NESTED;
    if (call->body &&
        api_get_string(call->body, "output_format", "output_format", &text, &call->err) != 0)
        return API_FAIL;
    if (!call->body)
        text = api_query(call->req, "output_format");
    return text ? api_form_parse(text, form, "output_format", &call->err) : API_OK;
}

static bool wants_binary(const struct api_call *call) {
    const char *accept = api_header(call->req, "Accept");
    return accept && strstr(accept, "application/octet-stream") != NULL;
}

// ---- extract ----

// Parameters of NetExtract: Epsilon, Momentum (the Wolfram names), Input and Output shapes,
// and any option of the layer's type by its snake_case name.
static bool write_parameter(struct jw *w, const struct nd_layer_info *info, const char *key) {
    const struct nd_layout *lay = info->layout_known ? &info->layout : NULL;
    if (strcmp(key, "Epsilon") == 0)
        return api_write_option_named(w, &info->spec, lay, "epsilon");
    if (strcmp(key, "Momentum") == 0) {
        if (!api_write_option_named(w, &info->spec, lay, "momentum"))
            jw_null(w);
        return true;
    }
    if (strcmp(key, "Input") == 0 || strcmp(key, "Output") == 0) {
        api_write_shape(w, &info->spec.input);
        return true;
    }
    return api_write_option_named(w, &info->spec, lay, key);
}

// Takes from the memory budget what reading array id costs: its copy and its text.
static int reserve_array(struct api_call *call, const struct nd_layer_info *info,
                         enum nd_array_id id) {
    const struct nd_shape *shape = &info->array_shape[id];
    int64_t numel = 0;
    if (shape->ndim < 0 || nd_shape_numel(shape, &numel, NULL) != ND_STATUS_OK)
        return API_OK; // unknown yet: the read fails without allocating
    return api_reserve(call,
                       numel * (int64_t)sizeof(float) +
                           (int64_t)api_tensor_text_bound(shape, API_FORM_NESTED),
                       "reading this array");
}

static int extract_key(struct api_call *call, struct nd_layer *layer,
                       const struct nd_layer_info *info, const char *key, size_t i,
                       enum api_tensor_form form, struct jw *w) {
    char field[64];
    snprintf(field, sizeof field, "keys[%zu]", i);
    enum nd_array_id id;
    struct nd_error ce;
    nd_error_clear(&ce);
    if (nd_array_parse(key, &id, &ce) == ND_STATUS_OK) {
        struct nd_tensor t;
        if (reserve_array(call, info, id) != 0)
            return API_FAIL;
        if (nd_layer_read_array(layer, id, &t, NULL, &ce) != ND_STATUS_OK) {
            api_core_error(call, &ce, "");
            snprintf(call->err.field, sizeof call->err.field, "%s", field);
            return API_FAIL;
        }
        jw_key(w, key);
        api_tensor_write(w, &t, form);
        nd_tensor_deinit(&t);
        return API_OK;
    }
    jw_key(w, key);
    if (!write_parameter(w, info, key))
        return api_fail(&call->err, API_E_INVALID_VALUE, field,
                        "%s has no array or parameter %.60s", nd_layer_name(layer), key);
    return API_OK;
}

// True when key is one of the strings list[0..i).
static bool listed_before(const json_t *list, size_t i, const char *key) {
    for (size_t k = 0; k < i; k++) {
        const char *s = json_string_value(json_array_get(list, k));
        if (s && strcmp(s, key) == 0)
            return true;
    }
    return false;
}

// One array for "All": a tensor, or null when disabled or without values yet.
static int extract_all_array(struct api_call *call, struct nd_layer *layer,
                             const struct nd_layer_info *info, enum nd_array_id id,
                             enum api_tensor_form form, struct jw *w) {
    struct nd_tensor t;
    jw_key(w, nd_array_name(id));
    if (info->enabled[id] && info->array_shape[id].ndim >= 0 && reserve_array(call, info, id) != 0)
        return API_FAIL;
    if (!info->enabled[id] || info->array_shape[id].ndim < 0 ||
        nd_layer_read_array(layer, id, &t, NULL, NULL) != ND_STATUS_OK) {
        jw_null(w);
        return API_OK;
    }
    api_tensor_write(w, &t, form);
    nd_tensor_deinit(&t);
    return API_OK;
}

// The options of the layer's type by their snake_case names, as GET shows them: their names
// are json_layer.c's, read back from its own writer so "All" never misses a new option.
static int extract_all_options(struct api_call *call, const struct nd_layer_info *info,
                               struct jw *w) {
    const struct nd_layout *lay = info->layout_known ? &info->layout : NULL;
    struct jw opts;
    jw_init(&opts);
    api_write_options(&opts, &info->spec, lay);
    size_t len = 0;
    char *text = jw_finish(&opts, &len);
    json_t *obj = text ? json_loadb(text, len, 0, NULL) : NULL;
    free(text);
    if (!obj)
        return api_fail(&call->err, API_E_UNAVAILABLE, NULL, NULL);
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value) {
        jw_key(w, key);
        if (!api_write_option_named(w, &info->spec, lay, key))
            jw_null(w);
    }
    json_decref(obj);
    return API_OK;
}

// "keys": "All": every parameter extract knows (Epsilon, Momentum for a batch norm, Input,
// Output, then each option), and every array of the type.
static int extract_all(struct api_call *call, struct nd_layer *layer,
                       const struct nd_layer_info *info, enum api_tensor_form form, struct jw *w) {
    static const char *const wolfram[] = {"Epsilon", "Momentum", "Input", "Output"};
    bool batch = nd_layer_type_is_batch(info->spec.type);
    for (size_t i = 0; i < sizeof wolfram / sizeof wolfram[0]; i++) {
        if (!batch && strcmp(wolfram[i], "Momentum") == 0)
            continue;
        jw_key(w, wolfram[i]);
        if (!write_parameter(w, info, wolfram[i]))
            jw_null(w);
    }
    int count = nd_spec_array_count(&info->spec);
    for (int id = 0; id < count; id++)
        if (extract_all_array(call, layer, info, (enum nd_array_id)id, form, w) != 0)
            return API_FAIL;
    return extract_all_options(call, info, w);
}

static int extract(struct api_call *call, struct nd_layer *layer) {
    static const char *const keys[] = {"keys", "output_format", "min_version", NULL};
    enum api_tensor_form form;
    if (api_check_keys(call->body, keys, "", &call->err) != 0 || output_format(call, &form) != 0)
        return API_FAIL;
    const json_t *list = json_object_get(call->body, "keys");
    bool all = json_is_string(list) && strcmp(json_string_value(list), "All") == 0;
    // A string other than "All" is a wrong type (a list was meant), as it was before "All".
    if (!json_is_array(list) && !all)
        return api_fail(&call->err, list ? API_E_INVALID_TYPE : API_E_INVALID_VALUE, "keys",
                        "keys must be a list of array or parameter names, or "
                        "\"All\"");
    struct nd_layer_info info;
    nd_layer_info(layer, &info);
    struct jw w;
    api_writer_init(call, &w);
    jw_obj_begin(&w);
    if (all && extract_all(call, layer, &info, form, &w) != 0) {
        jw_free(&w);
        return API_FAIL;
    }
    for (size_t i = 0; !all && i < json_array_size(list); i++) {
        const char *key;
        if (api_as_string(json_array_get(list, i), "keys", &key, &call->err) != 0) {
            jw_free(&w);
            return API_FAIL;
        }
        if (listed_before(list, i, key)) // one JSON key once: the response never repeats one
            continue;
        if (extract_key(call, layer, &info, key, i, form, &w) != 0) {
            jw_free(&w);
            return API_FAIL;
        }
    }
    jw_obj_end(&w);
    api_reply_etag(call, info.version);
    return api_reply_json(call, 200, &w);
}

int api_h_extract(struct api_call *call) {
    if (call->binary)
        return api_fail(&call->err, API_E_UNSUPPORTED_MEDIA_TYPE, "Content-Type",
                        "extract takes JSON");
    struct nd_layer *layer = NULL;
    if (api_parse_body(call, false) != 0 || api_layer_from_path(call, &layer) != 0)
        return API_FAIL;
    int rc = api_layer_at_least(call, &layer);
    if (rc == 0)
        rc = extract(call, layer);
    nd_layer_unref(layer);
    return rc;
}

// ---- one array ----

static int reply_array(struct api_call *call, const char *name, struct nd_tensor *t,
                       uint64_t version) {
    api_reply_etag(call, version);
    if (wants_binary(call) && api_query(call->req, "output_format")) // refused, never ignored
        return api_fail(&call->err, API_E_INVALID_VALUE, "output_format",
                        "output_format applies to JSON replies; Accept asks for the raw "
                        "bytes");
    if (wants_binary(call))
        return api_reply_binary(call, t);
    enum api_tensor_form form;
    if (output_format(call, &form) != 0)
        return API_FAIL;
    struct jw w;
    api_writer_init(call, &w);
    jw_obj_begin(&w);
    jw_key(&w, "name");
    jw_string(&w, name);
    jw_key(&w, "array");
    api_tensor_write(&w, t, form);
    jw_obj_end(&w);
    return api_reply_json(call, 200, &w);
}

static int array_id(struct api_call *call, struct nd_layer *layer, enum nd_array_id *id) {
    struct nd_layer_info info;
    nd_layer_info(layer, &info);
    return api_parse_array_name(call->param[1], info.spec.type, "array", id, &call->err);
}

int api_h_array_get(struct api_call *call) {
    struct nd_layer *layer;
    if (api_layer_from_path(call, &layer) != 0)
        return API_FAIL;
    enum nd_array_id id;
    struct nd_tensor t = {0};
    uint64_t version = 0;
    struct nd_error ce;
    nd_error_clear(&ce);
    struct nd_layer_info info;
    nd_layer_info(layer, &info);
    int rc = api_parse_array_name(call->param[1], info.spec.type, "array", &id, &call->err);
    if (rc == 0)
        rc = reserve_array(call, &info, id);
    if (rc == 0 && nd_layer_read_array(layer, id, &t, &version, &ce) != ND_STATUS_OK)
        rc = api_core_error(call, &ce, "");
    if (rc == 0)
        rc = reply_array(call, nd_array_name(id), &t, version);
    nd_tensor_deinit(&t);
    nd_layer_unref(layer);
    return rc;
}

static int read_array_body(struct api_call *call, struct nd_tensor *value) {
    if (call->binary) {
        enum api_tensor_form form;
        return api_read_input(call, "array", value, &form);
    }
    static const char *const keys[] = {"array", NULL};
    if (api_parse_body(call, false) != 0 || api_check_keys(call->body, keys, "", &call->err) != 0)
        return API_FAIL;
    enum api_tensor_form form;
    return api_read_input(call, "array", value, &form);
}

int api_h_array_put(struct api_call *call) {
    struct nd_layer *layer;
    if (api_layer_from_path(call, &layer) != 0)
        return API_FAIL;
    enum nd_array_id id;
    struct nd_tensor value = {0};
    uint64_t expect, version = 0;
    struct nd_error ce;
    nd_error_clear(&ce);
    int rc = array_id(call, layer, &id);
    if (rc == 0)
        rc = api_if_match(call, &expect);
    if (rc == 0)
        rc = read_array_body(call, &value);
    if (rc == 0 && nd_layer_write_array(layer, id, &value, expect, &version, &ce) != ND_STATUS_OK) {
        rc = api_core_error(call, &ce, "");
        // the body's one field is "array"; If-Match is the header at fault for 412
        snprintf(call->err.field, sizeof call->err.field, "%s",
                 ce.code == ND_STATUS_PRECONDITION_FAILED ? "If-Match" : "array");
    }
    if (rc == 0) {
        struct jw w;
        api_writer_init(call, &w);
        jw_obj_begin(&w);
        jw_key(&w, "name");
        jw_string(&w, nd_array_name(id));
        jw_key(&w, "version");
        jw_uint(&w, version);
        jw_obj_end(&w);
        api_reply_etag(call, version);
        rc = api_reply_json(call, 200, &w);
    }
    nd_tensor_deinit(&value);
    nd_layer_unref(layer);
    return rc;
}

// ---- the list of a layer's arrays ----

// A disabled array is listed too, with an unknown shape (and no shared name: it has none).
static void write_array_entry(struct jw *w, const struct nd_layer_info *info, int id) {
    jw_obj_begin(w);
    jw_key(w, "name");
    jw_string(w, nd_array_name((enum nd_array_id)id));
    if (info->enabled[id]) {
        api_write_array_facts(w, info, (enum nd_array_id)id);
    } else {
        struct nd_shape unknown = {.ndim = ND_RANK_UNKNOWN};
        jw_key(w, "shape");
        api_write_shape(w, &unknown);
        jw_key(w, "learning_rate_multiplier");
        jw_double(w, info->spec.lr_multiplier[id]);
        jw_key(w, "shared");
        jw_null(w);
    }
    jw_key(w, "enabled");
    jw_bool(w, info->enabled[id]);
    jw_obj_end(w);
}

// Every array of the layer's type, disabled ones too (shape null), in canonical order.
int api_h_arrays_list(struct api_call *call) {
    struct nd_layer *layer;
    if (api_layer_from_path(call, &layer) != 0)
        return API_FAIL;
    struct nd_layer_info info;
    nd_layer_info(layer, &info);
    struct jw w;
    api_writer_init(call, &w);
    jw_obj_begin(&w);
    jw_key(&w, "name");
    jw_string(&w, nd_layer_name(layer));
    jw_key(&w, "arrays");
    jw_arr_begin(&w);
    int count = nd_spec_array_count(&info.spec);
    for (int id = 0; id < count; id++)
        write_array_entry(&w, &info, id);
    jw_arr_end(&w);
    jw_key(&w, "version");
    jw_uint(&w, info.version);
    jw_obj_end(&w);
    nd_layer_unref(layer);
    api_reply_etag(call, info.version);
    return api_reply_json(call, 200, &w);
}

// ---- shared arrays ----

int api_h_shared_list(struct api_call *call) {
    struct nd_registry *reg = nd_engine_registry(call->ctx->engine);
    char **names;
    int64_t n;
    struct nd_error ce;
    nd_error_clear(&ce);
    if (nd_registry_shared_list(reg, &names, &n, &ce) != ND_STATUS_OK)
        return api_core_error(call, &ce, "");
    struct jw w;
    api_writer_init(call, &w);
    jw_obj_begin(&w);
    jw_key(&w, "shared_arrays");
    jw_arr_begin(&w);
    for (int64_t i = 0; i < n; i++) {
        jw_string(&w, names[i]);
        nd_free(names[i]);
    }
    nd_free(names);
    jw_arr_end(&w);
    jw_obj_end(&w);
    return api_reply_json(call, 200, &w);
}

static void write_users(struct jw *w, struct nd_registry *reg, const char *name) {
    char **names = NULL;
    int64_t n = 0;
    jw_arr_begin(w);
    if (nd_registry_shared_users(reg, name, &names, &n, NULL) == ND_STATUS_OK) {
        for (int64_t i = 0; i < n; i++) {
            jw_string(w, names[i]);
            nd_free(names[i]);
        }
        nd_free(names);
    }
    jw_arr_end(w);
}

int api_h_shared_get(struct api_call *call) {
    struct nd_registry *reg = nd_engine_registry(call->ctx->engine);
    struct nd_array *array;
    struct nd_tensor t;
    uint64_t version;
    struct nd_error ce;
    nd_error_clear(&ce);
    if (nd_registry_shared_get(reg, call->param[0], &array, &ce) != ND_STATUS_OK)
        return api_core_error(call, &ce, "");
    enum nd_status st = nd_array_read(array, &t, &version, &ce);
    nd_array_unref(array);
    enum api_tensor_form form;
    if (st != ND_STATUS_OK)
        return api_core_error(call, &ce, "");
    if (output_format(call, &form) != 0) {
        nd_tensor_deinit(&t);
        return API_FAIL;
    }
    struct jw w;
    api_writer_init(call, &w);
    jw_obj_begin(&w);
    jw_key(&w, "name");
    jw_string(&w, call->param[0]);
    jw_key(&w, "array");
    api_tensor_write(&w, &t, form);
    jw_key(&w, "layers");
    write_users(&w, reg, call->param[0]);
    jw_key(&w, "version");
    jw_uint(&w, version);
    jw_obj_end(&w);
    nd_tensor_deinit(&t);
    return api_reply_json(call, 200, &w);
}
