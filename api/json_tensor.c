// json_tensor.c - tensors in and out of JSON (API.md section 3), and binary bodies.
//
// Reading checks everything that sizes an allocation first (rank, element count against the
// limit, rectangularity, data or byte length), then allocates once and fills. Writing streams
// into a jw writer with no per-element allocation.
#include "api/json_tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

// Binary forms (base64 and octet-stream bodies) are little-endian and are copied as is.
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "json_tensor.c assumes a little-endian host");

// Finite doubles from here up round to float infinity: FLT_MAX plus half its ulp (the tie goes
// to the even significand, which is 2^128). Values below it round to a finite float, so the
// shortest text of FLT_MAX ("3.4028235e+38", slightly above FLT_MAX) is accepted.
#define FLOAT_OVERFLOW_BOUND 0x1.ffffffp127

// ---- element paths and errors ----

// "input" + "[1][2]" into buf, truncated to API_FIELD_MAX.
static const char *path_index(char buf[API_FIELD_MAX], const char *base, const int64_t *idx,
                              int n) {
    size_t used = (size_t)snprintf(buf, API_FIELD_MAX, "%s", base);
    for (int i = 0; i < n && used < API_FIELD_MAX; i++)
        used += (size_t)snprintf(buf + used, API_FIELD_MAX - used, "[%lld]", (long long)idx[i]);
    return buf;
}

// "input" + ".shape" into buf.
static const char *path_key(char buf[API_FIELD_MAX], const char *base, const char *key) {
    snprintf(buf, API_FIELD_MAX, "%s%s%s", base, base[0] ? "." : "", key);
    return buf;
}

static int element_count_error(struct api_error *err, const char *field, int64_t numel,
                               const struct api_tensor_limits *limits) {
    return api_fail(err, API_E_PAYLOAD_TOO_LARGE, field,
                    "tensor has %lld elements, the limit is %lld", (long long)numel,
                    (long long)limits->max_elements);
}

// The element count of a shape against the limits (<= 0 or NULL: no limit); 413 when over.
// The product overflows as core's nd_shape_numel sees it, left to right, even when a later
// dimension is 0: such a shape would fail in the engine anyway. The lists a nested reply of
// the shape holds (1 + d0 + d0*d1 + ...) count too: [300000000, 3, 0] has no element, yet its
// nested form is 1.2 billion lists, and each is work for the engine and text for the reply.
static int check_numel(const struct nd_shape *shape, const struct api_tensor_limits *limits,
                       const char *field, int64_t *numel, struct api_error *err) {
    int64_t n = 1, lists = 0;
    for (int32_t i = 0; i < shape->ndim; i++) {
        if (__builtin_add_overflow(lists, n, &lists) || !nd_count_mul(n, shape->dim[i], &n))
            return api_fail(err, API_E_PAYLOAD_TOO_LARGE, field,
                            "shape has more elements than a tensor can hold");
    }
    int64_t max = limits ? limits->max_elements : 0;
    if (max > 0 && n > max)
        return element_count_error(err, field, n, limits);
    if (max > 0 && lists > max)
        return api_fail(err, API_E_PAYLOAD_TOO_LARGE, field,
                        "shape has %lld nested lists (1 + d0 + d0*d1 + ...), the limit is "
                        "%lld",
                        (long long)lists, (long long)max);
    *numel = n;
    return API_OK;
}

// Allocates *out for shape (zero elements: data NULL); 503 unavailable when memory runs out.
static int alloc_tensor(struct nd_tensor *out, const struct nd_shape *shape, const char *field,
                        struct api_error *err) {
    struct nd_error core;
    nd_error_clear(&core);
    if (nd_tensor_init(out, shape, &core) != ND_STATUS_OK)
        return api_error_from_core(err, &core, field);
    return API_OK;
}

// ---- elements ----

enum elem_status {
    ELEM_OK,
    ELEM_WRONG_TYPE,   // not a number nor one of the three strings
    ELEM_OUT_OF_RANGE, // finite but beyond float32
    ELEM_LIST,         // a list where a number belongs
};

