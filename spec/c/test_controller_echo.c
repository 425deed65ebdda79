/* test_controller_echo.c - a controller knows the watch's echo of its own
 * writes, and nothing else. */
#include "controller_echo.h"
#include "harness.h"

#include <stdio.h>

TEST(echo_is_the_exact_write_for_the_same_key)
{
    controller_echo *e = controller_echo_new();
    CHECK(e != NULL);
    CHECK(!controller_echo_is(e, "ns/a", "uid-a", "100"));
    CHECK(controller_echo_wrote(e, "ns/a", "uid-a", "100") == 0);
    CHECK(controller_echo_is(e, "ns/a", "uid-a", "100"));
    CHECK(controller_echo_is(e, "ns/a", "uid-a", "100"));   /* old and new owners: twice */
    CHECK(!controller_echo_is(e, "ns/a", "uid-a", "101"));  /* someone else's later write */
    CHECK(!controller_echo_is(e, "ns/a", "uid-b", "100"));  /* another object */
    CHECK(!controller_echo_is(e, "ns/b", "uid-a", "100"));  /* mapped to another key */
    CHECK(!controller_echo_is(e, "ns/a", "", "100"));
    CHECK(!controller_echo_is(e, "ns/a", "uid-a", ""));
    CHECK(controller_echo_wrote(e, "ns/a", NULL, "1") == -1);
    CHECK(controller_echo_wrote(e, "ns/a", "uid-a", "100") == 0);  /* twice: one entry */
    CHECK(controller_echo_len(e) == 1);
    controller_echo_clear(e);
    CHECK(controller_echo_len(e) == 0);
    CHECK(!controller_echo_is(e, "ns/a", "uid-a", "100"));
    controller_echo_free(e);
    controller_echo_free(NULL);
}

TEST(echo_book_is_bounded_oldest_first)
{
    controller_echo *e = controller_echo_new();
    CHECK(e != NULL);
    char uid[32], rv[32];
    for (int i = 0; i < CONTROLLER_ECHO_MAX + 100; i++) {
        snprintf(uid, sizeof uid, "u%d", i % 7);
        snprintf(rv, sizeof rv, "%d", i);
        CHECK(controller_echo_wrote(e, "ns/k", uid, rv) == 0);
    }
    CHECK(controller_echo_len(e) == CONTROLLER_ECHO_MAX);
    CHECK(!controller_echo_is(e, "ns/k", "u0", "0"));           /* the oldest went */
    snprintf(rv, sizeof rv, "%d", CONTROLLER_ECHO_MAX + 99);
    snprintf(uid, sizeof uid, "u%d", (CONTROLLER_ECHO_MAX + 99) % 7);
    CHECK(controller_echo_is(e, "ns/k", uid, rv));              /* the newest stays */
    controller_echo_clear(e);
    CHECK(controller_echo_len(e) == 0);
    CHECK(controller_echo_wrote(e, "k", "u", "1") == 0);        /* usable after a clear */
    CHECK(controller_echo_is(e, "k", "u", "1"));
    controller_echo_free(e);
}

int main(void)
{
    RUN(echo_is_the_exact_write_for_the_same_key);
    RUN(echo_book_is_bounded_oldest_first);
    DONE();
}
