// check_tensor.c - shapes, tensors and aligned allocation.
#include "tests/check_suites.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "core/tensor.h"

START_TEST(test_numel_and_overflow) {
    struct nd_shape s = nd_shape_make(3, (int64_t[]){2, 3, 4});
    int64_t n = 0;
    ck_assert_int_eq(nd_shape_numel(&s, &n, NULL), ND_STATUS_OK);
    ck_assert_int_eq(n, 24);
    struct nd_shape scalar = nd_shape_make(0, NULL);
    ck_assert_int_eq(nd_shape_numel(&scalar, &n, NULL), ND_STATUS_OK);
    ck_assert_int_eq(n, 1);
    struct nd_shape huge = nd_shape_make(3, (int64_t[]){INT64_C(1) << 40, INT64_C(1) << 30, 4});
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_shape_numel(&huge, &n, &err), ND_STATUS_LIMIT_EXCEEDED);
    struct nd_shape autos = nd_shape_make(2, (int64_t[]){3, ND_DIM_AUTO});
    ck_assert_int_eq(nd_shape_numel(&autos, &n, NULL), ND_STATUS_INVALID_VALUE);
}
END_TEST

START_TEST(test_matches_and_format) {
    struct nd_shape pattern = nd_shape_make(2, (int64_t[]){3, ND_DIM_AUTO});
    struct nd_shape a = nd_shape_make(2, (int64_t[]){3, 7});
    struct nd_shape b = nd_shape_make(2, (int64_t[]){4, 7});
    ck_assert(nd_shape_matches(&pattern, &a));
    ck_assert(!nd_shape_matches(&pattern, &b));
    ck_assert(!nd_shape_is_known(&pattern));
    ck_assert(nd_shape_is_known(&a));
    struct nd_shape unknown = {.ndim = ND_RANK_UNKNOWN};
    ck_assert(nd_shape_matches(&unknown, &b));
    char buf[64];
    ck_assert_str_eq(nd_shape_format(&pattern, buf, sizeof buf), "[3, null]");
    ck_assert_str_eq(nd_shape_format(&unknown, buf, sizeof buf), "unknown");
    struct nd_shape empty = nd_shape_make(0, NULL);
    ck_assert_str_eq(nd_shape_format(&empty, buf, sizeof buf), "[]");
    char tiny[4];
    nd_shape_format(&a, tiny, sizeof tiny); // truncated, still terminated
    ck_assert_uint_lt(strlen(tiny), sizeof tiny);
}
END_TEST

START_TEST(test_tensor_lifecycle) {
    struct nd_shape s = nd_shape_make(2, (int64_t[]){3, 5});
    struct nd_tensor t;
    ck_assert_int_eq(nd_tensor_init(&t, &s, NULL), ND_STATUS_OK);
    ck_assert_int_eq(t.numel, 15);
    ck_assert(t.flags & ND_TENSOR_OWNS_DATA);
    ck_assert_uint_eq((uintptr_t)t.data % ND_ALIGN, 0);
    for (int64_t i = 0; i < t.numel; i++)
        ck_assert(t.data[i] == 0.0f);
    t.data[4] = 2.5f;
    struct nd_tensor c;
    ck_assert_int_eq(nd_tensor_clone(&c, &t, NULL), ND_STATUS_OK);
    ck_assert(c.data[4] == 2.5f);
    ck_assert(nd_tensor_all_finite(&c));
    c.data[0] = NAN;
    ck_assert(!nd_tensor_all_finite(&c));
    struct nd_tensor v = nd_tensor_view(t.data, &s);
    ck_assert(!(v.flags & ND_TENSOR_OWNS_DATA));
    nd_tensor_deinit(&v); // a view is only reset
    ck_assert(t.data[4] == 2.5f);
    nd_tensor_deinit(&c);
    nd_tensor_deinit(&t);
    ck_assert_ptr_null(t.data);
    nd_tensor_deinit(NULL);
}
END_TEST

START_TEST(test_tensor_errors) {
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_tensor_init(NULL, NULL, &err), ND_STATUS_INVALID_ARGUMENT);
    struct nd_shape autos = nd_shape_make(1, (int64_t[]){ND_DIM_AUTO});
    struct nd_tensor t;
    ck_assert_int_eq(nd_tensor_init(&t, &autos, NULL), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(nd_tensor_clone(NULL, &t, NULL), ND_STATUS_INVALID_ARGUMENT);
    struct nd_shape zero = nd_shape_make(2, (int64_t[]){0, 3});
    ck_assert_int_eq(nd_tensor_init(&t, &zero, NULL), ND_STATUS_OK);
    ck_assert_ptr_null(t.data);
    ck_assert_int_eq(t.numel, 0);
    nd_tensor_deinit(&t);
    int64_t n;
    ck_assert_int_eq(nd_shape_numel(NULL, &n, NULL), ND_STATUS_INVALID_ARGUMENT);
}
END_TEST

START_TEST(test_tensor_uninit) {
    struct nd_shape s = nd_shape_make(2, (int64_t[]){4, 16});
    struct nd_tensor t;
    ck_assert_int_eq(nd_tensor_init_uninit(&t, &s, NULL), ND_STATUS_OK);
    ck_assert_int_eq(t.numel, 64);
    ck_assert(t.flags & ND_TENSOR_OWNS_DATA);
    ck_assert_uint_eq((uintptr_t)t.data % ND_ALIGN, 0);
    t.data[63] = 1.0f; // writable to the end
    nd_tensor_deinit(&t);
    ck_assert_int_eq(nd_tensor_init_uninit(NULL, &s, NULL), ND_STATUS_INVALID_ARGUMENT);
    struct nd_shape autos = nd_shape_make(1, (int64_t[]){ND_DIM_AUTO});
    ck_assert_int_eq(nd_tensor_init_uninit(&t, &autos, NULL), ND_STATUS_INVALID_VALUE);
}
END_TEST

START_TEST(test_size_math) {
    size_t out;
    ck_assert(nd_size_mul(3, 4, &out) && out == 12);
    ck_assert(!nd_size_mul(SIZE_MAX, 2, &out));
    ck_assert(!nd_size_add(SIZE_MAX, 1, &out));
    int64_t c;
    ck_assert(!nd_count_mul(-1, 2, &c));
    ck_assert(!nd_count_mul(INT64_MAX, 2, &c));
    ck_assert(nd_count_mul(0, INT64_MAX, &c) && c == 0);
    ck_assert_ptr_null(nd_alloc_aligned(0));
    nd_free(NULL);
}
END_TEST

Suite *tensor_suite(void) {
    Suite *s = suite_create("tensor");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_numel_and_overflow);
    tcase_add_test(tc, test_matches_and_format);
    tcase_add_test(tc, test_tensor_lifecycle);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, test_tensor_errors);
    tcase_add_test(te, test_size_math);
    tcase_add_test(te, test_tensor_uninit);
    suite_add_tcase(s, te);
    return s;
}
