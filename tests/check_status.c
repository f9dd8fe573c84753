// check_status.c - error codes and the first-error-wins buffer.
#include "tests/check_suites.h"
#include <string.h>

#include "core/status.h"

START_TEST(test_set_keeps_first_error) {
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(err.code, ND_STATUS_OK);
    enum nd_status st = nd_error_set(&err, ND_STATUS_SHAPE_MISMATCH, "input has %d dims", 4);
    ck_assert_int_eq(st, ND_STATUS_SHAPE_MISMATCH);
    st = nd_error_set_field(&err, ND_STATUS_INVALID_VALUE, "options.epsilon", "later");
    ck_assert_int_eq(st, ND_STATUS_INVALID_VALUE); // returned, but not recorded
    ck_assert_int_eq(err.code, ND_STATUS_SHAPE_MISMATCH);
    ck_assert_str_eq(err.msg, "input has 4 dims");
    ck_assert_str_eq(err.field, "");
}
END_TEST

START_TEST(test_field_and_prefix) {
    struct nd_error err;
    nd_error_clear(&err);
    nd_error_set_field(&err, ND_STATUS_INVALID_VALUE, "max_value", "must be > 0");
    nd_error_prefix_field(&err, "options.scaling_constraint");
    ck_assert_str_eq(err.field, "options.scaling_constraint.max_value");
    struct nd_error bare;
    nd_error_clear(&bare);
    nd_error_set(&bare, ND_STATUS_INVALID_VALUE, "x");
    nd_error_prefix_field(&bare, "options.epsilon");
    ck_assert_str_eq(bare.field, "options.epsilon");
}
END_TEST

START_TEST(test_message_is_one_line_and_bounded) {
    struct nd_error err;
    nd_error_clear(&err);
    char long_text[1000];
    memset(long_text, 'a', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    long_text[10] = '\n';
    nd_error_set(&err, ND_STATUS_INTERNAL, "%s", long_text);
    ck_assert_uint_eq(strlen(err.msg), ND_ERROR_MSG_MAX - 1);
    ck_assert_ptr_null(strchr(err.msg, '\n'));
}
END_TEST

START_TEST(test_null_error_buffer) {
    ck_assert_int_eq(nd_error_set(NULL, ND_STATUS_NOT_FOUND, "x"), ND_STATUS_NOT_FOUND);
    ck_assert_int_eq(nd_error_set_field(NULL, ND_STATUS_CONFLICT, "f", "x"), ND_STATUS_CONFLICT);
    nd_error_clear(NULL);
    nd_error_prefix_field(NULL, "p");
}
END_TEST

START_TEST(test_status_names) {
    ck_assert_str_eq(nd_status_name(ND_STATUS_OK), "ok");
    ck_assert_str_eq(nd_status_name(ND_STATUS_SHAPE_MISMATCH), "shape_mismatch");
    ck_assert_str_eq(nd_status_name(ND_STATUS_NOT_INITIALIZED), "not_initialized");
    ck_assert_str_eq(nd_status_name((enum nd_status) - 1), "unknown");
    ck_assert_str_eq(nd_status_name(ND_STATUS_COUNT), "unknown");
    for (int i = 0; i < ND_STATUS_COUNT; i++) // every code has a word
        ck_assert_ptr_nonnull(nd_status_name((enum nd_status)i));
}
END_TEST

Suite *status_suite(void) {
    Suite *s = suite_create("status");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_set_keeps_first_error);
    tcase_add_test(tc, test_field_and_prefix);
    tcase_add_test(tc, test_message_is_one_line_and_bounded);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, test_null_error_buffer);
    tcase_add_test(te, test_status_names);
    suite_add_tcase(s, te);
    return s;
}