// One element: an integer, a real, or "NaN" / "Infinity" / "-Infinity".
static inline enum elem_status elem_value(const json_t *v, float *out) {
    switch (json_typeof(v)) {
    case JSON_REAL: {
        double d = json_real_value(v);
        if (fabs(d) >= FLOAT_OVERFLOW_BOUND)
            return ELEM_OUT_OF_RANGE;
        *out = (float)d;
        return ELEM_OK;
    }
    case JSON_INTEGER:
        *out = (float)json_integer_value(v);
        return ELEM_OK;
    case JSON_STRING: {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        if (n == 3 && memcmp(s, "NaN", 3) == 0)
            *out = NAN;
        else if (n == 8 && memcmp(s, "Infinity", 8) == 0)
            *out = INFINITY;
        else if (n == 9 && memcmp(s, "-Infinity", 9) == 0)
            *out = -INFINITY;
        else
            return ELEM_WRONG_TYPE;
        return ELEM_OK;
    }
    case JSON_ARRAY:
        return ELEM_LIST;
    default:
        return ELEM_WRONG_TYPE;
    }
}

// The error of a bad element at field (a path already naming the element).
static int elem_error(struct api_error *err, enum elem_status st, const json_t *v,
                      const char *field, bool nested) {
    switch (st) {
    case ELEM_OUT_OF_RANGE:
        return api_fail(err, API_E_INVALID_VALUE, field, "%g is outside the float32 range",
                        json_real_value(v));
    case ELEM_LIST:
        if (nested)
            return api_fail(err, API_E_SHAPE_MISMATCH, field,
                            "is a list where a number belongs: the nested lists are not "
                            "rectangular");
        return api_fail(err, API_E_INVALID_TYPE, field, "data must be a flat list of numbers");
    default:
        return api_fail(err, API_E_INVALID_TYPE, field,
                        "expected a number or \"NaN\", \"Infinity\", \"-Infinity\"");
    }
}

// ---- nested lists ----

// The shape of a nested list, read along its first elements.
static int nested_shape(const json_t *v, struct nd_shape *shape, const char *field,
                        struct api_error *err) {
    shape->ndim = 0;
    while (json_is_array(v)) {
        if (shape->ndim == ND_MAX_DIMS)
            return api_fail(err, API_E_INVALID_VALUE, field, "has more than %d nested dimensions",
                            ND_MAX_DIMS);
        size_t n = json_array_size(v);
        shape->dim[shape->ndim++] = (int64_t)n;
        if (n == 0)
            break;
        v = json_array_get(v, 0);
    }
    return API_OK;
}

// Checks that every list below v (a list of length shape->dim[d]) has the length of its
// dimension; the leaves are checked while filling. idx holds the path so far.
static int nested_check(const json_t *v, const struct nd_shape *shape, int d, int64_t *idx,
                        const char *field, struct api_error *err) {
    if (d >= shape->ndim - 1)
        return API_OK;
    for (int64_t i = 0; i < shape->dim[d]; i++) {
        const json_t *child = json_array_get(v, (size_t)i);
        idx[d] = i;
        if (!json_is_array(child) || (int64_t)json_array_size(child) != shape->dim[d + 1]) {
            char path[API_FIELD_MAX];
            return api_fail(err, API_E_SHAPE_MISMATCH, path_index(path, field, idx, d + 1),
                            "the nested lists are not rectangular: expected a list of %lld, "
                            "as the first element at this depth",
                            (long long)shape->dim[d + 1]);
        }
        if (nested_check(child, shape, d + 1, idx, field, err) != 0)
            return API_FAIL;
    }
    return API_OK;
}

// Copies the numbers of a checked nested list into data (row-major); *pos is the next slot.
static int nested_fill(const json_t *v, const struct nd_shape *shape, int d, int64_t *idx,
                       float *data, int64_t *pos, const char *field, struct api_error *err) {
    for (int64_t i = 0; i < shape->dim[d]; i++) {
        const json_t *child = json_array_get(v, (size_t)i);
        idx[d] = i;
        if (d < shape->ndim - 1) {
            if (nested_fill(child, shape, d + 1, idx, data, pos, field, err) != 0)
                return API_FAIL;
            continue;
        }
        enum elem_status st = elem_value(child, &data[*pos]);
        if (st != ELEM_OK) {
            char path[API_FIELD_MAX];
            return elem_error(err, st, child, path_index(path, field, idx, d + 1), true);
        }
        (*pos)++;
    }
    return API_OK;
}

