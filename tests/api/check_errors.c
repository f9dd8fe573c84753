// check_errors.c - the table of API error codes (api/errors.def), api_fail and its helpers, the
// translation of core statuses, and the enum-name parser whose "must be a, b or c" comes from
// its table. That every code is documented is tests/server/test_docs.py's.
#include "tests/check_suites.h"

#include <stdio.h>
#include <string.h>

#include "api/errors.h"

// ---- the table ----

START_TEST(test_codes_table) {
    for (int c = 0; c < API_CODE_COUNT; c++) {
        int status = api_code_status((enum api_code)c);
        const char *word = api_code_word((enum api_code)c);
        ck_assert_msg(status >= 400 && status <= 599, "code %d: status %d", c, status);
        ck_assert_msg(word && word[0] &&
                          strspn(word, "abcdefghijklmnopqrstuvwxyz_") == strlen(word),
                      "code %d: word \"%s\"", c, word ? word : "(null)");
        ck_assert_msg(api_code_message((enum api_code)c)[0], "code %d has no message", c);
        for (int d = 0; d < c; d++) // one row per word: the word decides the status
            ck_assert_msg(strcmp(word, api_code_word((enum api_code)d)) != 0, "\"%s\" is two rows",
                          word);
    }
    ck_assert_int_eq(api_code_status(API_E_INVALID_VALUE), 422);
    ck_assert_str_eq(api_code_word(API_E_INVALID_VALUE), "invalid_value");
    ck_assert_int_eq(api_code_status(API_E_INVALID_TYPE), 400);
    ck_assert_int_eq(api_code_status(API_E_INSUFFICIENT_STORAGE), 507);
    // out of range is internal, never a read past the table
    ck_assert_str_eq(api_code_word((enum api_code)API_CODE_COUNT), "internal");
    ck_assert_int_eq(api_code_status((enum api_code) - 1), 500);
}
END_TEST

// ---- api_fail ----

START_TEST(test_fail_records_first) {
    struct api_error err;
    api_error_clear(&err);
    ck_assert_int_eq(api_fail(&err, API_E_SHAPE_MISMATCH, "input", "got %d\nvalues", 3), API_FAIL);
    ck_assert_int_eq(api_fail(&err, API_E_NOT_FOUND, "name", "later"), API_FAIL);
    ck_assert_int_eq(err.status, 422);
    ck_assert_str_eq(err.code, "shape_mismatch");
    ck_assert_str_eq(err.field, "input");
    ck_assert_str_eq(err.message, "got 3 values"); // one line
    ck_assert_int_eq(api_fail(NULL, API_E_INTERNAL, NULL, "x"), API_FAIL);
}
END_TEST

START_TEST(test_fail_default_message) {
    struct api_error err;
    api_error_clear(&err);
    api_fail(&err, API_E_UNAVAILABLE, NULL, NULL);
    ck_assert_int_eq(err.status, 503);
    ck_assert_str_eq(err.code, "unavailable");
    ck_assert_str_eq(err.field, "");
    ck_assert_str_eq(err.message, "out of memory");
}
END_TEST

START_TEST(test_recode_and_copy) {
    struct api_error err, moved;
    api_error_clear(&err);
    api_fail(&err, API_E_NOT_FOUND, "arrays.Gain", "no array \"Gain\"");
    ck_assert_int_eq(api_error_recode(&err, API_E_UNKNOWN_FIELD), API_FAIL);
    ck_assert_int_eq(err.status, 422);
    ck_assert_str_eq(err.code, "unknown_field");
    ck_assert_str_eq(err.field, "arrays.Gain");
    ck_assert_str_eq(err.message, "no array \"Gain\"");
    api_error_clear(&moved);
    ck_assert_int_eq(api_error_copy(&moved, &err, "definition.arrays.Gain"), API_FAIL);
    ck_assert_int_eq(moved.status, 422);
    ck_assert_str_eq(moved.code, "unknown_field");
    ck_assert_str_eq(moved.field, "definition.arrays.Gain");
    ck_assert_str_eq(moved.message, err.message);
}
END_TEST

// ---- core statuses ----

