// fuzz_json_fast.c - api/json_fast.h: the number parser and the pre-jansson array extractor.
//
// 1. api_parse_float on the input's first bytes: what it accepts is exactly the longest
//    RFC 8259 number there (checked by an independent grammar below), its float equals strtof's
//    bit for bit, and it refuses a valid number only when strtof gives a non-finite value.
//    jansson (strtod, a double, then a cast) must agree too, except where rounding twice may
//    legitimately differ: the double lies exactly halfway between two floats (json_fast.h's
//    float_halfway case), and then the float must be one of those two.
// 2. api_fast_extract on the whole input: when jansson parses the original text (with the
//    flags of api/routes.c), it must parse the rewritten one too, to the same tree, each
//    placeholder standing for a tensor holding exactly the numbers of the array it replaced.
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "api/json_fast.h"
#include "tests/fuzz/fuzz_util.h"

#define FAST_MAX_ELEMENTS 64 // small, so the limit is reached often
#define JSON_FLAGS        (JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL) // as api_parse_body

// ---- 1. numbers ----

static size_t digits(const char *s, size_t n, size_t i) {
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    return i;
}

// The longest RFC 8259 number at s, or 0 when the longest candidate is not one (as "01",
// "1.", "1e"): the grammar -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?.
static size_t rfc_number(const char *s, size_t n) {
    size_t i = n > 0 && s[0] == '-';
    if (i >= n || s[i] < '0' || s[i] > '9')
        return 0;
    size_t j = digits(s, n, i);
    if (s[i] == '0' && j > i + 1)
        return 0;
    i = j;
    if (i < n && s[i] == '.') {
        j = digits(s, n, i + 1);
        if (j == i + 1)
            return 0;
        i = j;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        i += i < n && (s[i] == '+' || s[i] == '-');
        j = digits(s, n, i);
        if (j == i)
            return 0;
        i = j;
    }
    return i;
}

// f read from the decimal whose nearest double is d: equal to (float)d, or d is exactly the
// midpoint of f and its neighbour (float)d, where the direct rounding may go either way.
static bool float_matches_double(float f, double d) {
    float g = (float)d;
    if (f == g)
        return true;
    return nextafterf(f, g) == g && ((double)f + (double)g) / 2.0 == d;
}

static void check_against_jansson(const char *s, size_t len, float f) {
    json_error_t jerr;
    json_t *v = json_loadb(s, len, JSON_DECODE_ANY, &jerr);
    if (!v)
        return; // jansson's own range limits (integers past 2^63, reals past DBL_MAX)
    if (json_is_integer(v) && (float)json_integer_value(v) != f)
        FUZZ_FAIL("'%.*s': api %a, jansson integer %lld", (int)len, s, f,
                  (long long)json_integer_value(v));
    if (json_is_real(v) && !float_matches_double(f, json_real_value(v)))
        FUZZ_FAIL("'%.*s': api %a, jansson %a", (int)len, s, f, json_real_value(v));
    json_decref(v);
}

static void check_parse_float(const char *s, size_t n) {
    float f = 0;
    size_t syntax = api_parse_float(s, n, NULL), len = api_parse_float(s, n, &f);
    size_t want = rfc_number(s, n);
    if (syntax != want)
        FUZZ_FAIL("'%.*s': syntax length %zu, RFC 8259 says %zu", (int)n, s, syntax, want);
    if (want == 0) {
        if (len != 0)
            FUZZ_FAIL("'%.*s': accepted %zu bytes of a non-number", (int)n, s, len);
        return;
    }
    char *copy = fuzz_strndup(s, want);
    float ref = strtof(copy, NULL);
    free(copy);
    if (len == 0) {
        if (isfinite(ref))
            FUZZ_FAIL("'%.*s': refused, strtof gives finite %a", (int)want, s, ref);
        return;
    }
    if (len != want)
        FUZZ_FAIL("'%.*s': consumed %zu, the number is %zu bytes", (int)want, s, len, want);
    if (memcmp(&f, &ref, sizeof f) != 0)
        FUZZ_FAIL("'%.*s': api %a, strtof %a", (int)want, s, f, ref);
    check_against_jansson(s, want, f);
}