// A nested list, or a bare number / special string (rank 0).
static int parse_nested(const json_t *value, const struct api_tensor_limits *limits,
                        const char *field, struct nd_tensor *out, struct api_error *err) {
    struct nd_shape shape;
    int64_t numel, idx[ND_MAX_DIMS] = {0};
    if (nested_shape(value, &shape, field, err) != 0 ||
        check_numel(&shape, limits, field, &numel, err) != 0 ||
        nested_check(value, &shape, 0, idx, field, err) != 0)
        return API_FAIL;
    if (shape.ndim == 0) { // a scalar: check it before allocating
        float x;
        enum elem_status st = elem_value(value, &x);
        if (st != ELEM_OK)
            return elem_error(err, st, value, field, true);
        if (alloc_tensor(out, &shape, field, err) != 0)
            return API_FAIL;
        out->data[0] = x;
        return API_OK;
    }
    if (alloc_tensor(out, &shape, field, err) != 0)
        return API_FAIL;
    int64_t pos = 0;
    if (numel > 0 && nested_fill(value, &shape, 0, idx, out->data, &pos, field, err) != 0) {
        nd_tensor_deinit(out);
        return API_FAIL;
    }
    return API_OK;
}

// ---- object forms: {"shape", "data"} and {"shape", "datatype", "b64"} ----

struct tensor_object {
    const json_t *shape, *data, *datatype, *b64;
};

// Sorts the keys of a tensor object; any key outside its form is 422 unknown_field.
static int object_keys(const json_t *obj, struct tensor_object *t, const char *field,
                       struct api_error *err) {
    *t = (struct tensor_object){0};
    bool is_b64 = json_object_get(obj, "b64") != NULL;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val) {
        if (strcmp(key, "shape") == 0)
            t->shape = val;
        else if (strcmp(key, "datatype") == 0) // optional in the flat form (KServe style)
            t->datatype = val;
        else if (strcmp(key, "b64") == 0)
            t->b64 = val;
        else if (strcmp(key, "data") == 0 && !is_b64)
            t->data = val;
        else {
            char path[API_FIELD_MAX];
            return api_fail(err, API_E_UNKNOWN_FIELD, path_key(path, field, key),
                            is_b64 ? "a base64 tensor has only shape, datatype and b64"
                                   : "a flat tensor has only shape and data");
        }
    }
    return API_OK;
}

// One dimension of a "shape" list: a non-negative integer (an integral real such as 1e9 too).
static int shape_dim(const json_t *v, int64_t *dim, const char *path, struct api_error *err) {
    if (json_is_integer(v)) {
        *dim = json_integer_value(v);
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d < 0) // before the cast: -3e38 is no int64_t
            return api_fail(err, API_E_INVALID_VALUE, path, "dimension %g is negative", d);
        if (d != floor(d) || d >= 0x1p63)
            return api_fail(err, d >= 0x1p63 ? API_E_PAYLOAD_TOO_LARGE : API_E_INVALID_VALUE, path,
                            "dimension %g is not a non-negative integer", d);
        *dim = (int64_t)d;
    } else {
        return api_fail(err, API_E_INVALID_TYPE, path,
                        "a dimension must be a non-negative integer");
    }
    if (*dim < 0)
        return api_fail(err, API_E_INVALID_VALUE, path, "dimension %lld is negative",
                        (long long)*dim);
    return API_OK;
}

static int parse_shape(const json_t *v, struct nd_shape *shape, const char *field,
                       struct api_error *err) {
    char path[API_FIELD_MAX], elem[API_FIELD_MAX];
    path_key(path, field, "shape");
    if (!v)
        return api_fail(err, API_E_INVALID_VALUE, path, "a tensor object needs a shape");
    if (!json_is_array(v))
        return api_fail(err, API_E_INVALID_TYPE, path, "must be a list of non-negative integers");
    size_t n = json_array_size(v);
    if (n > ND_MAX_DIMS)
        return api_fail(err, API_E_INVALID_VALUE, path,
                        "has %zu dimensions, at most %d are supported", n, ND_MAX_DIMS);
    shape->ndim = (int32_t)n;
    for (size_t i = 0; i < n; i++) {
        int64_t at = (int64_t)i;
        if (shape_dim(json_array_get(v, i), &shape->dim[i], path_index(elem, path, &at, 1), err) !=
            0)
            return API_FAIL;
    }
    return API_OK;
}

