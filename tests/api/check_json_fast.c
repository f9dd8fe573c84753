// check_json_fast.c - the numeric fast path: float parsing against strtof, and the extraction
// of arrays from request bodies.
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/json_fast.h"
#include "tests/check_suites.h"
#include "tests/test_rng.h"

static struct test_rng rng = {0x243f6a8885a308d3ull}; // one stream for the file's tests, in order

static uint64_t next(void) {
    return test_rng_next(&rng);
}

static void expect_same_as_strtof(const char *text) {
    float got = 0.0f;
    size_t len = api_parse_float(text, strlen(text), &got);
    float want = strtof(text, NULL);
    if (!isfinite(want)) {
        ck_assert_msg(len == 0, "%s: out of float range must be refused", text);
        return;
    }
    ck_assert_msg(len == strlen(text), "%s: consumed %zu", text, len);
    ck_assert_msg(memcmp(&got, &want, sizeof got) == 0, "%s: got %a, strtof %a", text, got, want);
}

// ---- numbers ----

START_TEST(test_random_decimals_match_strtof) {
    char text[64];
    for (int i = 0; i < 200000; i++) {
        uint64_t digits = 1 + next() % 17, m = next() % 100000000000000000ull;
        for (uint64_t k = digits; k < 17; k++)
            m /= 10;
        int e = (int)(next() % 90) - 50;
        snprintf(text, sizeof text, "%s%llue%d", next() % 2 ? "-" : "", (unsigned long long)m, e);
        expect_same_as_strtof(text);
        snprintf(text, sizeof text, "%llu.%03llu", (unsigned long long)(m % 100000),
                 (unsigned long long)(next() % 1000));
        expect_same_as_strtof(text);
    }
}
END_TEST

START_TEST(test_shortest_forms_round_trip) {
    // What a client prints (%.6g .. %.9g of random floats) reads back bit for bit.
    char text[64];
    for (int i = 0; i < 200000; i++) {
        uint32_t bits = (uint32_t)next();
        float f;
        memcpy(&f, &bits, sizeof f);
        if (!isfinite(f))
            continue;
        for (int p = 6; p <= 9; p++) {
            snprintf(text, sizeof text, "%.*g", p, (double)f);
            expect_same_as_strtof(text);
        }
    }
}
END_TEST

START_TEST(test_ties_take_the_exact_path) {
    // Decimals exactly halfway between two floats, or one digit beside: double rounding would
    // land on the midpoint and round the wrong way without the exact fallback.
    char text[80];
    for (int i = 0; i < 50000; i++) {
        uint32_t bits = (uint32_t)(next() % 0x7f000000u);
        float f, g;
        memcpy(&f, &bits, sizeof f);
        g = nextafterf(f, INFINITY);
        double mid = ((double)f + (double)g) / 2.0;
        snprintf(text, sizeof text, "%.17g", mid);
        expect_same_as_strtof(text);
        snprintf(text, sizeof text, "%.25g", mid);
        expect_same_as_strtof(text);
    }
}
END_TEST

START_TEST(test_edge_values) {
    const char *ok[] = {"0",
                        "-0",
                        "1",
                        "0.1",
                        "3.4028234e38",
                        "1.17549435e-38",
                        "1e-45",
                        "1.4e-45",
                        "7e-46",
                        "123456.78",
                        "16777216",
                        "16777217",
                        "0.000001",
                        "1E3",
                        "2.5e+2",
                        "1e22",
                        "1e23",
                        "9007199254740993",
                        "0.30000000000000004",
                        "4.9999999999999999999999999999999e-1"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        expect_same_as_strtof(ok[i]);
}
END_TEST

START_TEST(test_invalid_syntax_is_refused) {
    const char *bad[] = {"01",  "1.",  ".5",  "+1", "-",   "1e",   "1e+",
                         "--1", "NaN", "inf", "",   "-.5", "1e39", "-1e39"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        float v;
        ck_assert_msg(api_parse_float(bad[i], strlen(bad[i]), &v) == 0, "%s accepted", bad[i]);
    }
    float v;
    ck_assert_uint_eq(api_parse_float("12,", 3, &v), 2);  // stops where the number ends
    ck_assert_uint_eq(api_parse_float("0x10", 4, &v), 1); // "x" then fails the list
    ck_assert_uint_eq(api_parse_float("1.5e3]", 6, NULL), 5);
}
END_TEST

// ---- extraction ----

static char *dup_text(const char *s) {
    char *t = malloc(strlen(s) + 1);
    strcpy(t, s);
    return t;
}

// n numbers (-2.5, -1.5, ...) joined by sep into buf.
static char *numbers(char *buf, int n, const char *sep) {
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        char one[32];
        snprintf(one, sizeof one, "%s%d.5", i ? sep : "", i - 2);
        strcat(buf, one);
    }
    return buf;
}

