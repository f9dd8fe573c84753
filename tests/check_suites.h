// check_suites.h - declares `Suite *<module>_suite(void)` for every line of suites.def; each
// tests/check_<module>.c includes it so its suite function has a prototype.
#ifndef ND_CHECK_SUITES_H
#define ND_CHECK_SUITES_H

#include <check.h>

#define ND_SUITE(name) Suite *name##_suite(void);
#include "tests/api/suites.def"
#include "tests/server/suites.def"
#include "tests/suites.def"
#undef ND_SUITE

#endif