// ---- 2. the extractor ----

struct walk {
    struct api_fast_tensors *fast;
    bool used[API_FAST_MAX_TENSORS];
};

// One tensor element: a JSON number, or the strings "NaN", "Infinity", "-Infinity".
static bool element_matches(const json_t *v, float f) {
    if (json_is_integer(v))
        return (float)json_integer_value(v) == f;
    if (json_is_real(v))
        return float_matches_double(f, json_real_value(v));
    const char *s = json_string_value(v);
    if (!s)
        return false;
    return (strcmp(s, "NaN") == 0 && isnan(f)) || (strcmp(s, "Infinity") == 0 && f == INFINITY) ||
           (strcmp(s, "-Infinity") == 0 && f == -INFINITY);
}

// The nested array v at level d against t, elements from *k on.
static bool tensor_matches(const json_t *v, const struct nd_tensor *t, int d, int64_t *k) {
    if (d == t->shape.ndim)
        return *k < t->numel && element_matches(v, t->data[(*k)++]);
    if (!json_is_array(v) || (int64_t)json_array_size(v) != t->shape.dim[d])
        return false;
    for (size_t i = 0; i < json_array_size(v); i++)
        if (!tensor_matches(json_array_get(v, i), t, d + 1, k))
            return false;
    return true;
}

static bool same_tree(struct walk *w, const json_t *orig, const json_t *rew) {
    int k;
    const char *s = json_string_value(rew);
    if (s && json_string_length(rew) >= 2 && s[0] == '\0' && !json_is_string(orig)) {
        k = atoi(s + 1); // a placeholder: the array it replaced, read into tensor k
        if (k < 0 || k >= w->fast->count || w->used[k])
            return false;
        w->used[k] = true;
        int64_t at = 0;
        const struct nd_tensor *t = &w->fast->t[k];
        return tensor_matches(orig, t, 0, &at) && at == t->numel;
    }
    if (json_typeof(orig) != json_typeof(rew))
        return false;
    if (json_is_array(orig)) {
        if (json_array_size(orig) != json_array_size(rew))
            return false;
        for (size_t i = 0; i < json_array_size(orig); i++)
            if (!same_tree(w, json_array_get(orig, i), json_array_get(rew, i)))
                return false;
        return true;
    }
    if (json_is_object(orig)) {
        const char *key;
        const json_t *val;
        if (json_object_size(orig) != json_object_size(rew))
            return false;
        json_object_foreach((json_t *)orig, key, val) {
            const json_t *other = json_object_get(rew, key);
            if (!other || !same_tree(w, val, other))
                return false;
        }
        return true;
    }
    return json_equal((json_t *)orig, (json_t *)rew);
}

static void check_extract(const char *data, size_t size) {
    char *text = fuzz_strndup(data, size);
    struct api_fast_tensors fast;
    size_t len = api_fast_extract(text, size, FAST_MAX_ELEMENTS, &fast);
    if (len > size)
        FUZZ_FAIL("rewritten text grew: %zu > %zu", len, size);
    json_error_t jerr;
    json_t *orig = json_loadb(data, size, JSON_FLAGS | JSON_DECODE_ANY, &jerr);
    if (orig) {
        json_t *rew = json_loadb(text, len, JSON_FLAGS | JSON_DECODE_ANY, &jerr);
        if (!rew)
            FUZZ_FAIL("original parses, rewritten does not (%s): '%.*s'", jerr.text, (int)len,
                      text);
        struct walk w = {.fast = &fast};
        if (!same_tree(&w, orig, rew))
            FUZZ_FAIL("rewritten text means something else: '%.*s'", (int)len, text);
        for (int k = 0; k < fast.count; k++)
            if (!w.used[k])
                FUZZ_FAIL("tensor %d has no placeholder in '%.*s'", k, (int)len, text);
        json_decref(rew);
        json_decref(orig);
    }
    api_fast_release(&fast);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_parse_float((const char *)data, size);
    check_extract((const char *)data, size);
    return 0;
}
