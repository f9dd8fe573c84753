// check_trace.c - W3C traceparent parsing and the reply's header (server/trace.c).
#include <check.h>
#include <string.h>

#include "server/trace.h"
#include "tests/check_suites.h"

#define GOOD "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static struct srv_trace parse1(const char *value) {
    struct api_kv h[] = {{"Host", "x"}, {"TraceParent", value}};
    struct srv_trace t;
    srv_trace_parse(h, value ? 2 : 1, &t);
    return t;
}

START_TEST(test_valid_version_00) {
    struct srv_trace t = parse1(GOOD);
    ck_assert(t.valid);
    ck_assert_str_eq(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    ck_assert_str_eq(t.parent_id, "00f067aa0ba902b7");
    ck_assert_str_eq(t.flags, "01");
    srv_trace_reply(&t, 42);
    ck_assert_int_eq(strlen(t.reply), SRV_TRACEPARENT_LEN);
    ck_assert(strncmp(t.reply, "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36) == 0);
    ck_assert_str_eq(t.reply + 52, "-01");
    ck_assert(strncmp(t.reply + 36, "0000000000000000", 16) != 0);
    ck_assert(strncmp(t.reply + 36, "00f067aa0ba902b7", 16) != 0); // a span of its own
    struct srv_trace u = t;
    srv_trace_reply(&u, 43); // another request: another span
    ck_assert(strncmp(t.reply + 36, u.reply + 36, 16) != 0);
    // The reply parses as a valid traceparent itself.
    struct srv_trace again = parse1(t.reply);
    ck_assert(again.valid);
}
END_TEST

START_TEST(test_later_versions) {
    ck_assert(parse1("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").valid);
    ck_assert(parse1("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-whatever").valid);
    ck_assert(!parse1("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09x").valid);
    struct srv_trace t = parse1("02-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-x");
    srv_trace_reply(&t, 1);
    ck_assert(strncmp(t.reply, "00-", 3) == 0); // answered in the version normd speaks
    ck_assert_str_eq(t.reply + 52, "-03");
}
END_TEST

START_TEST(test_invalid_forms) {
    static const char *const bad[] = {
        "",
        "00",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // version ff
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // upper case
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // zero parent id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", // 00 is exactly 55
        "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",  // misplaced dash
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",  // not hex
        "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // version not hex
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // leading space
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct srv_trace t = parse1(bad[i]);
        ck_assert_msg(!t.valid, "accepted %s", bad[i]);
        srv_trace_reply(&t, 1);
        ck_assert_str_eq(t.reply, ""); // nothing to answer
    }
    ck_assert(!parse1(NULL).valid);
    struct api_kv two[] = {{"traceparent", GOOD}, {"traceparent", GOOD}};
    struct srv_trace t;
    srv_trace_parse(two, 2, &t);
    ck_assert(!t.valid); // two headers are a list, never one traceparent
}
END_TEST

Suite *trace_suite(void) {
    Suite *s = suite_create("trace");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_valid_version_00);
    tcase_add_test(tc, test_later_versions);
    tcase_add_test(tc, test_invalid_forms);
    suite_add_tcase(s, tc);
    return s;
}
