/* test_controller_finalizers.c - the orphan scan at the first sync: which
 * klua.dev/... finalizers on cached objects it books for removal, also for
 * objects of an API group that itself ends in klua.dev (whose apiVersion
 * holds "klua.dev/" without any finalizer: the scan's cheap probe must tell
 * the two apart without missing a finalizer). */
#include "harness.h"
#include "controller_finalizers.h"
#include "store.h"

#include <stdio.h>
#include <stdlib.h>

#define API "bench.klua.dev/v1"

static void put(store *s, const char *name, const char *finalizers)
{
    char json[512];
    snprintf(json, sizeof json,
             "{\"apiVersion\":\"" API "\",\"kind\":\"Widget\",\"metadata\":{\"name\":\"%s\","
             "\"namespace\":\"ns\",\"uid\":\"u-%s\",\"resourceVersion\":\"1\"%s%s%s},"
             "\"spec\":{\"note\":\"see klua.dev/docs\"}}",
             name, name, finalizers ? ",\"finalizers\":[" : "", finalizers ? finalizers : "",
             finalizers ? "]" : "");
    kl_err err;
    store_obj *o = store_obj_new(json, strlen(json), &err);
    if (!o || !store_put(s, o, NULL)) {   /* NULL: memory, and o is still ours */
        printf("# store: %s\n", o ? "out of memory" : err.msg);
        store_obj_free(o);
    }
}

static size_t stale(const controller_finalizers *f, const char **out, size_t max)
{
    return controller_finalizers_stale(f, API, "Widget", out, max);
}

TEST(orphans_of_a_klua_dev_group_are_found)
{
    controller_finalizers *f = controller_finalizers_new(1);
    store *s = store_new();
    CHECK(f && s);
    if (!f || !s)
        goto out;
    put(s, "plain", NULL);
    put(s, "other", "\"example.com/keep\"");
    put(s, "orphaned", "\"example.com/keep\",\"klua.dev/old\"");
    put(s, "declared", "\"klua.dev/widget\"");
    CHECK(controller_finalizers_declare(f, "klua.dev/widget", API, "Widget") == 0);
    controller_finalizers_scan(f, s, API, "Widget");
    const char *names[4] = {0};
    size_t n = stale(f, names, 4);
    CHECK(n == 1);
    if (n == 1)
        CHECK_STR(names[0], "klua.dev/old");
out:
    store_free(s);
    controller_finalizers_free(f);
}

TEST(objects_without_klua_finalizers_book_nothing)
{
    controller_finalizers *f = controller_finalizers_new(1);
    store *s = store_new();
    CHECK(f && s);
    if (!f || !s)
        goto out;
    /* apiVersion and spec hold "klua.dev/" in every one of them */
    put(s, "a", NULL);
    put(s, "b", "\"example.com/keep\"");
    controller_finalizers_scan(f, s, API, "Widget");
    const char *names[2] = {0};
    CHECK(stale(f, names, 2) == 0);
out:
    store_free(s);
    controller_finalizers_free(f);
}

int main(void)
{
    RUN(orphans_of_a_klua_dev_group_are_found);
    RUN(objects_without_klua_finalizers_book_nothing);
    DONE();
}