// "FP32" -> 4, "FP64" -> 8 (case-insensitive); -1 with an error otherwise.
static int datatype_size(const json_t *v, bool required, const char *field, struct api_error *err) {
    char path[API_FIELD_MAX];
    path_key(path, field, "datatype");
    if (!v) {
        if (required)
            return api_fail(err, API_E_INVALID_VALUE, path,
                            "a base64 tensor needs a datatype: \"FP32\" or \"FP64\"");
        return 4;
    }
    static const struct api_enum_name sizes[] = {
        {"FP32", 4, false}, {"FP64", 8, false}, {NULL, 0, false}};
    int size;
    if (!json_is_string(v)) {
        char expected[32];
        return api_fail(err, API_E_INVALID_TYPE, path, "%s must be %s", path,
                        api_enum_expected(sizes, "\"", expected, sizeof expected));
    }
    if (api_parse_enum(json_string_value(v), path, sizes, API_ENUM_NOCASE, &size, err) != API_OK)
        return API_FAIL;
    return size;
}

static int parse_flat(const struct tensor_object *t, const struct nd_shape *shape, int64_t numel,
                      const char *field, struct nd_tensor *out, struct api_error *err) {
    char path[API_FIELD_MAX], elem[API_FIELD_MAX];
    path_key(path, field, "data");
    if (!json_is_array(t->data))
        return api_fail(err, API_E_INVALID_TYPE, path, "must be a flat list of numbers");
    if ((int64_t)json_array_size(t->data) != numel)
        return api_fail(err, API_E_SHAPE_MISMATCH, path, "has %zu values, the shape needs %lld",
                        json_array_size(t->data), (long long)numel);
    if (alloc_tensor(out, shape, field, err) != 0)
        return API_FAIL;
    for (int64_t i = 0; i < numel; i++) {
        const json_t *v = json_array_get(t->data, (size_t)i);
        enum elem_status st = elem_value(v, &out->data[i]);
        if (st != ELEM_OK) {
            elem_error(err, st, v, path_index(elem, path, &i, 1), false);
            nd_tensor_deinit(out);
            return API_FAIL;
        }
    }
    return API_OK;
}

// Length of the bytes a padded base64 text decodes to; -1 when its length is not valid.
static int64_t b64_decoded_length(const char *s, size_t len) {
    if (len % 4 != 0)
        return -1;
    size_t pad = len >= 1 && s[len - 1] == '=' ? (len >= 2 && s[len - 2] == '=' ? 2 : 1) : 0;
    return (int64_t)(len / 4 * 3 - pad);
}

// FP64 bytes (little-endian) to float32, each checked against the float range.
static int fp64_to_float(const unsigned char *bytes, int64_t numel, float *data, const char *path,
                         struct api_error *err) {
    for (int64_t i = 0; i < numel; i++) {
        double d;
        memcpy(&d, bytes + 8 * i, sizeof d);
        if (isfinite(d) && fabs(d) >= FLOAT_OVERFLOW_BOUND)
            return api_fail(err, API_E_INVALID_VALUE, path,
                            "value %lld (%g) is outside the float32 range", (long long)i, d);
        data[i] = (float)d;
    }
    return API_OK;
}

// Decodes the base64 payload into out (allocated here); FP64 goes through a scratch buffer.
static int b64_fill(const char *s, size_t len, int size, int64_t numel, const char *path,
                    struct nd_tensor *out, struct api_error *err) {
    unsigned char *bytes = (unsigned char *)out->data;
    if (size == 8 && numel > 0 && !(bytes = malloc((size_t)numel * 8)))
        return api_fail(err, API_E_UNAVAILABLE, path, "cannot allocate %lld bytes",
                        (long long)numel * 8);
    int rc = API_OK;
    if (api_b64_decode(s, len, bytes) < 0)
        rc = api_fail(err, API_E_INVALID_VALUE, path, "is not valid base64");
    else if (size == 8)
        rc = fp64_to_float(bytes, numel, out->data, path, err);
    if (size == 8)
        free(bytes);
    return rc;
}

