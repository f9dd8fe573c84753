// check_json_tensor.c - tensors in and out of JSON and binary bodies (API.md section 3).
#include "tests/check_suites.h"

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/json_tensor.h"
#include "core/init.h"

// ---- helpers ----

static const struct api_tensor_limits no_limit = {.max_elements = 0};

// Parses text as JSON and reads it as the tensor "input"; the error (if any) goes to *err.
static int parse_text(const char *text, const struct api_tensor_limits *limits, struct nd_tensor *t,
                      enum api_tensor_form *form, struct api_error *err) {
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
    ck_assert_msg(j != NULL, "bad test JSON: %s", text);
    api_error_clear(err);
    int rc = api_tensor_from_json(j, limits, "input", t, form, err);
    json_decref(j);
    if (rc != 0) {
        ck_assert_int_ne(err->status, 0);
        ck_assert_ptr_null(t->data);
    }
    return rc;
}

// Parses text, expecting the given failure.
static void expect_error(const char *text, const struct api_tensor_limits *limits, int status,
                         const char *code, const char *field) {
    struct nd_tensor t;
    struct api_error err;
    enum api_tensor_form form;
    ck_assert_msg(parse_text(text, limits, &t, &form, &err) == -1, "accepted: %s", text);
    ck_assert_msg(err.status == status && strcmp(err.code, code) == 0 &&
                      strcmp(err.field, field) == 0,
                  "%s: got %d %s \"%s\" (%s), expected %d %s \"%s\"", text, err.status, err.code,
                  err.field, err.message, status, code, field);
    ck_assert_ptr_null(strchr(err.message, '\n'));
}

// Writes t in form and returns the text (caller frees).
static char *write_text(const struct nd_tensor *t, enum api_tensor_form form) {
    struct jw w;
    jw_init(&w);
    api_tensor_write(&w, t, form);
    char *s = jw_finish(&w, NULL);
    ck_assert_ptr_nonnull(s);
    return s;
}

// Same shape and the same float bits (any NaN equals any NaN: "NaN" carries no payload).
static void assert_same_tensor(const struct nd_tensor *a, const struct nd_tensor *b) {
    ck_assert(nd_shape_equal(&a->shape, &b->shape));
    ck_assert_int_eq(a->numel, b->numel);
    for (int64_t i = 0; i < a->numel; i++) {
        if (isnan(a->data[i]))
            ck_assert(isnan(b->data[i]));
        else
            ck_assert_msg(memcmp(&a->data[i], &b->data[i], sizeof(float)) == 0,
                          "element %lld: %.9g vs %.9g", (long long)i, a->data[i], b->data[i]);
    }
}

// Writes t in form, reads the text back and compares; returns the form read.
static enum api_tensor_form round_trip(const struct nd_tensor *t, enum api_tensor_form form) {
    char *s = write_text(t, form);
    struct nd_tensor back;
    struct api_error err;
    enum api_tensor_form got;
    ck_assert_msg(parse_text(s, &no_limit, &back, &got, &err) == 0, "%s: %s", s, err.message);
    assert_same_tensor(t, &back);
    nd_tensor_deinit(&back);
    free(s);
    return got;
}

// A tensor of the given dims filled with varied values, NaN and infinities among them.
static void make_tensor(struct nd_tensor *t, int ndim, const int64_t *dims, uint64_t seed) {
    struct nd_shape shape = nd_shape_make(ndim, dims);
    ck_assert_int_eq(nd_tensor_init(t, &shape, NULL), ND_STATUS_OK);
    static const float specials[] = {NAN,     INFINITY,     -INFINITY, -0.0f,
                                     FLT_MAX, FLT_TRUE_MIN, 1e-7f,     16777217.0f};
    for (int64_t i = 0; i < t->numel; i++) {
        uint64_t r = nd_splitmix64_next(&seed);
        if (r % 7 == 0)
            t->data[i] = specials[(r >> 8) % 8];
        else
            t->data[i] = (float)((double)(r >> 11) / 9007199254740992.0 * 20 - 10);
    }
}

