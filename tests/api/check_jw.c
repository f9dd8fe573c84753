// check_jw.c - the streaming JSON writer and shortest round-trip float and double text.
//
// The exhaustive check of the float formatter (whole binades, 10M random patterns, all 2^32
// round trips) is tests/tools/fmt_verify.c; these are the fast cases.
#include "tests/check_suites.h"

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/jw.h"
#include "core/init.h"

// ---- helpers ----

static float float_of(uint32_t bits) {
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static bool same_float(float a, float b) {
    return memcmp(&a, &b, sizeof a) == 0;
}

static bool same_double(double a, double b) {
    return memcmp(&a, &b, sizeof a) == 0;
}

// Significant digits of a number's text (no sign, point, exponent, or leading and trailing
// zeros).
static int significant_digits(const char *s) {
    int first = -1, last = -1, i = 0;
    for (const char *p = s; *p && *p != 'e'; p++) {
        if (*p < '0' || *p > '9')
            continue;
        if (*p != '0') {
            if (first < 0)
                first = i;
            last = i;
        }
        i++;
    }
    return first < 0 ? 0 : last - first + 1;
}

// strtof reads s back as v, and so does strtod followed by a cast to float (readers built on
// double: jansson, Python's json with numpy).
static bool reads_back_twice(const char *s, float v) {
    return same_float(strtof(s, NULL), v) && same_float((float)strtod(s, NULL), v);
}

// True when some decimal of p significant digits reads back as v (both ways): printf's
// p-digit rounding or its neighbour one unit of the last digit away.
static bool float_has_digits(float v, int p) {
    char s[64];
    snprintf(s, sizeof s, "%.*e", p - 1, (double)v);
    if (reads_back_twice(s, v))
        return true;
    char *e = strchr(s, 'e');
    int exp = atoi(e + 1) - (p - 1);
    long long m = 0;
    for (char *q = s; q < e; q++)
        if (*q >= '0' && *q <= '9')
            m = m * 10 + (*q - '0');
    for (int d = -1; d <= 1; d += 2) {
        char t[64];
        snprintf(t, sizeof t, "%s%llde%d", v < 0 ? "-" : "", m + d, exp);
        if (reads_back_twice(t, v))
            return true;
    }
    return false;
}

// The formatter's text of v reads back (by strtof, and by strtod then a cast as jansson-based
// readers do), is a JSON number, and no shorter decimal reads back.
static void check_shortest_float(float v) {
    char buf[24];
    int n = fmt_float(v, buf);
    ck_assert_int_eq(n, (int)strlen(buf));
    ck_assert_int_le(n, 17);
    ck_assert_msg(same_float(strtof(buf, NULL), v), "%s does not read back", buf);
    ck_assert_msg(same_float((float)strtod(buf, NULL), v), "%s via double", buf);
    json_error_t jerr;
    json_t *j = json_loads(buf, JSON_DECODE_ANY, &jerr);
    ck_assert_msg(j && json_is_number(j), "%s is not a JSON number", buf);
    json_decref(j);
    int digits = significant_digits(buf);
    if (v != 0 && digits > 1)
        ck_assert_msg(!float_has_digits(v, digits - 1), "%s is not the shortest", buf);
}

static char *finish(struct jw *w) {
    size_t len = 0;
    char *s = jw_finish(w, &len);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(len, strlen(s));
    return s;
}

// ---- float and double text ----

START_TEST(test_float_fixed_cases) {
    static const struct {
        float v;
        const char *text;
    } cases[] = {
        {0.0f, "0"},
        {-0.0f, "-0.0"},
        {1.0f, "1"},
        {-1.5f, "-1.5"},
        {0.1f, "0.1"},
        {0.2f, "0.2"},
        {1.0f / 3, "0.33333334"},
        {FLT_MAX, "3.4028235e+38"},
        {-FLT_MAX, "-3.4028235e+38"},
        {FLT_MIN, "1.1754944e-38"},
        {FLT_TRUE_MIN, "1e-45"},
        {16777216.0f, "16777216"},
        {16777218.0f, "16777218"},
        {3.4e38f, "3.4e+38"},
        {1e-7f, "1e-07"},
        {123456.78f, "123456.78"},
        {0.001f, "0.001"},
        {0.0001f, "0.0001"},
        {1e-5f, "1e-05"},
        {100.0f, "100"},
        {1e10f, "10000000000"},
        {1e15f, "1000000000000000"},
        {1e16f, "1e+16"},
        {1e20f, "1e+20"},
        {2.5e-3f, "0.0025"},
        {0.999500375f, "0.9995004"},
        {7.996003f, "7.996003"},
        {1.1920929e-7f, "1.1920929e-07"},
        {4194304.5f, "4194304.5"},
        {33554432.0f, "33554432"},
        // The layouts' edges: nine digits after "0.000", an integer ending in a zero of its
        // decimal, sixteen integer digits, exponent forms of one and of eight digits, the
        // largest subnormal, a power of two above 2^32.
        {1.23456789e-4f, "0.00012345679"},
        {-9.87654321e-4f, "-0.0009876543"},
        {123456792.0f, "123456790"},
        {1.2345678e15f, "1234567800000000"},
        {-1.2345678e-5f, "-1.2345678e-05"},
        {2.71828175e-3f, "0.0027182817"},
        {98765.4321f, "98765.43"},
        {4294967296.0f, "4294967300"},
        {5e-45f, "6e-45"},
        {1.17549421e-38f, "1.1754942e-38"},
        {8.5070592e37f, "8.507059e+37"},
        {999999.9375f, "999999.94"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[24];
        fmt_float(cases[i].v, buf);
        ck_assert_str_eq(buf, cases[i].text);
        check_shortest_float(cases[i].v);
    }
    // The shortest text strtof reads back, "7.038531e-26", becomes through strtod exactly the
    // midpoint to the next float, which the cast to float rounds away (double rounding); one
    // digit more reads back through both.
    char buf[24];
    fmt_float(float_of(0x15ae43fdu), buf);
    ck_assert_str_eq(buf, "7.0385307e-26");
    check_shortest_float(float_of(0x15ae43fdu));
    fmt_float(float_of(0x95ae43fdu), buf);
    ck_assert_str_eq(buf, "-7.0385307e-26");
}
END_TEST

// Every float nearest a power of ten prints as that power: "1e-45" .. "1e+38".
START_TEST(test_float_powers_of_ten) {
    for (int e = -45; e <= 38; e++) {
        char want[32], buf[24];
        if (e >= -4 && e < 16)
            snprintf(want, sizeof want, "%.*f", e < 0 ? -e : 0, pow(10, e));
        else
            snprintf(want, sizeof want, "1e%c%02d", e < 0 ? '-' : '+', abs(e));
        snprintf(buf, sizeof buf, "1e%d", e);
        float v = strtof(buf, NULL);
        fmt_float(v, buf);
        ck_assert_str_eq(buf, want);
        check_shortest_float(v);
    }
}
END_TEST

START_TEST(test_float_random) {
    uint64_t seed = 2024;
    for (int i = 0; i < 3000; i++) {
        float v = float_of((uint32_t)nd_splitmix64_next(&seed));
        if (isfinite(v))
            check_shortest_float(v);
    }
    // Values around 1 in magnitude, as tensors mostly hold, and every float next to 1.
    for (int i = 0; i < 2000; i++) {
        float v = (float)((double)(nd_splitmix64_next(&seed) >> 11) / 9007199254740992.0 * 8 - 4);
        check_shortest_float(v);
        check_shortest_float(nextafterf(v, INFINITY));
    }
    for (int i = -200; i <= 200; i++)
        check_shortest_float(float_of(0x3f800000u + (uint32_t)i));
}
END_TEST

START_TEST(test_double_cases) {
    static const struct {
        double v;
        const char *text;
    } cases[] = {
        {0.0, "0"},
        {-0.0, "-0.0"},
        {1.0, "1"},
        {0.1, "0.1"},
        {0.3, "0.3"},
        {0.1 + 0.2, "0.30000000000000004"},
        {1.0 / 3, "0.3333333333333333"},
        {1e-7, "1e-07"},
        {1e23, "1e+23"},
        {5e-324, "5e-324"},
        {DBL_MAX, "1.7976931348623157e+308"},
        {DBL_MIN, "2.2250738585072014e-308"},
        {9007199254740992.0, "9007199254740992"},
        {123456.78, "123456.78"},
        {1e-5, "1e-05"},
        {1e16, "1e+16"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        int n = fmt_double(cases[i].v, buf);
        ck_assert_str_eq(buf, cases[i].text);
        ck_assert_int_eq(n, (int)strlen(buf));
    }
    uint64_t seed = 7;
    for (int i = 0; i < 4000; i++) {
        // Half random bit patterns (mostly exponent notation), half in 1e-6 .. 1e17, where the
        // plain layouts hold up to 17 digits.
        uint64_t bits = nd_splitmix64_next(&seed);
        double v;
        memcpy(&v, &bits, sizeof v);
        if (i % 2)
            v = (double)(bits >> 11) / 9007199254740992.0 * pow(10, (double)(bits % 24) - 6);
        if (!isfinite(v))
            continue;
        char buf[32];
        ck_assert_int_le(fmt_double(v, buf), 24);
        ck_assert_msg(same_double(strtod(buf, NULL), v), "%s does not read back", buf);
        // printf's rounding to one digit fewer does not read back (the exhaustive check,
        // neighbours included, is in tests/tools/fmt_verify.c).
        int digits = significant_digits(buf);
        if (digits > 1) {
            char s[64];
            snprintf(s, sizeof s, "%.*e", digits - 2, v);
            ck_assert_msg(!same_double(strtod(s, NULL), v), "%s vs %s", buf, s);
        }
    }
}
END_TEST

// ---- the writer ----

START_TEST(test_writer_nesting) {
    struct jw w;
    jw_init(&w);
    jw_obj_begin(&w);
    jw_key(&w, "a");
    jw_int(&w, -12);
    jw_key(&w, "list");
    jw_arr_begin(&w);
    jw_bool(&w, true);
    jw_bool(&w, false);
    jw_null(&w);
    jw_arr_begin(&w);
    jw_arr_end(&w);
    jw_obj_begin(&w);
    jw_obj_end(&w);
    jw_uint(&w, UINT64_MAX);
    jw_int(&w, INT64_MIN);
    jw_int(&w, 0);
    jw_float(&w, 0.5f);
    jw_double(&w, 0.1);
    jw_float(&w, NAN);
    jw_float(&w, -INFINITY);
    jw_double(&w, INFINITY);
    jw_raw(&w, "{\"x\":1}", 7);
    jw_arr_end(&w);
    jw_key(&w, "s");
    jw_string(&w, "hi");
    jw_obj_end(&w);
    char *s = finish(&w);
    ck_assert_str_eq(s, "{\"a\":-12,\"list\":[true,false,null,[],{},18446744073709551615,"
                        "-9223372036854775808,0,0.5,0.1,\"NaN\",\"-Infinity\",\"Infinity\","
                        "{\"x\":1}],\"s\":\"hi\"}");
    json_error_t jerr; // (UINT64_MAX is beyond jansson's integers: read them as reals)
    json_t *j = json_loads(s, JSON_DECODE_INT_AS_REAL, &jerr);
    ck_assert_ptr_nonnull(j);
    json_decref(j);
    free(s);
    // The writer is reset by jw_finish and can be used again; an empty text is "".
    s = finish(&w);
    ck_assert_str_eq(s, "");
    free(s);
    jw_int(&w, 7);
    s = finish(&w);
    ck_assert_str_eq(s, "7");
    free(s);
}
END_TEST

START_TEST(test_writer_escaping) {
    struct jw w;
    jw_init(&w);
    jw_obj_begin(&w);
    jw_key(&w, "k\"ey");
    jw_string(&w, "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f caf\xc3\xa9");
    jw_obj_end(&w);
    char *s = finish(&w);
    ck_assert_str_eq(s,
                     "{\"k\\\"ey\":\"q\\\"b\\\\s/\\b\\f\\n\\r\\t\\u0001\\u001f\x7f caf\xc3\xa9\"}");
    json_error_t jerr;
    json_t *j = json_loads(s, 0, &jerr);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_string_value(json_object_get(j, "k\"ey")),
                     "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f caf\xc3\xa9");
    json_decref(j);
    free(s);
}
END_TEST

// A client's bytes echoed in an error may be anything: what is not well-formed UTF-8 becomes
// U+FFFD, so the reply is always valid UTF-8 JSON (jansson refuses invalid UTF-8).
START_TEST(test_writer_invalid_utf8) {
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"a\xff"
         "b",
         "\"a\\ufffdb\""},                                        // never in UTF-8
        {"\xc3", "\"\\ufffd\""},                                  // cut short by the end
        {"\xc3(", "\"\\ufffd(\""},                                // cut short by ASCII
        {"\xc0\xaf", "\"\\ufffd\\ufffd\""},                       // overlong '/'
        {"\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""},            // a surrogate
        {"\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""}, // past U+10FFFF
        {"\xe2\x82\xac \xf0\x9f\x98\x80", "\"\xe2\x82\xac \xf0\x9f\x98\x80\""}, // kept
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct jw w;
        jw_init(&w);
        jw_string(&w, cases[i].in);
        char *s = finish(&w);
        ck_assert_str_eq(s, cases[i].out);
        json_error_t jerr;
        json_t *j = json_loads(s, JSON_DECODE_ANY, &jerr);
        ck_assert_msg(j != NULL, "case %zu: %s", i, jerr.text);
        json_decref(j);
        free(s);
    }
}
END_TEST

// Many floats force the buffer to grow; jansson reads every one back as the same float.
START_TEST(test_writer_many_floats) {
    enum { N = 20000 };
    struct jw w;
    jw_init(&w);
    jw_arr_begin(&w);
    uint64_t seed = 11;
    float *v = malloc(N * sizeof *v);
    for (int i = 0; i < N; i++) {
        v[i] = (float)((double)(nd_splitmix64_next(&seed) >> 11) / 9007199254740992.0 * 2 - 1) *
               powf(10.0f, (float)(i % 20 - 10));
        jw_float(&w, v[i]);
    }
    jw_arr_end(&w);
    char *s = finish(&w);
    json_error_t jerr;
    json_t *j = json_loads(s, 0, &jerr);
    ck_assert_ptr_nonnull(j);
    ck_assert_uint_eq(json_array_size(j), N);
    for (int i = 0; i < N; i++) {
        json_t *x = json_array_get(j, (size_t)i);
        ck_assert(same_float((float)json_number_value(x), v[i]));
    }
    json_decref(j);
    free(s);
    free(v);
}
END_TEST

// ---- limits ----

START_TEST(test_writer_depth) {
    struct jw w;
    jw_init(&w);
    for (int i = 0; i < JW_MAX_DEPTH - 1; i++)
        jw_arr_begin(&w);
    for (int i = 0; i < JW_MAX_DEPTH - 1; i++)
        jw_arr_end(&w);
    char *s = finish(&w);
    ck_assert_uint_eq(strlen(s), 2 * (JW_MAX_DEPTH - 1));
    free(s);
    for (int i = 0; i < JW_MAX_DEPTH; i++) // one level too deep: the writer fails
        jw_arr_begin(&w);
    ck_assert(w.failed);
    ck_assert_ptr_null(jw_finish(&w, NULL));
}
END_TEST

START_TEST(test_format_lengths) {
    // The longest texts: 9 digits with the largest exponents, plain with 16 integer digits.
    char fb[24], db[32];
    ck_assert_int_le(fmt_float(-1.17549435e-38f, fb), 17);
    ck_assert_int_le(fmt_float(-9.99999949e15f, fb), 17);
    ck_assert_int_le(fmt_float(-1.23456791e-4f, fb), 17);
    ck_assert_int_eq(fmt_double(-2.2250738585072014e-308, db), 24);
    ck_assert_int_le(fmt_double(-0.00012345678901234567, db), 24);
    // The non-finite values (not JSON numbers: jw_float writes them as strings).
    ck_assert_int_eq(fmt_float(NAN, fb), 3);
    ck_assert_str_eq(fb, "NaN");
    fmt_double(-INFINITY, db);
    ck_assert_str_eq(db, "-Infinity");
}
END_TEST

// ---- errors ----

// An allocation that cannot succeed makes the writer failed; later calls do nothing and
// jw_finish returns NULL.
START_TEST(test_writer_failure) {
    struct jw w;
    jw_init(&w);
    jw_arr_begin(&w);
    jw_int(&w, 1);
    jw_raw(&w, "x", SIZE_MAX / 2);
    ck_assert(w.failed);
    size_t len = w.len;
    jw_int(&w, 2);
    jw_string(&w, "more");
    jw_arr_end(&w);
    ck_assert_uint_eq(w.len, len);
    size_t out_len = 99;
    ck_assert_ptr_null(jw_finish(&w, &out_len));
    ck_assert_uint_eq(out_len, 0);
    // jw_finish reset the writer: it works again.
    jw_null(&w);
    char *s = finish(&w);
    ck_assert_str_eq(s, "null");
    free(s);
}
END_TEST

START_TEST(test_writer_misuse) {
    struct jw w;
    jw_init(&w);
    jw_arr_begin(&w); // never closed
    ck_assert_ptr_null(jw_finish(&w, NULL));
    jw_arr_end(&w); // nothing open
    ck_assert_ptr_null(jw_finish(&w, NULL));
    jw_obj_begin(&w);
    jw_key(&w, "a");
    jw_key(&w, "b"); // a key without a value
    ck_assert(w.failed);
    jw_free(&w);
    jw_obj_begin(&w);
    jw_key(&w, "a");
    jw_obj_end(&w); // a key without a value
    ck_assert_ptr_null(jw_finish(&w, NULL));
    jw_free(NULL);
    jw_init(&w);
    jw_string(&w, NULL); // as ""
    char *s = finish(&w);
    ck_assert_str_eq(s, "\"\"");
    free(s);
}
END_TEST

Suite *jw_suite(void) {
    Suite *s = suite_create("jw");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_float_fixed_cases);
    tcase_add_test(tc, test_float_powers_of_ten);
    tcase_add_test(tc, test_float_random);
    tcase_add_test(tc, test_double_cases);
    tcase_add_test(tc, test_writer_nesting);
    tcase_add_test(tc, test_writer_escaping);
    tcase_add_test(tc, test_writer_invalid_utf8);
    tcase_add_test(tc, test_writer_many_floats);
    suite_add_tcase(s, tc);
    TCase *tl = tcase_create("limits");
    tcase_add_test(tl, test_writer_depth);
    tcase_add_test(tl, test_format_lengths);
    suite_add_tcase(s, tl);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, test_writer_failure);
    tcase_add_test(te, test_writer_misuse);
    suite_add_tcase(s, te);
    return s;
}