static int parse_b64(const struct tensor_object *t, const struct nd_shape *shape, int64_t numel,
                     const char *field, struct nd_tensor *out, struct api_error *err) {
    char path[API_FIELD_MAX];
    int size = datatype_size(t->datatype, true, field, err);
    if (size < 0)
        return API_FAIL;
    path_key(path, field, "b64");
    if (!json_is_string(t->b64))
        return api_fail(err, API_E_INVALID_TYPE, path, "must be a base64 string");
    const char *s = json_string_value(t->b64);
    size_t len = json_string_length(t->b64);
    int64_t got = b64_decoded_length(s, len);
    if (got < 0)
        return api_fail(err, API_E_INVALID_VALUE, path,
                        "is not valid base64: its length is not a multiple of 4");
    size_t want;
    if (!nd_size_mul((size_t)numel, (size_t)size, &want) || (uint64_t)got != want)
        return api_fail(err, API_E_SHAPE_MISMATCH, path,
                        "decodes to %lld bytes, the shape needs %lld values of %d bytes",
                        (long long)got, (long long)numel, size);
    if (alloc_tensor(out, shape, field, err) != 0)
        return API_FAIL;
    if (b64_fill(s, len, size, numel, path, out, err) != 0) {
        nd_tensor_deinit(out);
        return API_FAIL;
    }
    return API_OK;
}

static int parse_object(const json_t *obj, const struct api_tensor_limits *limits,
                        const char *field, struct nd_tensor *out, enum api_tensor_form *form,
                        struct api_error *err) {
    struct tensor_object t;
    struct nd_shape shape;
    int64_t numel;
    if (object_keys(obj, &t, field, err) != 0)
        return API_FAIL;
    if (!t.data && !t.b64) {
        char path[API_FIELD_MAX];
        return api_fail(err, API_E_INVALID_VALUE, path_key(path, field, "data"),
                        "a tensor object needs \"data\" (a flat list) or \"b64\"");
    }
    if (parse_shape(t.shape, &shape, field, err) != 0 ||
        check_numel(&shape, limits, field, &numel, err) != 0)
        return API_FAIL;
    *form = t.b64 ? API_FORM_B64 : API_FORM_FLAT;
    if (t.b64)
        return parse_b64(&t, &shape, numel, field, out, err);
    if (datatype_size(t.datatype, false, field, err) < 0)
        return API_FAIL;
    return parse_flat(&t, &shape, numel, field, out, err);
}

// ---- writing ----

static void write_shape(struct jw *w, const struct nd_shape *shape) {
    jw_arr_begin(w);
    for (int32_t i = 0; i < shape->ndim; i++)
        jw_int(w, shape->dim[i]);
    jw_arr_end(w);
}

// Lists nested per dimension d.. of shape over data (row-major); returns the floats written.
static const float *write_nested(struct jw *w, const float *data, const struct nd_shape *shape,
                                 int d) {
    jw_arr_begin(w);
    if (d == shape->ndim - 1) {
        if (shape->dim[d] > 0) { // an empty tensor's data may be NULL: no offset on it, not even 0
            jw_floats(w, data, shape->dim[d]);
            data += shape->dim[d];
        }
    } else {
        for (int64_t i = 0; i < shape->dim[d]; i++)
            data = write_nested(w, data, shape, d + 1);
    }
    jw_arr_end(w);
    return data;
}

static void write_flat(struct jw *w, const struct nd_tensor *t) {
    jw_obj_begin(w);
    jw_key(w, "shape");
    write_shape(w, &t->shape);
    jw_key(w, "data");
    jw_arr_begin(w);
    jw_floats(w, t->data, t->numel);
    jw_arr_end(w);
    jw_obj_end(w);
}

// The base64 text is built once, quoted, and appended raw: it needs no escaping.
static void write_b64(struct jw *w, const struct nd_tensor *t) {
    jw_obj_begin(w);
    jw_key(w, "shape");
    write_shape(w, &t->shape);
    jw_key(w, "datatype");
    jw_string(w, "FP32");
    jw_key(w, "b64");
    size_t bytes = (size_t)t->numel * sizeof(float);
    size_t n = api_b64_encoded_size(bytes); // chars + NUL
    if (w->limit && (w->len > w->limit || n + 1 > w->limit - w->len)) {
        w->failed = w->too_large = true; // as jw_raw would, before allocating the text
        return;
    }
    char *text = malloc(n + 1);
    if (!text) {
        w->failed = true; // as the writer itself does when it cannot grow
        return;
    }
    text[0] = '"';
    api_b64_encode((const unsigned char *)t->data, bytes, text + 1);
    text[n] = '"';
    jw_raw(w, text, n + 1);
    free(text);
    jw_obj_end(w);
}

// ---- base64 ----

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// 1 + the value of each base64 character; 0 for every other byte.
// clang-format off
static const unsigned char b64_value[256] = {
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  63, 0,  0,  0,  64,
    53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 0,  0,  0,  0,  0,  0,
    0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
    16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 0,  0,  0,  0,  0,
    0,  27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41,
    42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 0,  0,  0,  0,  0,
};
// clang-format on