START_TEST(test_extracts_nested_array) {
    char body[9000], a[4096], b[4096];
    snprintf(body, sizeof body, "{\"input\": [[%s], [%s]], \"mode\": \"train\"}",
             numbers(a, 20, ", "), numbers(b, 20, ",\n "));
    char *text = dup_text(body);
    struct api_fast_tensors fast;
    size_t len = api_fast_extract(text, strlen(text), 1000, &fast);
    ck_assert_int_eq(fast.count, 1);
    ck_assert_int_eq(fast.t[0].shape.ndim, 2);
    ck_assert_int_eq(fast.t[0].shape.dim[0], 2);
    ck_assert_int_eq(fast.t[0].shape.dim[1], 20);
    ck_assert(fast.t[0].data[0] == -2.5f && fast.t[0].data[39] == 17.5f);
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_ALLOW_NUL, &jerr);
    ck_assert_msg(doc != NULL, "%s", jerr.text);
    ck_assert_str_eq(json_string_value(json_object_get(doc, "mode")), "train");
    struct nd_tensor t;
    ck_assert_int_eq(api_fast_take(&fast, json_object_get(doc, "input"), &t), 1);
    ck_assert_int_eq(t.numel, 40);
    ck_assert_int_eq(api_fast_take(&fast, json_object_get(doc, "input"), &t), -1); // taken
    ck_assert_int_eq(api_fast_take(&fast, json_object_get(doc, "mode"), &t), 0);
    nd_tensor_deinit(&t);
    json_decref(doc);
    api_fast_release(&fast);
    free(text);
}
END_TEST

// Arrays the general path must see: mixed, short, flat "data", over the limit, invalid
// numbers, strings that look like arrays.
START_TEST(test_leaves_what_it_cannot_read) {
    char body[9000], a[4096];
    const char *cases[] = {
        "{\"a\": [%s, \"x\"]}",                       // mixed types
        "{\"a\": [%s, 01]}",                          // not JSON
        "{\"a\": {\"shape\": [20], \"data\": [%s]}}", // the flat form
        "{\"a\": \"[%s]\"}",                          // inside a string
        "{\"a\": [%s, 1e39]}",                        // beyond float
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *hole = strstr(cases[c], "%s");
        snprintf(body, sizeof body, "%.*s%s%s", (int)(hole - cases[c]), cases[c],
                 numbers(a, 20, ","), hole + 2);
        char *text = dup_text(body);
        struct api_fast_tensors fast;
        size_t len = api_fast_extract(text, strlen(text), 1000, &fast);
        ck_assert_msg(fast.count == 0, "case %zu extracted", c);
        ck_assert_msg(len == strlen(body) && memcmp(text, body, len) == 0, "case %zu changed", c);
        api_fast_release(&fast);
        free(text);
    }
    snprintf(body, sizeof body, "{\"a\": [%s]}", numbers(a, 10, ","));
    struct api_fast_tensors fast;
    char *text = dup_text(body);
    api_fast_extract(text, strlen(text), 1000, &fast);
    ck_assert_int_eq(fast.count, 0); // short lists stay with jansson
    free(text);
    snprintf(body, sizeof body, "{\"a\": [%s]}", numbers(a, 50, ","));
    text = dup_text(body);
    api_fast_extract(text, strlen(text), 49, &fast);
    ck_assert_int_eq(fast.count, 0); // over max_elements: the general path answers 413
    free(text);
}
END_TEST

START_TEST(test_ragged_list_extracts_its_items) {
    // "inputs" of different lengths: the outer list stays, each long item is read.
    char body[9000], a[4096], b[4096];
    snprintf(body, sizeof body, "{\"inputs\": [[%s], [%s]]}", numbers(a, 20, ","),
             numbers(b, 30, ","));
    char *text = dup_text(body);
    struct api_fast_tensors fast;
    size_t len = api_fast_extract(text, strlen(text), 1000, &fast);
    ck_assert_int_eq(fast.count, 2);
    ck_assert_int_eq(fast.t[1].numel, 30);
    json_t *doc = json_loadb(text, len, JSON_ALLOW_NUL, NULL);
    ck_assert_int_eq((int)json_array_size(json_object_get(doc, "inputs")), 2);
    json_decref(doc);
    api_fast_release(&fast);
    free(text);
}
END_TEST

