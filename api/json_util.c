// json_util.c - typed reads of JSON fields with errors that name the field.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api/internal.h"

static const char *json_type_word(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "a list";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

static int type_error(const json_t *v, const char *field, const char *want, struct api_error *err) {
    return api_fail(err, API_E_INVALID_TYPE, field, "%s must be %s, not %s", field, want,
                    json_type_word(v));
}

int api_check_keys(const json_t *obj, const char *const *allowed, const char *prefix,
                   struct api_error *err) {
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)obj, key, value) {
        bool known = false;
        for (int i = 0; allowed[i] && !known; i++)
            known = strcmp(key, allowed[i]) == 0;
        if (!known) {
            char field[API_FIELD_MAX];
            snprintf(field, sizeof field, "%s%s%.100s", prefix ? prefix : "",
                     prefix && prefix[0] ? "." : "", key);
            return api_fail(err, API_E_UNKNOWN_FIELD, field, "unknown field %s", field);
        }
    }
    return API_OK;
}

int api_as_number(const json_t *v, const char *field, double *out, struct api_error *err) {
    if (!json_is_number(v))
        return type_error(v, field, "a number", err);
    *out = json_number_value(v);
    return API_OK;
}

int api_as_int(const json_t *v, const char *field, int64_t *out, struct api_error *err) {
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return API_OK;
    }
    // 3.0 is an integer to a Python or JavaScript client
    if (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v) &&
        fabs(json_real_value(v)) < 9.0e15) {
        *out = (int64_t)json_real_value(v);
        return API_OK;
    }
    return type_error(v, field, "an integer", err);
}

int api_as_bool(const json_t *v, const char *field, bool *out, struct api_error *err) {
    if (!json_is_boolean(v))
        return type_error(v, field, "true or false", err);
    *out = json_is_true(v);
    return API_OK;
}

int api_as_string(const json_t *v, const char *field, const char **out, struct api_error *err) {
    if (!json_is_string(v))
        return type_error(v, field, "a string", err);
    *out = json_string_value(v);
    // Bodies are parsed with JSON_ALLOW_NUL (tensor bytes may hold any value), so a string may
    // carry "\u0000": read as a C string it would end there and lose the rest without a word.
    if (strlen(*out) != json_string_length(v))
        return api_fail(err, API_E_INVALID_VALUE, field, "%s must not contain \\u0000", field);
    return API_OK;
}

int api_get_string(const json_t *obj, const char *key, const char *field, const char **out,
                   struct api_error *err) {
    const json_t *v = json_object_get(obj, key);
    return v ? api_as_string(v, field, out, err) : API_OK;
}

int api_get_bool(const json_t *obj, const char *key, const char *field, bool *out,
                 struct api_error *err) {
    const json_t *v = json_object_get(obj, key);
    return v ? api_as_bool(v, field, out, err) : API_OK;
}

int api_get_number(const json_t *obj, const char *key, const char *field, double *out,
                   struct api_error *err) {
    const json_t *v = json_object_get(obj, key);
    return v ? api_as_number(v, field, out, err) : API_OK;
}

int api_core_error(struct api_call *call, const struct nd_error *err, const char *prefix) {
    return api_error_from_core(&call->err, err, prefix);
}