// Decodes one group of four characters (the last may end in "=" or "=="); returns the bytes
// written or -1.
static int b64_group(const unsigned char *in, bool last, unsigned char *out) {
    int pad = last ? (in[3] == '=') + (in[3] == '=' && in[2] == '=') : 0;
    uint32_t acc = 0;
    for (int i = 0; i < 4 - pad; i++) {
        unsigned v = b64_value[in[i]];
        if (!v)
            return -1;
        acc = acc << 6 | (v - 1);
    }
    acc <<= 6 * pad;
    out[0] = (unsigned char)(acc >> 16);
    if (pad < 2)
        out[1] = (unsigned char)(acc >> 8);
    if (pad < 1)
        out[2] = (unsigned char)acc;
    return 3 - pad;
}

// ---- public functions ----

const char *api_form_name(enum api_tensor_form form) {
    switch (form) {
    case API_FORM_NESTED:
        return "nested";
    case API_FORM_FLAT:
        return "flat";
    case API_FORM_B64:
        return "b64";
    }
    return "nested";
}

int api_form_parse(const char *text, enum api_tensor_form *form, const char *field,
                   struct api_error *err) {
    static const struct api_enum_name forms[] = {{"nested", API_FORM_NESTED, false},
                                                 {"flat", API_FORM_FLAT, false},
                                                 {"b64", API_FORM_B64, false},
                                                 {NULL, 0, false}};
    int v;
    if (api_parse_enum(text, field, forms, 0, &v, err) != API_OK)
        return API_FAIL;
    *form = (enum api_tensor_form)v;
    return API_OK;
}

int api_tensor_from_json(const json_t *value, const struct api_tensor_limits *limits,
                         const char *field, struct nd_tensor *out, enum api_tensor_form *form,
                         struct api_error *err) {
    enum api_tensor_form got = API_FORM_NESTED;
    if (!field)
        field = "";
    *out = (struct nd_tensor){0};
    int rc;
    if (!value)
        rc = api_fail(err, API_E_INVALID_TYPE, field, "a tensor is required");
    else if (json_is_object(value))
        rc = parse_object(value, limits, field, out, &got, err);
    else if (json_is_array(value) || json_is_number(value) || json_is_string(value))
        rc = parse_nested(value, limits, field, out, err);
    else
        rc = api_fail(err, API_E_INVALID_TYPE, field,
                      "expected a tensor: nested lists of numbers, or an object with shape "
                      "and data or b64");
    if (rc == 0 && form)
        *form = got;
    return rc;
}

// One dimension of X-Tensor-Shape: digits with optional spaces around; *p moves past it.
static int header_dim(const char **p, int64_t *dim, struct api_error *err) {
    const char *s = *p;
    while (*s == ' ' || *s == '\t')
        s++;
    if (!(*s >= '0' && *s <= '9'))
        return api_fail(err, API_E_MALFORMED_BODY, "X-Tensor-Shape",
                        "must be comma-separated non-negative integers, such as \"2,3\"");
    int64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++)
        if (!nd_count_mul(v, 10, &v) || __builtin_add_overflow(v, *s - '0', &v))
            return api_fail(err, API_E_PAYLOAD_TOO_LARGE, "X-Tensor-Shape",
                            "a dimension is too large");
    while (*s == ' ' || *s == '\t')
        s++;
    *dim = v;
    *p = s;
    return API_OK;
}

static int parse_shape_header(const char *header, struct nd_shape *shape, struct api_error *err) {
    if (!header)
        return api_fail(err, API_E_MALFORMED_BODY, "X-Tensor-Shape",
                        "a binary tensor needs the X-Tensor-Shape header, such as \"2,3\"");
    const char *p = header;
    shape->ndim = 0;
    for (;;) {
        if (shape->ndim == ND_MAX_DIMS)
            return api_fail(err, API_E_MALFORMED_BODY, "X-Tensor-Shape",
                            "has more than %d dimensions", ND_MAX_DIMS);
        if (header_dim(&p, &shape->dim[shape->ndim++], err) != 0)
            return API_FAIL;
        if (*p == '\0')
            return API_OK;
        if (*p++ != ',')
            return api_fail(err, API_E_MALFORMED_BODY, "X-Tensor-Shape",
                            "must be comma-separated non-negative integers, such as \"2,3\"");
    }
}