// JSON text of a base64 tensor of the given bytes.
static char *b64_json(const char *shape, const char *datatype, const void *bytes, size_t n) {
    char *enc = malloc(api_b64_encoded_size(n));
    api_b64_encode(bytes, n, enc);
    size_t size = strlen(enc) + 128;
    char *text = malloc(size);
    snprintf(text, size, "{\"shape\": %s, \"datatype\": \"%s\", \"b64\": \"%s\"}", shape, datatype,
             enc);
    free(enc);
    return text;
}

// ---- core ----

START_TEST(test_nested_in_and_out) {
    struct nd_tensor t;
    struct api_error err;
    enum api_tensor_form form;
    const char *in = "[[1, 2.5, -3], [4e-7, \"NaN\", \"-Infinity\"]]";
    ck_assert_int_eq(parse_text(in, &no_limit, &t, &form, &err), 0);
    ck_assert_int_eq(form, API_FORM_NESTED);
    ck_assert_int_eq(t.shape.ndim, 2);
    ck_assert_int_eq(t.shape.dim[0], 2);
    ck_assert_int_eq(t.shape.dim[1], 3);
    ck_assert(t.flags & ND_TENSOR_OWNS_DATA);
    ck_assert(t.data[1] == 2.5f && t.data[3] == 4e-7f && isnan(t.data[4]));
    ck_assert(isinf(t.data[5]) && t.data[5] < 0);
    char *s = write_text(&t, API_FORM_NESTED);
    ck_assert_str_eq(s, "[[1,2.5,-3],[4e-07,\"NaN\",\"-Infinity\"]]");
    free(s);
    s = write_text(&t, API_FORM_FLAT);
    ck_assert_str_eq(s, "{\"shape\":[2,3],\"data\":[1,2.5,-3,4e-07,\"NaN\",\"-Infinity\"]}");
    free(s);
    s = write_text(&t, API_FORM_B64);
    ck_assert_str_eq(s, "{\"shape\":[2,3],\"datatype\":\"FP32\","
                        "\"b64\":\"AACAPwAAIEAAAEDAlb/WNAAAwH8AAID/\"}");
    free(s);
    nd_tensor_deinit(&t);
}
END_TEST

START_TEST(test_flat_and_b64_in) {
    struct nd_tensor t;
    struct api_error err;
    enum api_tensor_form form;
    ck_assert_int_eq(parse_text("{\"shape\": [3], \"data\": [1, \"Infinity\", 0.25]}", &no_limit,
                                &t, &form, &err),
                     0);
    ck_assert_int_eq(form, API_FORM_FLAT);
    ck_assert(t.data[0] == 1 && isinf(t.data[1]) && t.data[2] == 0.25f);
    nd_tensor_deinit(&t);
    // The conformance suite's base64 FP32 and FP64 inputs.
    const char *fp32 = "{\"shape\": [3, 3], \"datatype\": \"FP32\", \"b64\": "
                       "\"f2p8P2iRjT85tAi/KVzPPkjhqj8ZBJY//KnBv3e+Hz2PwvU9\"}";
    ck_assert_int_eq(parse_text(fp32, &no_limit, &t, &form, &err), 0);
    ck_assert_int_eq(form, API_FORM_B64);
    ck_assert_int_eq(t.numel, 9);
    ck_assert(fabsf(t.data[0] - 0.986f) < 1e-6f && fabsf(t.data[2] - -0.534f) < 1e-6f);
    nd_tensor_deinit(&t);
    const char *fp64 = "{\"shape\": [3], \"datatype\": \"FP64\", "
                       "\"b64\": \"/Knx0k1ioD/jpZvEILDmP99PjZduEuO/\"}";
    ck_assert_int_eq(parse_text(fp64, &no_limit, &t, &form, &err), 0);
    ck_assert(t.data[0] == 0.032f && t.data[1] == 0.709f && t.data[2] == -0.596f);
    nd_tensor_deinit(&t);
    // An optional datatype in the flat form (KServe style), and a lower-case one.
    ck_assert_int_eq(parse_text("{\"shape\": [1], \"data\": [2], \"datatype\": \"fp32\"}",
                                &no_limit, &t, &form, &err),
                     0);
    nd_tensor_deinit(&t);
}
END_TEST