START_TEST(test_from_core) {
    static const struct {
        enum nd_status core;
        int status;
        const char *word;
    } cases[] = {
        {ND_STATUS_INVALID_ARGUMENT, 500, "internal"},
        {ND_STATUS_INVALID_VALUE, 422, "invalid_value"},
        {ND_STATUS_SHAPE_MISMATCH, 422, "shape_mismatch"},
        {ND_STATUS_NOT_FOUND, 404, "not_found"},
        {ND_STATUS_ALREADY_EXISTS, 409, "already_exists"},
        {ND_STATUS_NOT_INITIALIZED, 409, "not_initialized"},
        {ND_STATUS_CONFLICT, 409, "conflict"},
        {ND_STATUS_PRECONDITION_FAILED, 412, "precondition_failed"},
        {ND_STATUS_LIMIT_EXCEEDED, 429, "limit_exceeded"},
        {ND_STATUS_OUT_OF_MEMORY, 503, "unavailable"},
        {ND_STATUS_INTERNAL, 500, "internal"},
        {ND_STATUS_BUSY, 503, "unavailable"},
        {ND_STATUS_STORAGE, 507, "insufficient_storage"},
        {ND_STATUS_STALE, 409, "conflict"},
        {ND_STATUS_UNAVAILABLE, 503, "unavailable"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct nd_error ce;
        struct api_error err;
        nd_error_clear(&ce);
        api_error_clear(&err);
        nd_error_set_field(&ce, cases[i].core, "epsilon", "bad %d", 7);
        ck_assert_int_eq(api_error_from_core(&err, &ce, "options"), API_FAIL);
        ck_assert_msg(err.status == cases[i].status && strcmp(err.code, cases[i].word) == 0,
                      "%s: %d %s, expected %d %s", nd_status_name(cases[i].core), err.status,
                      err.code, cases[i].status, cases[i].word);
        ck_assert_str_eq(err.field, "options.epsilon");
        ck_assert_str_eq(err.message, "bad 7");
        ck_assert(err.stale == (cases[i].core == ND_STATUS_STALE));
    }
}
END_TEST

// ---- enum names ----

enum { MODE_INFERENCE, MODE_TRAIN };

static const struct api_enum_name modes[] = {{"inference", MODE_INFERENCE, false},
                                             {"train", MODE_TRAIN, false},
                                             {"training", MODE_TRAIN, true},
                                             {NULL, 0, false}};

START_TEST(test_enum_parse) {
    struct api_error err;
    api_error_clear(&err);
    int v = -1;
    ck_assert_int_eq(api_parse_enum("train", "mode", modes, 0, &v, &err), API_OK);
    ck_assert_int_eq(v, MODE_TRAIN);
    ck_assert_int_eq(api_parse_enum("training", "mode", modes, 0, &v, &err), API_OK); // alias
    ck_assert_int_eq(v, MODE_TRAIN);
    ck_assert_int_eq(api_parse_enum("Inference", "mode", modes, API_ENUM_NOCASE, &v, &err), API_OK);
    ck_assert_int_eq(v, MODE_INFERENCE);
    ck_assert_int_eq(err.status, 0);
    v = -1;
    ck_assert_int_eq(api_parse_enum("Inference", "mode", modes, 0, &v, &err), API_FAIL);
    ck_assert_int_eq(v, -1); // untouched
    ck_assert_int_eq(err.status, 422);
    ck_assert_str_eq(err.code, "invalid_value");
    ck_assert_str_eq(err.field, "mode");
    ck_assert_str_eq(err.message, "mode must be \"inference\" or \"train\""); // no alias
    api_error_clear(&err);
    ck_assert_int_eq(api_parse_enum(NULL, "mode", modes, 0, &v, &err), API_FAIL);
    ck_assert_int_eq(api_enum_find(NULL, modes, 0), -1);
    ck_assert_int_eq(api_enum_find("TRAINING", modes, API_ENUM_NOCASE), MODE_TRAIN);
}
END_TEST

START_TEST(test_enum_expected) {
    static const struct api_enum_name one[] = {
        {"mean_squared", 0, false}, {"mse", 0, true}, {NULL, 0, false}};
    static const struct api_enum_name three[] = {
        {"nested", 0, false}, {"flat", 1, false}, {"b64", 2, false}, {NULL, 0, false}};
    char buf[64];
    ck_assert_str_eq(api_enum_expected(one, "\"", buf, sizeof buf), "\"mean_squared\"");
    ck_assert_str_eq(api_enum_expected(three, "\"", buf, sizeof buf),
                     "\"nested\", \"flat\" or \"b64\"");
    ck_assert_str_eq(api_enum_expected(three, "", buf, sizeof buf), "nested, flat or b64");
    ck_assert_str_eq(api_enum_expected(three, "", buf, 10), "nested, f"); // cut, terminated
    struct api_error err;
    api_error_clear(&err);
    int v;
    api_parse_enum("xml", "output_format", three, 0, &v, &err);
    ck_assert_str_eq(err.message, "output_format must be \"nested\", \"flat\" or \"b64\"");
}
END_TEST

Suite *errors_suite(void) {
    Suite *s = suite_create("errors");
    TCase *tc = tcase_create("codes");
    tcase_add_test(tc, test_codes_table);
    tcase_add_test(tc, test_fail_records_first);
    tcase_add_test(tc, test_fail_default_message);
    tcase_add_test(tc, test_recode_and_copy);
    tcase_add_test(tc, test_from_core);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("enum_names");
    tcase_add_test(te, test_enum_parse);
    tcase_add_test(te, test_enum_expected);
    suite_add_tcase(s, te);
    return s;
}