int api_tensor_from_binary(const void *body, size_t len, const char *shape_header,
                           const struct api_tensor_limits *limits, struct nd_tensor *out,
                           struct api_error *err) {
    struct nd_shape shape;
    int64_t numel;
    *out = (struct nd_tensor){0};
    if (parse_shape_header(shape_header, &shape, err) != 0 ||
        check_numel(&shape, limits, "X-Tensor-Shape", &numel, err) != 0)
        return API_FAIL;
    if (len % sizeof(float) != 0 || (uint64_t)numel != len / sizeof(float))
        return api_fail(err, API_E_SHAPE_MISMATCH, "X-Tensor-Shape",
                        "the body has %zu bytes, the shape needs %lld float32 values", len,
                        (long long)numel);
    if (len > 0 && (uintptr_t)body % ND_ALIGN == 0) { // read in place: the body outlives the call
        *out = nd_tensor_view((float *)(uintptr_t)body, &shape);
        return API_OK;
    }
    struct nd_error core;
    nd_error_clear(&core);
    if (nd_tensor_init_uninit(out, &shape, &core) != ND_STATUS_OK) // filled just below
        return api_error_from_core(err, &core, "X-Tensor-Shape");
    if (len > 0)
        memcpy(out->data, body, len);
    return API_OK;
}

void api_tensor_write(struct jw *w, const struct nd_tensor *t, enum api_tensor_form form) {
    // One allocation of about the text's size instead of doubling up to it: a forward's reply
    // (90 KB for 8192 floats) was copied by realloc about as many bytes again, onto fresh pages.
    if (form != API_FORM_B64) // base64 text is built apart, and jw_raw sizes it
        jw_reserve_hint(w, api_tensor_text_bound(&t->shape, form));
    switch (form) {
    case API_FORM_FLAT:
        write_flat(w, t);
        return;
    case API_FORM_B64:
        write_b64(w, t);
        return;
    case API_FORM_NESTED:
        break;
    }
    if (t->shape.ndim == 0)
        jw_float(w, t->numel > 0 ? t->data[0] : NAN);
    else
        write_nested(w, t->data, &t->shape, 0);
}

size_t api_tensor_text_bound(const struct nd_shape *shape, enum api_tensor_form form) {
    double n = 1, lists = 0; // in double: a bound, and no overflow to care about
    for (int32_t i = 0; i < shape->ndim; i++) {
        lists += n;
        n *= (double)shape->dim[i];
    }
    double bytes = 64 + 24.0 * shape->ndim; // braces, keys, the shape
    bytes += form == API_FORM_B64 ? n * 4 * 4 / 3 + 4
                                  : n * 17 + (form == API_FORM_NESTED ? lists * 2 : 2);
    return bytes < 0x1p62 ? (size_t)bytes : (size_t)1 << 62;
}

char *api_shape_header(const struct nd_shape *shape, char *buf, size_t size) {
    if (size == 0)
        return buf;
    size_t used = 0;
    buf[0] = '\0';
    for (int32_t i = 0; i < shape->ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? "," : "",
                                 (long long)shape->dim[i]);
    return buf;
}

size_t api_b64_encoded_size(size_t n) {
    return 4 * (n / 3 + (n % 3 != 0)) + 1;
}

void api_b64_encode(const unsigned char *in, size_t n, char *out) {
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *out++ = b64_alphabet[v >> 18];
        *out++ = b64_alphabet[v >> 12 & 63];
        *out++ = b64_alphabet[v >> 6 & 63];
        *out++ = b64_alphabet[v & 63];
    }
    if (i < n) { // one or two bytes left: "xx==" or "xxx="
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        *out++ = b64_alphabet[v >> 18];
        *out++ = b64_alphabet[v >> 12 & 63];
        *out++ = i + 1 < n ? b64_alphabet[v >> 6 & 63] : '=';
        *out++ = '=';
    }
    *out = '\0';
}

// Writes exactly the decoded bytes (never the 3 * len / 4 the header allows for).
int64_t api_b64_decode(const char *in, size_t len, unsigned char *out) {
    if (len % 4 != 0)
        return -1;
    const unsigned char *s = (const unsigned char *)in;
    int64_t n = 0;
    for (size_t i = 0; i < len; i += 4) {
        int got = b64_group(s + i, i + 4 == len, out + n);
        if (got < 0)
            return -1;
        n += got;
    }
    return n;
}