// FP64 values convert to the nearest float; FP64 infinities and NaN stay non-finite.
START_TEST(test_b64_fp64) {
    double d[5] = {0.1, -1e-300, 3.4028235e38, -INFINITY, NAN};
    char *text = b64_json("[5]", "FP64", d, sizeof d);
    struct nd_tensor t;
    struct api_error err;
    enum api_tensor_form form;
    ck_assert_int_eq(parse_text(text, &no_limit, &t, &form, &err), 0);
    ck_assert(t.data[0] == 0.1f && t.data[1] == -0.0f && signbit(t.data[1]));
    ck_assert(t.data[2] == FLT_MAX && isinf(t.data[3]) && isnan(t.data[4]));
    nd_tensor_deinit(&t);
    free(text);
}
END_TEST

START_TEST(test_round_trips) {
    // Every rank from 0 to ND_MAX_DIMS, in every form, and across forms.
    int64_t dims[ND_MAX_DIMS] = {3, 2, 1, 2, 3, 1, 2, 2, 1};
    for (int ndim = 0; ndim <= ND_MAX_DIMS; ndim++) {
        struct nd_tensor t;
        make_tensor(&t, ndim, dims, 100 + (uint64_t)ndim);
        ck_assert_int_eq(round_trip(&t, API_FORM_NESTED), API_FORM_NESTED);
        ck_assert_int_eq(round_trip(&t, API_FORM_FLAT), API_FORM_FLAT);
        ck_assert_int_eq(round_trip(&t, API_FORM_B64), API_FORM_B64);
        nd_tensor_deinit(&t);
    }
    // Nested in, flat out, read, b64 out, read, nested out: the same text as the input.
    const char *in = "[[0.1,-0.0,3.4028235e+38],[1e-45,\"NaN\",\"Infinity\"]]";
    struct nd_tensor a, b, c;
    struct api_error err;
    enum api_tensor_form form;
    ck_assert_int_eq(parse_text(in, &no_limit, &a, &form, &err), 0);
    char *flat = write_text(&a, API_FORM_FLAT);
    ck_assert_int_eq(parse_text(flat, &no_limit, &b, &form, &err), 0);
    char *b64 = write_text(&b, API_FORM_B64);
    ck_assert_int_eq(parse_text(b64, &no_limit, &c, &form, &err), 0);
    char *out = write_text(&c, API_FORM_NESTED);
    ck_assert_str_eq(out, in);
    assert_same_tensor(&a, &c);
    ck_assert(signbit(c.data[1]));
    free(flat);
    free(b64);
    free(out);
    nd_tensor_deinit(&a);
    nd_tensor_deinit(&b);
    nd_tensor_deinit(&c);
}
END_TEST

START_TEST(test_scalars_and_empty) {
    struct nd_tensor t;
    struct api_error err;
    enum api_tensor_form form;
    // A bare number is a rank-0 tensor, and is written back bare.
    ck_assert_int_eq(parse_text("2.5", &no_limit, &t, &form, &err), 0);
    ck_assert_int_eq(t.shape.ndim, 0);
    ck_assert_int_eq(t.numel, 1);
    char *s = write_text(&t, API_FORM_NESTED);
    ck_assert_str_eq(s, "2.5");
    free(s);
    s = write_text(&t, API_FORM_FLAT);
    ck_assert_str_eq(s, "{\"shape\":[],\"data\":[2.5]}");
    free(s);
    nd_tensor_deinit(&t);
    ck_assert_int_eq(parse_text("\"-Infinity\"", &no_limit, &t, &form, &err), 0);
    ck_assert(isinf(t.data[0]));
    nd_tensor_deinit(&t);
    // Empty dimensions: [] is shape [0], [[], []] is [2, 0].
    ck_assert_int_eq(parse_text("[]", &no_limit, &t, &form, &err), 0);
    ck_assert_int_eq(t.shape.ndim, 1);
    ck_assert_int_eq(t.numel, 0);
    nd_tensor_deinit(&t);
    ck_assert_int_eq(parse_text("[[], []]", &no_limit, &t, &form, &err), 0);
    ck_assert_int_eq(t.shape.ndim, 2);
    ck_assert_int_eq(t.shape.dim[0], 2);
    ck_assert_int_eq(t.shape.dim[1], 0);
    round_trip(&t, API_FORM_NESTED);
    nd_tensor_deinit(&t);
    // Shape [0, 3] round-trips through flat and b64; nested lists can only say "[]".
    ck_assert_int_eq(parse_text("{\"shape\": [0, 3], \"data\": []}", &no_limit, &t, &form, &err),
                     0);
    ck_assert_int_eq(t.numel, 0);
    ck_assert_ptr_null(t.data);
    round_trip(&t, API_FORM_FLAT);
    round_trip(&t, API_FORM_B64);
    s = write_text(&t, API_FORM_NESTED);
    ck_assert_str_eq(s, "[]");
    free(s);
    s = write_text(&t, API_FORM_B64);
    ck_assert_str_eq(s, "{\"shape\":[0,3],\"datatype\":\"FP32\",\"b64\":\"\"}");
    free(s);
    nd_tensor_deinit(&t);
}
END_TEST