// 200,000 levels of '[' (a 400 KB body): refused at ND_MAX_DIMS levels without recursing
// further (the scanner overflowed the stack at about 100,000), and left to jansson untouched.
START_TEST(test_deep_nesting_is_refused) {
    size_t depth = 200000, len = 2 * depth + 11;
    char *text = malloc(len + 1);
    memcpy(text, "{\"input\": ", 10);
    memset(text + 10, '[', depth);
    memset(text + 10 + depth, ']', depth);
    memcpy(text + 10 + 2 * depth, "}", 2);
    struct api_fast_tensors fast;
    size_t got = api_fast_extract(text, len, 1000, &fast);
    ck_assert_uint_eq(got, len);
    ck_assert_int_eq(fast.count, 0);
    ck_assert_int_eq(text[10 + depth - 1], '[');
    api_fast_release(&fast);
    free(text);
}
END_TEST

// A tensor nested to exactly ND_MAX_DIMS levels is still read.
START_TEST(test_deepest_tensor_is_read) {
    char text[256] = "";
    for (int d = 0; d < ND_MAX_DIMS - 1; d++)
        strcat(text, "[");
    strcat(text, "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]");
    for (int d = 0; d < ND_MAX_DIMS - 1; d++)
        strcat(text, "]");
    struct api_fast_tensors fast;
    api_fast_extract(text, strlen(text), 1000, &fast);
    ck_assert_int_eq(fast.count, 1);
    ck_assert_int_eq(fast.t[0].shape.ndim, ND_MAX_DIMS);
    ck_assert_int_eq(fast.t[0].numel, 16);
    api_fast_release(&fast);
}
END_TEST

// Nesting and cost come from structure outside strings only; a deep body is measured without
// recursion.
START_TEST(test_measure_counts_structure) {
    const char *text = "{\"a\": [1, 2.5e3, true, null], \"b\": {\"c\": \"[[{{\"}}";
    struct api_json_cost c = api_json_measure(text, strlen(text));
    ck_assert_int_eq(c.depth, 2);
    // 2 objects, 1 list, 3 members, 4 scalars, 4 strings (keys too: quoted, 3+3+3+6 bytes)
    ck_assert_uint_eq(c.bytes, 2 * 240 + 144 + 3 * 80 + 4 * 48 + 4 * 96 + 15);
    size_t depth = 1000000;
    char *deep = malloc(2 * depth);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    c = api_json_measure(deep, 2 * depth);
    ck_assert_int_eq(c.depth, (int)depth);
    ck_assert_uint_eq(c.bytes, (uint64_t)depth * 144);
    free(deep);
}
END_TEST

START_TEST(test_special_values) {
    char body[9000], a[4096];
    snprintf(body, sizeof body, "[%s, \"NaN\", \"Infinity\", \"-Infinity\"]", numbers(a, 20, ","));
    char *text = dup_text(body);
    struct api_fast_tensors fast;
    api_fast_extract(text, strlen(text), 1000, &fast);
    ck_assert_int_eq(fast.count, 1);
    ck_assert(isnan(fast.t[0].data[20]));
    ck_assert(isinf(fast.t[0].data[21]) && fast.t[0].data[21] > 0);
    ck_assert(isinf(fast.t[0].data[22]) && fast.t[0].data[22] < 0);
    api_fast_release(&fast);
    free(text);
}
END_TEST

Suite *json_fast_suite(void) {
    Suite *s = suite_create("json_fast");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_random_decimals_match_strtof);
    tcase_add_test(tc, test_shortest_forms_round_trip);
    tcase_add_test(tc, test_ties_take_the_exact_path);
    tcase_add_test(tc, test_extracts_nested_array);
    tcase_add_test(tc, test_ragged_list_extracts_its_items);
    tcase_add_test(tc, test_special_values);
    suite_add_tcase(s, tc);
    TCase *tl = tcase_create("limits");
    tcase_add_test(tl, test_edge_values);
    tcase_add_test(tl, test_leaves_what_it_cannot_read);
    tcase_add_test(tl, test_deep_nesting_is_refused);
    tcase_add_test(tl, test_measure_counts_structure);
    tcase_add_test(tl, test_deepest_tensor_is_read);
    suite_add_tcase(s, tl);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, test_invalid_syntax_is_refused);
    suite_add_tcase(s, te);
    return s;
}
