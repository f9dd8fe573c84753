// fuzz_tensor.c - api/json_tensor.h: tensors from JSON and from binary bodies, and back.
//
// Input: the first byte picks the reader (even: JSON, odd: binary); for JSON the rest is the
// text jansson parses (flags of api/routes.c); for binary it is "SHAPE\nBYTES": the
// X-Tensor-Shape header value up to the first newline, the body after it.
// Oracles: a refusal is a 4xx (413 only with payload_too_large) with a code and a NUL-ended
// message; an accepted tensor has numel = the product of its dims <= the limit, and written
// in each form (api_tensor_write) and read back it gives the same shape and the same bits
// (any NaN for a NaN: JSON carries no payloads).
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "api/json_tensor.h"
#include "api/jw.h"
#include "tests/fuzz/fuzz_util.h"

#define LIMIT      256 // elements: small, so the 413 path is reached often
#define JSON_FLAGS (JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY)

static const struct api_tensor_limits limits = {.max_elements = LIMIT};

static void check_error(const struct api_error *err) {
    if (err->status < 400 || err->status > 499 || !err->code)
        FUZZ_FAIL("a refused tensor gave status %d code %s", err->status,
                  err->code ? err->code : "(null)");
    if (err->status == 413 && strcmp(err->code, "payload_too_large") != 0)
        FUZZ_FAIL("413 with code %s", err->code);
    if (!memchr(err->message, '\0', sizeof err->message) ||
        !memchr(err->field, '\0', sizeof err->field))
        FUZZ_FAIL("error message or field not NUL-terminated");
}

static void check_tensor(const struct nd_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->shape.ndim; d++) {
        if (t->shape.dim[d] < 0)
            FUZZ_FAIL("negative dim %lld", (long long)t->shape.dim[d]);
        n = t->shape.dim[d] == 0 || n == 0 ? 0 : n * t->shape.dim[d];
    }
    if (t->shape.ndim < 0 || t->shape.ndim > ND_MAX_DIMS || n != t->numel || t->numel > LIMIT)
        FUZZ_FAIL("tensor of rank %d, numel %lld (product %lld)", t->shape.ndim,
                  (long long)t->numel, (long long)n);
    if (t->numel > 0 && !t->data)
        FUZZ_FAIL("numel %lld with no data", (long long)t->numel);
}

static bool same_bits(float a, float b) {
    return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0;
}

// t written in form and read back: the same shape and values.
static void round_trip(const struct nd_tensor *t, enum api_tensor_form form) {
    struct jw w;
    jw_init(&w);
    api_tensor_write(&w, t, form);
    size_t len;
    char *text = jw_finish(&w, &len);
    if (!text)
        FUZZ_FAIL("writer failed for a %lld-element tensor", (long long)t->numel);
    json_error_t jerr;
    json_t *v = json_loadb(text, len, JSON_FLAGS, &jerr);
    if (!v)
        FUZZ_FAIL("%s form does not parse (%s): %s", api_form_name(form), jerr.text, text);
    struct nd_tensor back;
    struct api_error err;
    api_error_clear(&err);
    enum api_tensor_form got;
    if (api_tensor_from_json(v, &limits, "t", &back, &got, &err) != 0)
        FUZZ_FAIL("%s form does not read back (%s): %s", api_form_name(form), err.message, text);
    // The nested form cannot carry the inner dims of an empty tensor ([0, 3] is written []),
    // so for it only the element count must survive.
    bool shape_ok =
        nd_shape_equal(&back.shape, &t->shape) || (form == API_FORM_NESTED && t->numel == 0);
    if (got != form || !shape_ok || back.numel != t->numel)
        FUZZ_FAIL("%s form read back as %s, another shape: %s", api_form_name(form),
                  api_form_name(got), text);
    for (int64_t i = 0; i < t->numel; i++)
        if (!same_bits(back.data[i], t->data[i]))
            FUZZ_FAIL("%s form: element %lld %a read back as %a: %s", api_form_name(form),
                      (long long)i, t->data[i], back.data[i], text);
    nd_tensor_deinit(&back);
    json_decref(v);
    free(text);
}

static void accepted(const struct nd_tensor *t) {
    check_tensor(t);
    round_trip(t, API_FORM_NESTED);
    round_trip(t, API_FORM_FLAT);
    round_trip(t, API_FORM_B64);
}

static void from_json(const char *text, size_t len) {
    json_error_t jerr;
    json_t *v = json_loadb(text, len, JSON_FLAGS, &jerr);
    if (!v)
        return;
    struct nd_tensor t;
    struct api_error err;
    api_error_clear(&err);
    if (api_tensor_from_json(v, &limits, "input", &t, NULL, &err) == 0)
        accepted(&t);
    else
        check_error(&err);
    nd_tensor_deinit(&t);
    json_decref(v);
}

static void from_binary(const char *data, size_t len) {
    const char *nl = memchr(data, '\n', len);
    size_t hlen = nl ? (size_t)(nl - data) : len;
    char *header = fuzz_strndup(data, hlen);
    const char *body = nl ? nl + 1 : data + len;
    size_t blen = (size_t)(data + len - body);
    char *copy = blen ? malloc(blen) : NULL; // exactly blen bytes: ASan sees any overread
    if (copy)
        memcpy(copy, body, blen);
    struct nd_tensor t;
    struct api_error err;
    api_error_clear(&err);
    if (api_tensor_from_binary(copy, blen, header, &limits, &t, &err) == 0)
        accepted(&t);
    else
        check_error(&err);
    nd_tensor_deinit(&t);
    free(copy);
    free(header);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0)
        return 0;
    if (data[0] & 1)
        from_binary((const char *)data + 1, size - 1);
    else
        from_json((const char *)data + 1, size - 1);
    return 0;
}