START_TEST(test_forms_and_headers) {
    ck_assert_str_eq(api_form_name(API_FORM_NESTED), "nested");
    ck_assert_str_eq(api_form_name(API_FORM_FLAT), "flat");
    ck_assert_str_eq(api_form_name(API_FORM_B64), "b64");
    enum api_tensor_form form = API_FORM_NESTED;
    struct api_error err;
    api_error_clear(&err);
    ck_assert_int_eq(api_form_parse("b64", &form, "output_format", &err), 0);
    ck_assert_int_eq(form, API_FORM_B64);
    ck_assert_int_eq(api_form_parse("flat", &form, "output_format", &err), 0);
    ck_assert_int_eq(form, API_FORM_FLAT);
    char buf[64];
    struct nd_shape s = nd_shape_make(3, (int64_t[]){2, 3, 40});
    ck_assert_str_eq(api_shape_header(&s, buf, sizeof buf), "2,3,40");
    struct nd_shape one = nd_shape_make(1, (int64_t[]){0});
    ck_assert_str_eq(api_shape_header(&one, buf, sizeof buf), "0");
    struct nd_shape scalar = nd_shape_make(0, NULL);
    ck_assert_str_eq(api_shape_header(&scalar, buf, sizeof buf), "");
    char tiny[4];
    api_shape_header(&s, tiny, sizeof tiny); // truncated, still terminated
    ck_assert_uint_lt(strlen(tiny), sizeof tiny);
}
END_TEST

START_TEST(test_base64_vectors) {
    // RFC 4648 section 10.
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const coded[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                        "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        size_t n = strlen(plain[i]);
        char enc[16];
        ck_assert_uint_eq(api_b64_encoded_size(n), strlen(coded[i]) + 1);
        api_b64_encode((const unsigned char *)plain[i], n, enc);
        ck_assert_str_eq(enc, coded[i]);
        unsigned char dec[16] = {0};
        ck_assert_int_eq(api_b64_decode(coded[i], strlen(coded[i]), dec), (int64_t)n);
        ck_assert_mem_eq(dec, plain[i], n);
    }
    // Every byte value, and "+" and "/".
    unsigned char all[256], back[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    char enc[400];
    api_b64_encode(all, sizeof all, enc);
    ck_assert_ptr_nonnull(strchr(enc, '+'));
    ck_assert_ptr_nonnull(strchr(enc, '/'));
    ck_assert_int_eq(api_b64_decode(enc, strlen(enc), back), 256);
    ck_assert_mem_eq(all, back, sizeof all);
}
END_TEST

START_TEST(test_binary_body) {
    float data[6] = {1, 2, 3, 4, 5, -0.5f};
    struct nd_tensor t;
    struct api_error err;
    api_error_clear(&err);
    static const char *const headers[] = {"2,3", " 2 , 3 ", "2,\t3", "6", "1,2,1,3,1"};
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(api_tensor_from_binary(data, sizeof data, headers[i], NULL, &t, &err), 0);
        ck_assert_int_eq(t.numel, 6);
        ck_assert(t.data[5] == -0.5f);
        nd_tensor_deinit(&t);
    }
    ck_assert_int_eq(api_tensor_from_binary(data, sizeof data, "2,3", NULL, &t, &err), 0);
    ck_assert_int_eq(t.shape.ndim, 2);
    ck_assert_int_eq(t.shape.dim[1], 3);
    nd_tensor_deinit(&t);
    // No bytes for a shape with no elements.
    ck_assert_int_eq(api_tensor_from_binary(NULL, 0, "0,4", NULL, &t, &err), 0);
    ck_assert_int_eq(t.numel, 0);
    nd_tensor_deinit(&t);
}
END_TEST

