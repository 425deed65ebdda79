/* harness.h - a tiny TAP test harness for klua's C unit tests.
 *
 * Each test file defines tests with TEST(name) { ... } and lists them in
 * main via RUN(name). CHECK(cond) records a failure with file and line and
 * goes on; a test passes when none of its CHECKs failed. Output is TAP
 * ("ok 3 - name" / "not ok 4 - name"), counted by spec/run.sh.
 */
#ifndef KLUA_HARNESS_H
#define KLUA_HARNESS_H

#include <stdio.h>
#include <string.h>

static int th_count, th_failed_tests, th_cur_failed;

#define TEST(name) static void test_##name(void)
#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            th_cur_failed++;                                                              \
            printf("#   check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);          \
        }                                                                                 \
    } while (0)
#define CHECK_STR(a, b)                                                                   \
    do {                                                                                  \
        const char *th_a = (a), *th_b = (b);                                              \
        if (!th_a || !th_b || strcmp(th_a, th_b) != 0) {                                  \
            th_cur_failed++;                                                              \
            printf("#   check failed: %s == %s: \"%s\" vs \"%s\" (%s:%d)\n", #a, #b,        \
                   th_a ? th_a : "(null)", th_b ? th_b : "(null)", __FILE__, __LINE__);   \
        }                                                                                 \
    } while (0)
#define RUN(name)                                                                         \
    do {                                                                                  \
        th_cur_failed = 0;                                                                \
        test_##name();                                                                    \
        th_count++;                                                                       \
        if (th_cur_failed)                                                                \
            th_failed_tests++;                                                            \
        printf("%s %d - %s\n", th_cur_failed ? "not ok" : "ok", th_count, #name);         \
        fflush(stdout);                                                                   \
    } while (0)
#define DONE()                                                                            \
    do {                                                                                  \
        printf("1..%d\n", th_count);                                                      \
        return th_failed_tests ? 1 : 0;                                                   \
    } while (0)

#endif
