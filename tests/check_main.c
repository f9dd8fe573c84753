// check_main.c - runs every Check suite listed in suites.def.
//
// CK_RUN_SUITE=pool runs one suite, CK_FORK=no runs in-process (for gdb and valgrind), as
// Check itself provides.
#include <stdlib.h>

#include "tests/check_suites.h"

// Which list this runner runs: the core runner links only the engine (a stray dependency of
// core is then a link error); the api runner adds jansson.
#ifndef ND_SUITES_FILE
#define ND_SUITES_FILE "tests/suites.def"
#endif

int main(void) {
    SRunner *runner = srunner_create(NULL);
#define ND_SUITE(name) srunner_add_suite(runner, name##_suite());
#include ND_SUITES_FILE
#undef ND_SUITE
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
