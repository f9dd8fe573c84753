// check_change_msg.c - the shared store's change messages (server/change_msg.c): what a
// subscriber accepts and refuses, and that a formatted message reads back.
#include <check.h>
#include <string.h>

#include "server/change_msg.h"
#include "tests/check_suites.h"

static bool parse(const char *m, struct srv_change *c) {
    return srv_change_parse(m, strlen(m), c);
}

START_TEST(test_reads_layers_and_shared_arrays) {
    struct srv_change c;
    ck_assert(parse("L 7 bn.1", &c));
    ck_assert(!c.shared);
    ck_assert_uint_eq(c.version, 7);
    ck_assert_str_eq(c.name, "bn.1");
    ck_assert(parse("S 0 g", &c)); // a removal
    ck_assert(c.shared);
    ck_assert_uint_eq(c.version, 0);
    ck_assert(parse("L 18446744073709551615 x", &c));
    ck_assert_uint_eq(c.version, UINT64_MAX);
}
END_TEST

START_TEST(test_refuses_what_no_replica_sends) {
    struct srv_change c;
    const char *bad[] = {"",
                         "L",
                         "L 7",
                         "L 7 ",
                         "X 7 a",
                         "L7 a",
                         "L  7 a",
                         "L x a",
                         "L 7 a b",
                         "L 18446744073709551616 a",
                         "L 000000000000000000001 a",
                         "l 7 a",
                         "L -1 a",
                         "L 7 a\t",
                         "L 7 \x7f"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!parse(bad[i], &c), "accepted \"%s\"", bad[i]);
    char longname[SRV_CHANGE_NAME_MAX + 8];
    memset(longname, 'a', sizeof longname);
    memcpy(longname, "L 1 ", 4);
    ck_assert(srv_change_parse(longname, 4 + SRV_CHANGE_NAME_MAX, &c));
    ck_assert(!srv_change_parse(longname, 5 + SRV_CHANGE_NAME_MAX, &c));
    ck_assert(!srv_change_parse("L 1 a\0b", 7, &c)); // a NUL inside the name
}
END_TEST

START_TEST(test_format_reads_back) {
    struct srv_change c = {.shared = true, .version = 42}, back;
    strcpy(c.name, "scale_g");
    char buf[64];
    int n = srv_change_format(&c, buf, sizeof buf);
    ck_assert_str_eq(buf, "S 42 scale_g");
    ck_assert(srv_change_parse(buf, (size_t)n, &back));
    ck_assert(back.shared && back.version == 42 && strcmp(back.name, "scale_g") == 0);
    ck_assert_int_eq(srv_change_format(&c, buf, 5), -1);
}
END_TEST

Suite *change_msg_suite(void) {
    Suite *s = suite_create("change_msg");
    TCase *tc = tcase_create("messages");
    tcase_add_test(tc, test_reads_layers_and_shared_arrays);
    tcase_add_test(tc, test_refuses_what_no_replica_sends);
    tcase_add_test(tc, test_format_reads_back);
    suite_add_tcase(s, tc);
    return s;
}