// Parsing a nested 32x256 tensor and writing it back costs well under a millisecond; the
// bound here is loose so that sanitizer builds and loaded machines pass.
START_TEST(test_nested_speed) {
    int64_t dims[2] = {32, 256};
    struct nd_tensor t;
    make_tensor(&t, 2, dims, 5);
    char *text = write_text(&t, API_FORM_NESTED);
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    ck_assert_ptr_nonnull(j);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    enum { REPS = 20 };
    for (int r = 0; r < REPS; r++) {
        struct nd_tensor back;
        struct api_error err;
        api_error_clear(&err);
        ck_assert_int_eq(api_tensor_from_json(j, NULL, "input", &back, NULL, &err), 0);
        char *again = write_text(&back, API_FORM_NESTED);
        ck_assert_str_eq(again, text);
        free(again);
        nd_tensor_deinit(&back);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms =
        ((double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6) / REPS;
    ck_assert_msg(ms < 50, "parse + write of 32x256 took %.2f ms", ms);
    json_decref(j);
    free(text);
    nd_tensor_deinit(&t);
}
END_TEST

// ---- limits ----

START_TEST(test_element_limits) {
    struct api_tensor_limits lim = {.max_elements = 6};
    struct nd_tensor t;
    struct api_error err;
    enum api_tensor_form form;
    // Exactly at the limit is fine.
    ck_assert_int_eq(parse_text("[[1,2,3],[4,5,6]]", &lim, &t, &form, &err), 0);
    nd_tensor_deinit(&t);
    lim.max_elements = 5;
    expect_error("[[1,2,3],[4,5,6]]", &lim, 413, "payload_too_large", "input");
    expect_error("{\"shape\": [2, 3], \"data\": [1,2,3,4,5,6]}", &lim, 413, "payload_too_large",
                 "input");
    float f[6] = {0};
    char *text = b64_json("[6]", "FP32", f, sizeof f);
    expect_error(text, &lim, 413, "payload_too_large", "input");
    free(text);
    api_error_clear(&err);
    ck_assert_int_eq(api_tensor_from_binary(f, sizeof f, "2,3", &lim, &t, &err), -1);
    ck_assert_int_eq(err.status, 413);
    ck_assert_str_eq(err.code, "payload_too_large");
    ck_assert_str_eq(err.field, "X-Tensor-Shape");
}
END_TEST

// Shapes that claim far more than the payload holds fail before any allocation (an attempt
// to allocate 4e18 bytes would fail the test under ASan, and take long elsewhere).
START_TEST(test_huge_claims) {
    struct api_tensor_limits lim = {.max_elements = 1 << 20};
    expect_error("{\"shape\": [1e9, 1e9], \"data\": [1, 2]}", &lim, 413, "payload_too_large",
                 "input");
    // With no limit the data length gives it away, still before allocating.
    expect_error("{\"shape\": [1e9, 1e9], \"data\": [1, 2]}", &no_limit, 422, "shape_mismatch",
                 "input.data");
    expect_error("{\"shape\": [100000, 100000], \"datatype\": \"FP32\", \"b64\": \"AAAAAA==\"}",
                 &no_limit, 422, "shape_mismatch", "input.b64");
    // Products beyond int64 and dimensions beyond it.
    expect_error("{\"shape\": [4294967296, 4294967296, 4], \"data\": []}", &no_limit, 413,
                 "payload_too_large", "input");
    expect_error("{\"shape\": [1e300], \"data\": []}", &no_limit, 413, "payload_too_large",
                 "input.shape[0]");
    // Overflow is judged left to right, as the engine's nd_shape_numel does, so a later 0 does
    // not rescue a shape.
    expect_error("{\"shape\": [4611686018427387904, 4611686018427387904, 0], \"data\": []}",
                 &no_limit, 413, "payload_too_large", "input");
    struct nd_tensor t;
    struct api_error err;
    api_error_clear(&err);
    float f[2] = {0};
    ck_assert_int_eq(api_tensor_from_binary(f, sizeof f, "100000,100000", NULL, &t, &err), -1);
    ck_assert_int_eq(err.status, 422);
    ck_assert_str_eq(err.code, "shape_mismatch");
    api_error_clear(&err);
    ck_assert_int_eq(api_tensor_from_binary(f, sizeof f, "4294967296,4294967296,4", NULL, &t, &err),
                     -1);
    ck_assert_int_eq(err.status, 413);
    api_error_clear(&err);
    ck_assert_int_eq(api_tensor_from_binary(f, sizeof f, "99999999999999999999", NULL, &t, &err),
                     -1);
    ck_assert_int_eq(err.status, 413);
}
END_TEST

START_TEST(test_rank_limits) {
    struct nd_tensor t;
    struct api_error err;
    enum api_tensor_form form;
    ck_assert_int_eq(parse_text("[[[[[[[[[1]]]]]]]]]", &no_limit, &t, &form, &err), 0);
    ck_assert_int_eq(t.shape.ndim, 9);
    nd_tensor_deinit(&t);
    expect_error("[[[[[[[[[[1]]]]]]]]]]", &no_limit, 422, "invalid_value", "input");
    expect_error("{\"shape\": [1,1,1,1,1,1,1,1,1,1], \"data\": [1]}", &no_limit, 422,
                 "invalid_value", "input.shape");
    api_error_clear(&err);
    float f = 1;
    ck_assert_int_eq(api_tensor_from_binary(&f, 4, "1,1,1,1,1,1,1,1,1,1", NULL, &t, &err), -1);
    ck_assert_int_eq(err.status, 400);
    ck_assert_int_eq(api_tensor_from_binary(&f, 4, "1,1,1,1,1,1,1,1,1", NULL, &t, &err), 0);
    nd_tensor_deinit(&t);
}
END_TEST

// Finite values beyond float32 are rejected; those that round to FLT_MAX are not.
START_TEST(test_float_range) {
    struct nd_tensor t;
    struct api_error err;
    enum api_tensor_form form;
    ck_assert_int_eq(
        parse_text("[3.4028235e38, -3.40282356e38, 1e-50]", &no_limit, &t, &form, &err), 0);
    ck_assert(t.data[0] == FLT_MAX && t.data[1] == -FLT_MAX && t.data[2] == 0);
    nd_tensor_deinit(&t);
    expect_error("[1, 3.4028236e38]", &no_limit, 422, "invalid_value", "input[1]");
    expect_error("[[1], [-1e39]]", &no_limit, 422, "invalid_value", "input[1][0]");
    expect_error("{\"shape\": [2], \"data\": [1e300, 1]}", &no_limit, 422, "invalid_value",
                 "input.data[0]");
    double d[2] = {1, 1e300};
    char *text = b64_json("[2]", "FP64", d, sizeof d);
    expect_error(text, &no_limit, 422, "invalid_value", "input.b64");
    free(text);
}
END_TEST

// ---- errors ----

START_TEST(test_not_rectangular) {
    expect_error("[[1, 2], [3]]", &no_limit, 422, "shape_mismatch", "input[1]");
    expect_error("[[1, 2], 3]", &no_limit, 422, "shape_mismatch", "input[1]");
    expect_error("[1, [2]]", &no_limit, 422, "shape_mismatch", "input[1]");
    expect_error("[[[1], [2]], [[3], [4, 5]]]", &no_limit, 422, "shape_mismatch", "input[1][1]");
    expect_error("[[[1], [2]], [[3], [[4]]]]", &no_limit, 422, "shape_mismatch", "input[1][1][0]");
    expect_error("[[], [1]]", &no_limit, 422, "shape_mismatch", "input[1]");
}
END_TEST

START_TEST(test_wrong_types) {
    expect_error("[1, true]", &no_limit, 400, "invalid_type", "input[1]");
    expect_error("[[1, null]]", &no_limit, 400, "invalid_type", "input[0][1]");
    expect_error("[1, \"nan\"]", &no_limit, 400, "invalid_type", "input[1]");
    expect_error("[1, {}]", &no_limit, 400, "invalid_type", "input[1]");
    expect_error("null", &no_limit, 400, "invalid_type", "input");
    expect_error("true", &no_limit, 400, "invalid_type", "input");
    expect_error("\"abc\"", &no_limit, 400, "invalid_type", "input");
    expect_error("{\"shape\": \"2\", \"data\": [1, 2]}", &no_limit, 400, "invalid_type",
                 "input.shape");
    expect_error("{\"shape\": [\"2\"], \"data\": [1, 2]}", &no_limit, 400, "invalid_type",
                 "input.shape[0]");
    expect_error("{\"shape\": [2], \"data\": \"1,2\"}", &no_limit, 400, "invalid_type",
                 "input.data");
    expect_error("{\"shape\": [2], \"data\": [1, [2]]}", &no_limit, 400, "invalid_type",
                 "input.data[1]");
    expect_error("{\"shape\": [2], \"data\": [1, false]}", &no_limit, 400, "invalid_type",
                 "input.data[1]");
    expect_error("{\"shape\": [1], \"datatype\": 32, \"b64\": \"AAAAAA==\"}", &no_limit, 400,
                 "invalid_type", "input.datatype");
    expect_error("{\"shape\": [1], \"datatype\": \"FP32\", \"b64\": [0]}", &no_limit, 400,
                 "invalid_type", "input.b64");
}
END_TEST

START_TEST(test_bad_object_forms) {
    expect_error("{\"shape\": [1], \"data\": [1], \"dtype\": \"FP32\"}", &no_limit, 422,
                 "unknown_field", "input.dtype");
    expect_error("{\"shape\": [1], \"datatype\": \"FP32\", \"b64\": \"AAAAAA==\", \"data\": [1]}",
                 &no_limit, 422, "unknown_field", "input.data");
    expect_error("{\"shape\": [1]}", &no_limit, 422, "invalid_value", "input.data");
    expect_error("{}", &no_limit, 422, "invalid_value", "input.data");
    expect_error("{\"data\": [1]}", &no_limit, 422, "invalid_value", "input.shape");
    expect_error("{\"shape\": [-1], \"data\": []}", &no_limit, 422, "invalid_value",
                 "input.shape[0]");
    expect_error("{\"shape\": [2.5], \"data\": [1, 2]}", &no_limit, 422, "invalid_value",
                 "input.shape[0]");
    expect_error("{\"shape\": [2, 2], \"data\": [1, 2, 3]}", &no_limit, 422, "shape_mismatch",
                 "input.data");
    expect_error("{\"shape\": [1], \"b64\": \"AAAAAA==\"}", &no_limit, 422, "invalid_value",
                 "input.datatype");
    expect_error("{\"shape\": [1], \"datatype\": \"INT8\", \"b64\": \"AA==\"}", &no_limit, 422,
                 "invalid_value", "input.datatype");
    // A real dimension that is an integer is fine.
    struct nd_tensor t;
    struct api_error err;
    enum api_tensor_form form;
    ck_assert_int_eq(parse_text("{\"shape\": [2.0], \"data\": [1, 2]}", &no_limit, &t, &form, &err),
                     0);
    nd_tensor_deinit(&t);
}
END_TEST

START_TEST(test_bad_base64) {
    const char *head = "{\"shape\": [2], \"datatype\": \"FP32\", \"b64\": ";
    static const struct {
        const char *b64, *code;
    } cases[] = {
        {"\"AAAAAAAA\"", "shape_mismatch"},         // 6 bytes where 8 are needed
        {"\"AAAAAAAAAA==\"", "shape_mismatch"},     // 7 bytes
        {"\"AAAAAAAAAAAAAA==\"", "shape_mismatch"}, // 10 bytes
        {"\"AAAAAAAAAAA\"", "invalid_value"},       // no padding
        {"\"AAAA AAAAAA=\"", "invalid_value"},      // a space
        {"\"AAAA\\nAAAAAA=\"", "invalid_value"},    // a newline
        {"\"AAAA!AAAAAA=\"", "invalid_value"},      // not in the alphabet
        {"\"AA=AAAAAAAA=\"", "invalid_value"},      // padding inside
        {"\"AAAAAAAAA-_=\"", "invalid_value"},      // the URL-safe alphabet
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "%s%s}", head, cases[i].b64);
        expect_error(text, &no_limit, 422, cases[i].code, "input.b64");
    }
    unsigned char out[8];
    ck_assert_int_eq(api_b64_decode("Zm9", 3, out), -1);
    ck_assert_int_eq(api_b64_decode("Zg=a", 4, out), -1);
    ck_assert_int_eq(api_b64_decode("Z===", 4, out), -1);
    ck_assert_int_eq(api_b64_decode("====", 4, out), -1);
    ck_assert_int_eq(api_b64_decode("Zm9v\xff\xff==", 8, out), -1);
}
END_TEST

START_TEST(test_bad_shape_header) {
    float f[6] = {0};
    static const char *const bad[] = {"",   " ",   "2,,3", "2,3,", ",2",  "a",   "-1",
                                      "+2", "2;3", "2 3",  "2.0",  "0x2", "2,3x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct nd_tensor t;
        struct api_error err;
        api_error_clear(&err);
        ck_assert_int_eq(api_tensor_from_binary(f, sizeof f, bad[i], NULL, &t, &err), -1);
        ck_assert_msg(err.status == 400 && strcmp(err.code, "malformed_body") == 0, "\"%s\": %d %s",
                      bad[i], err.status, err.code);
        ck_assert_str_eq(err.field, "X-Tensor-Shape");
        ck_assert_ptr_null(t.data);
    }
    struct nd_tensor t;
    struct api_error err;
    api_error_clear(&err);
    ck_assert_int_eq(api_tensor_from_binary(f, sizeof f, NULL, NULL, &t, &err), -1);
    ck_assert_int_eq(err.status, 400);
    ck_assert_str_eq(err.field, "X-Tensor-Shape");
    // Byte counts that do not match the shape.
    static const size_t lens[] = {20, 23, 25, 0};
    for (int i = 0; i < 4; i++) {
        api_error_clear(&err);
        ck_assert_int_eq(api_tensor_from_binary(f, lens[i], "2,3", NULL, &t, &err), -1);
        ck_assert_int_eq(err.status, 422);
        ck_assert_str_eq(err.code, "shape_mismatch");
        ck_assert_str_eq(err.field, "X-Tensor-Shape");
    }
}
END_TEST

START_TEST(test_bad_form_name) {
    enum api_tensor_form form = API_FORM_FLAT;
    struct api_error err;
    api_error_clear(&err);
    ck_assert_int_eq(api_form_parse("binary", &form, "output_format", &err), -1);
    ck_assert_int_eq(err.status, 422);
    ck_assert_str_eq(err.code, "invalid_value");
    ck_assert_str_eq(err.field, "output_format");
    ck_assert_int_eq(form, API_FORM_FLAT);
    api_error_clear(&err);
    ck_assert_int_eq(api_form_parse(NULL, &form, "output_format", &err), -1);
    ck_assert_int_eq(err.status, 422);
    // A NULL value or field name.
    struct nd_tensor t;
    api_error_clear(&err);
    ck_assert_int_eq(api_tensor_from_json(NULL, NULL, NULL, &t, NULL, &err), -1);
    ck_assert_int_eq(err.status, 400);
    ck_assert_str_eq(err.field, "");
}
END_TEST

Suite *json_tensor_suite(void) {
    Suite *s = suite_create("json_tensor");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_nested_in_and_out);
    tcase_add_test(tc, test_flat_and_b64_in);
    tcase_add_test(tc, test_b64_fp64);
    tcase_add_test(tc, test_round_trips);
    tcase_add_test(tc, test_scalars_and_empty);
    tcase_add_test(tc, test_forms_and_headers);
    tcase_add_test(tc, test_base64_vectors);
    tcase_add_test(tc, test_binary_body);
    tcase_add_test(tc, test_nested_speed);
    suite_add_tcase(s, tc);
    TCase *tl = tcase_create("limits");
    tcase_add_test(tl, test_element_limits);
    tcase_add_test(tl, test_huge_claims);
    tcase_add_test(tl, test_rank_limits);
    tcase_add_test(tl, test_float_range);
    suite_add_tcase(s, tl);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, test_not_rectangular);
    tcase_add_test(te, test_wrong_types);
    tcase_add_test(te, test_bad_object_forms);
    tcase_add_test(te, test_bad_base64);
    tcase_add_test(te, test_bad_shape_header);
    tcase_add_test(te, test_bad_form_name);
    suite_add_tcase(s, te);
    return s;
}
