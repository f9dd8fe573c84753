// check_numbers.c - the fast paths of a forward's numbers (issue 12): the 8-bytes-at-a-time
// number reader of json_fast.c against strtof on millions of texts, the array reader's copy
// mode against its in-place mode, and the batched float writer (jw_floats) against jw_float
// and against strtof/strtod reading its text back.
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/json_fast.h"
#include "api/jw.h"
#include "tests/check_suites.h"
#include "tests/test_rng.h"

// Check records every ck_assert (a write to its pipe): the loops below make millions of
// checks, so they report only failures.
#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ck_abort_msg(__VA_ARGS__);                                                             \
    } while (0)

static struct test_rng rng = {0x9e3779b97f4a7c15ull}; // one stream for the file's tests, in order

static uint64_t next(void) {
    return test_rng_next(&rng);
}

static float float_of(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static bool same_bits(float a, float b) {
    return memcmp(&a, &b, sizeof a) == 0;
}

// ---- reading numbers ----

// What follows a number in a body: a separator, then more text. The reader's 8-byte loads
// need 28 bytes after a number's start; a number alone in its buffer takes the byte-by-byte
// path. Both must agree with strtof and with each other.
static const char *const tails[] = {", 0.5, 1.25, -3.75, 2.0, 1e3]", "]]}   \n", " ,\t0]", "}",
                                    ",1234567890123456789012345"};

// Checks text (NUL-terminated) both alone and followed by each tail. must_read: text is a
// JSON number, refused only when out of float range.
static void expect_same(const char *text, bool must_read) {
    size_t n = strlen(text);
    float alone = 0;
    size_t len = api_parse_float(text, n, &alone);
    char *end;
    float want = strtof(text, &end);
    bool valid = len > 0;
    size_t syntax = api_parse_float(text, n, NULL); // also the length of one out of range
    if (must_read && isfinite(want))
        EXPECT(valid, "%s refused", text);
    if (valid && must_read) { // not JSON ("0x10"): strtof may read more
        EXPECT(len == (size_t)(end - text), "%s: consumed %zu, strtof %td", text, len, end - text);
        EXPECT(same_bits(alone, want), "%s: got %a, strtof %a", text, alone, want);
    }
    char padded[160];
    for (size_t t = 0; t < sizeof tails / sizeof tails[0]; t++) {
        snprintf(padded, sizeof padded, "%s%s", text, tails[t]);
        float v = 0;
        size_t plen = api_parse_float(padded, strlen(padded), &v);
        EXPECT(plen == len, "%s then %s: consumed %zu, alone %zu", text, tails[t], plen, len);
        if (valid)
            EXPECT(same_bits(v, valid && must_read ? want : alone), "%s then %s: got %a, strtof %a",
                   text, tails[t], v, want);
        EXPECT(api_parse_float(padded, strlen(padded), NULL) == syntax, "%s then %s: syntax", text,
               tails[t]);
    }
}

static void expect_reads_as_strtof(const char *text) {
    expect_same(text, true);
}

// A random digit string of n digits (the first nonzero when lead is set).
static void random_digits(char *out, int n, bool lead) {
    for (int i = 0; i < n; i++)
        out[i] = (char)('0' + next() % 10);
    if (lead && n > 0 && out[0] == '0')
        out[0] = (char)('1' + next() % 9);
    out[n] = '\0';
}

START_TEST(test_client_decimals_read_as_strtof) {
    // What clients send: round(x, p) of values of every size, %.{p}f and %.{p}g forms.
    char text[96];
    for (int i = 0; i < 400000; i++) {
        double mag = pow(10.0, (double)(next() % 17) - 8.0);
        double x = ((double)(next() >> 11) * 0x1p-53 * 2.0 - 1.0) * mag;
        snprintf(text, sizeof text, "%.*f", (int)(next() % 12), x);
        expect_reads_as_strtof(text);
        snprintf(text, sizeof text, "%.*g", 1 + (int)(next() % 17), x);
        expect_reads_as_strtof(text);
    }
}
END_TEST

START_TEST(test_digit_strings_read_as_strtof) {
    // Integer parts of 1 to 10 digits, fractions of 0 to 22 (across the 8- and 16-digit loads
    // and the 19 digits a mantissa holds), optional exponents, leading zeros.
    char text[96], ip[16], fp[32];
    for (int i = 0; i < 600000; i++) {
        int ni = 1 + (int)(next() % 10), nf = (int)(next() % 23);
        random_digits(ip, ni, true);
        random_digits(fp, nf, false);
        if (next() % 4 == 0)
            snprintf(ip, sizeof ip, "0"); // 0.000ddd
        const char *sign = next() % 2 ? "-" : "";
        if (nf == 0)
            snprintf(text, sizeof text, "%s%s", sign, ip);
        else
            snprintf(text, sizeof text, "%s%s.%s", sign, ip, fp);
        if (next() % 5 == 0) {
            size_t n = strlen(text);
            snprintf(text + n, sizeof text - n, "e%d", (int)(next() % 90) - 50);
        }
        expect_reads_as_strtof(text);
    }
}
END_TEST

START_TEST(test_float_texts_read_back) {
    // Every printed form of random floats (%.6g to %.9g, as clients print float32) reads
    // back bit for bit, alone and inside a body.
    char text[64];
    for (int i = 0; i < 300000; i++) {
        float f = float_of((uint32_t)next());
        if (!isfinite(f))
            continue;
        for (int p = 6; p <= 9; p++) {
            snprintf(text, sizeof text, "%.*g", p, (double)f);
            expect_reads_as_strtof(text);
        }
    }
}
END_TEST

START_TEST(test_fast_path_boundaries) {
    // Around the 8-byte loads (7 and 8 integer digits, 8 and 16 fraction digits), the 19
    // digits a mantissa holds, 2^24 and 2^53, and float range.
    const char *json[] = {"0",
                          "-0",
                          "-0.0",
                          "0.0",
                          "7",
                          "1234567",
                          "12345678",
                          "-1234567.1234567",
                          "1.12345678",
                          "1.1234567812345678",
                          "1.12345678123456789",
                          "1.123456781234567891",
                          "0.0000000000000000001",
                          "9999999.999999999999",
                          "1234567.123456789012",
                          "16777215",
                          "16777216",
                          "16777217",
                          "0.16777217",
                          "1.6777217",
                          "9007199254740993",
                          "0.9007199254740993",
                          "123456.78901234567",
                          "1e10",
                          "1.5E-3",
                          "3.4028235e38",
                          "3.4028236e38",
                          "1e39",
                          "1.17549435e-38",
                          "1.4e-45",
                          "7e-46",
                          "2.5e+2"};
    for (size_t i = 0; i < sizeof json / sizeof json[0]; i++)
        expect_reads_as_strtof(json[i]);
    // Not JSON numbers: refused, or read only up to where a number ends, alike on both paths.
    const char *other[] = {"00",  "01", "-01.5", "1.",  "1.e5", ".5",   "-",
                           "-.5", "+1", "1e",    "1e+", "--1",  "0x10", "1.5.5"};
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        expect_same(other[i], false);
    float v;
    for (size_t i = 0; i < 11; i++) // "00" .. "--1": nothing is a number there
        if (strcmp(other[i], "00") != 0 && strcmp(other[i], "01") != 0 &&
            strcmp(other[i], "-01.5") != 0)
            EXPECT(api_parse_float(other[i], strlen(other[i]), &v) == 0, "%s", other[i]);
}
END_TEST

START_TEST(test_short_forms_read_as_strtof) {
    // The one-load reader of "-d.dddddd" (1 to 6 integer digits, 7 digits in all) and the
    // forms next to it that it must leave to the others: 7 integer digits, 8 digits in all,
    // no fraction, an exponent after the fraction, leading zeros, every sign.
    char text[64], ip[16], fp[16];
    for (int ni = 1; ni <= 8; ni++)
        for (int nf = 0; nf <= 9; nf++)
            for (int i = 0; i < 3000; i++) {
                random_digits(ip, ni, next() % 8 != 0); // some "0d.d" and "00.5"
                random_digits(fp, nf, false);
                const char *sign = next() % 2 ? "-" : "";
                const char *exp = next() % 6 == 0 ? (next() % 2 ? "e3" : "E-2") : "";
                snprintf(text, sizeof text, "%s%s%s%s%s", sign, ip, nf ? "." : "", fp, exp);
                bool json = !(ip[0] == '0' && ni > 1);
                expect_same(text, json);
            }
}
END_TEST

// ---- reading arrays: the copy and in place agree ----

// A random body: keys, strings with brackets and quotes, nested numeric arrays (some ragged
// or mixed), flat tensors.
static void random_body(char *out, size_t size) {
    size_t n = (size_t)snprintf(out, size, "{");
    int fields = 1 + (int)(next() % 4);
    for (int f = 0; f < fields && n + 400 < size; f++) {
        n += (size_t)snprintf(out + n, size - n, "%s\"k%d\": ", f ? ", " : "", f);
        switch (next() % 4) {
        case 0: // a string that looks like JSON
            n += (size_t)snprintf(out + n, size - n, "\"[1, 2, \\\"[3]\\\"]\"");
            break;
        case 1: { // a rectangular array
            int rows = 1 + (int)(next() % 3), cols = 8 + (int)(next() % 12);
            n += (size_t)snprintf(out + n, size - n, "[");
            for (int r = 0; r < rows; r++) {
                n += (size_t)snprintf(out + n, size - n, "%s[", r ? ", " : "");
                for (int c = 0; c < cols; c++)
                    n += (size_t)snprintf(out + n, size - n, "%s%.*f", c ? ", " : "",
                                          (int)(next() % 8),
                                          (double)(int64_t)(next() % 20000) / 1000 - 10);
                n += (size_t)snprintf(out + n, size - n, "]");
            }
            n += (size_t)snprintf(out + n, size - n, "]");
            break;
        }
        case 2: // a flat tensor: left to jansson
            n += (size_t)snprintf(out + n, size - n,
                                  "{\"shape\": [20], \"data\": [1,2,3,4,5,6,7,8,9,10,11,12,13,"
                                  "14,15,16,17,18,19,20]}");
            break;
        default: // ragged, or not numbers
            n += (size_t)snprintf(out + n, size - n,
                                  next() % 2 ? "[[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16],[1]]"
                                             : "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,true]");
        }
    }
    snprintf(out + n, size - n, "}");
}

START_TEST(test_copy_matches_in_place) {
    char body[4096];
    for (int i = 0; i < 3000; i++) {
        random_body(body, sizeof body);
        size_t len = strlen(body);
        char *in_place = malloc(len + 1);
        memcpy(in_place, body, len + 1);
        struct api_fast_tensors a, b;
        size_t alen = api_fast_extract(in_place, len, 1000, &a);
        size_t blen = 0;
        char *copy = api_fast_extract_copy(body, len, 1000, &b, &blen);
        ck_assert_ptr_nonnull(copy);
        ck_assert_uint_eq(alen, blen);
        ck_assert_msg(memcmp(in_place, copy, alen) == 0, "%s: texts differ", body);
        ck_assert_int_eq(copy[blen], '\0');
        ck_assert_int_eq(a.count, b.count);
        for (int k = 0; k < a.count; k++) {
            ck_assert_int_eq(a.t[k].numel, b.t[k].numel);
            ck_assert(memcmp(a.t[k].data, b.t[k].data, (size_t)a.t[k].numel * 4) == 0);
        }
        ck_assert_msg(strstr(body, "[[") == NULL || strchr(copy, '[') != NULL || a.count > 0,
                      "%s: a nested array vanished", body);
        api_fast_release(&a);
        api_fast_release(&b);
        free(in_place);
        free(copy);
    }
}
END_TEST

START_TEST(test_copy_of_an_empty_body) {
    struct api_fast_tensors f;
    size_t len = 99;
    char *t = api_fast_extract_copy(NULL, 0, 1000, &f, &len);
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(len, 0);
    ck_assert_str_eq(t, "");
    ck_assert_int_eq(f.count, 0);
    free(t);
}
END_TEST

// ---- writing floats ----

// A float of every kind: random bits (subnormals, huge, NaN, infinities), zeros, values near
// 1 (a layer's outputs), and one that needs the careful path (7.0385307e-26f).
static float random_float(void) {
    switch (next() % 8) {
    case 0:
        return float_of((uint32_t)next());
    case 1:
        return next() % 2 ? 0.0f : -0.0f;
    case 2:
        return float_of(0x15ae43fdu | (uint32_t)(next() % 2) << 31);
    case 3:
        return next() % 2 ? NAN : (next() % 2 ? INFINITY : -INFINITY);
    default:
        return (float)(((double)(next() >> 11) * 0x1p-53 * 6.0 - 3.0) *
                       pow(10.0, (double)(next() % 9) - 4.0));
    }
}

START_TEST(test_floats_write_as_float_calls) {
    static float v[3000];
    for (int round = 0; round < 300; round++) {
        int n = (int)(next() % 3000);
        for (int i = 0; i < n; i++)
            v[i] = random_float();
        struct jw a, b;
        jw_init(&a);
        jw_init(&b);
        jw_obj_begin(&a); // after a key, then in a list, as a reply has them
        jw_obj_begin(&b);
        jw_key(&a, "output");
        jw_key(&b, "output");
        if (round % 2) { // a bare list of floats, or floats after a key (the writer's first)
            jw_arr_begin(&a);
            jw_arr_begin(&b);
            int k = n ? (int)(next() % (uint64_t)n) : 0; // in two calls: the second's first
            jw_floats(&a, v, k);                         // value follows a comma
            jw_floats(&a, v + k, n - k);
            for (int i = 0; i < n; i++)
                jw_float(&b, v[i]);
            jw_arr_end(&a);
            jw_arr_end(&b);
        } else {
            jw_floats(&a, v, n ? 1 : 0);
            if (n == 0) {
                jw_null(&a);
                jw_null(&b);
            } else {
                jw_float(&b, v[0]);
            }
        }
        jw_obj_end(&a);
        jw_obj_end(&b);
        size_t alen, blen;
        char *ta = jw_finish(&a, &alen), *tb = jw_finish(&b, &blen);
        ck_assert_ptr_nonnull(ta);
        ck_assert_ptr_nonnull(tb);
        ck_assert_uint_eq(alen, blen);
        ck_assert_str_eq(ta, tb);
        free(ta);
        free(tb);
    }
}
END_TEST

START_TEST(test_floats_fail_at_the_limit_as_float_calls) {
    // With a limit, jw_floats fails exactly when the same jw_float calls would, with the same
    // too_large, and a text that fits is the same text.
    static float v[400];
    for (int i = 0; i < 400; i++)
        v[i] = random_float();
    for (size_t limit = 1; limit < 9000; limit += 1 + next() % 97) {
        struct jw a, b;
        jw_init(&a);
        jw_set_limit(&a, limit);
        jw_init(&b);
        jw_set_limit(&b, limit);
        jw_arr_begin(&a);
        jw_arr_begin(&b);
        jw_reserve_hint(&a, 400 * 17); // a hint past the limit fails nothing
        jw_floats(&a, v, 400);
        for (int i = 0; i < 400; i++)
            jw_float(&b, v[i]);
        ck_assert_int_eq(a.failed, b.failed);
        ck_assert_int_eq(a.too_large, b.too_large);
        jw_arr_end(&a);
        jw_arr_end(&b);
        size_t alen, blen;
        char *ta = jw_finish(&a, &alen), *tb = jw_finish(&b, &blen);
        ck_assert_int_eq(ta == NULL, tb == NULL);
        if (ta)
            ck_assert_str_eq(ta, tb);
        free(ta);
        free(tb);
    }
}
END_TEST

START_TEST(test_printed_floats_read_back) {
    // Random bit patterns: the writer's text reads back as the same float through strtof and
    // through strtod then a cast (readers built on double), and is no longer than 9 digits.
    char buf[24];
    for (int i = 0; i < 2000000; i++) {
        float f = float_of((uint32_t)next());
        if (!isfinite(f))
            continue;
        int n = fmt_float(f, buf);
        EXPECT(n <= 17, "%s is too long", buf);
        float a = strtof(buf, NULL), b = (float)strtod(buf, NULL);
        EXPECT(same_bits(a, f) && same_bits(b, f), "%a printed %s", (double)f, buf);
        float r = 0;
        EXPECT(api_parse_float(buf, (size_t)n, &r) == (size_t)n, "%s not read", buf); // ours too
        EXPECT(same_bits(r, f), "%a printed %s, read %a", (double)f, buf, (double)r);
    }
}
END_TEST

START_TEST(test_reserve_hint) {
    struct jw w;
    jw_init(&w);
    jw_reserve_hint(&w, 100000);
    ck_assert_uint_ge(w.cap, 100001);
    ck_assert(!w.failed);
    jw_arr_begin(&w);
    jw_float(&w, 1.5f);
    jw_arr_end(&w);
    size_t len;
    char *t = jw_finish(&w, &len);
    ck_assert_str_eq(t, "[1.5]");
    free(t);
    jw_init(&w);
    jw_set_limit(&w, 10);
    jw_reserve_hint(&w, 100000); // capped by the limit, and no failure
    ck_assert_uint_le(w.cap, 11);
    ck_assert(!w.failed);
    jw_free(&w);
}
END_TEST

Suite *numbers_suite(void) {
    Suite *s = suite_create("numbers");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_client_decimals_read_as_strtof);
    tcase_add_test(tc, test_digit_strings_read_as_strtof);
    tcase_add_test(tc, test_float_texts_read_back);
    tcase_add_test(tc, test_copy_matches_in_place);
    tcase_add_test(tc, test_floats_write_as_float_calls);
    tcase_add_test(tc, test_printed_floats_read_back);
    suite_add_tcase(s, tc);
    TCase *tl = tcase_create("limits");
    tcase_set_timeout(tl, 30);
    tcase_add_test(tl, test_fast_path_boundaries);
    tcase_add_test(tl, test_short_forms_read_as_strtof);
    tcase_add_test(tl, test_floats_fail_at_the_limit_as_float_calls);
    tcase_add_test(tl, test_reserve_hint);
    suite_add_tcase(s, tl);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, test_copy_of_an_empty_body);
    suite_add_tcase(s, te);
    return s;
}
