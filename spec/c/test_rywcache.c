/* test_rywcache.c - read your own writes: what a write answered overlays
 * the store until a watch event supersedes it (the written
 * resourceVersion, a delete, another uid), never an older event. */
#include "harness.h"

#include "rywcache.h"
#include "store.h"

#include <stdio.h>
#include <string.h>

static const char *obj_json(char *buf, size_t n, const char *name, const char *uid, const char *rv,
                            const char *val)
{
    snprintf(buf, n,
             "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"ns\",\"uid\":\"%s\","
             "\"resourceVersion\":\"%s\"},\"data\":{\"v\":\"%s\"}}",
             name, uid, rv, val);
    return buf;
}

/* Put an object into the store as the informer would, and tell the overlay. */
static void watch_event(store *st, const char *name, const char *uid, const char *rv)
{
    char buf[512];
    kl_err err = {0};
    obj_json(buf, sizeof buf, name, uid, rv, "w");
    store_obj *o = store_obj_new(buf, strlen(buf), &err);
    const store_obj *in = store_put(st, o, NULL); /* o may have moved: use what is held */
    rywcache_observe(st, in->key, in);
}

static void watch_delete(store *st, const char *key)
{
    store_obj_free(store_remove(st, key));
    rywcache_observe(st, key, NULL);
}

static int count_each(void *ud, const store_obj *o)
{
    (void)o;
    (*(int *)ud)++;
    return 0;
}

TEST(a_write_is_read_until_the_watch_brings_it)
{
    store *st = store_new();
    watch_event(st, "a", "u1", "10");
    char buf[512];
    obj_json(buf, sizeof buf, "a", "u1", "20", "mine");
    CHECK(rywcache_record(st, NULL, buf, strlen(buf)) == 0);
    const store_obj *o = NULL;
    CHECK(rywcache_lookup(st, "ns/a", &o) == 1);
    CHECK(o && !strcmp(o->rv, "20"));
    watch_event(st, "a", "u1", "15");      /* an older change: the overlay stays */
    CHECK(rywcache_lookup(st, "ns/a", &o) == 1);
    watch_event(st, "a", "u1", "20");      /* ours: the store has it now */
    CHECK(rywcache_lookup(st, "ns/a", &o) == 0);
    CHECK(rywcache_len() == 0);
    store_free(st);
}

TEST(a_write_the_watch_already_brought_is_not_kept)
{
    store *st = store_new();
    watch_event(st, "a", "u1", "30");
    char buf[512];
    obj_json(buf, sizeof buf, "a", "u1", "30", "w");
    CHECK(rywcache_record(st, NULL, buf, strlen(buf)) == 0);
    const store_obj *o = NULL;
    CHECK(rywcache_lookup(st, "ns/a", &o) == 0);
    store_free(st);
}

TEST(a_create_is_listed_and_a_delete_hides_the_object)
{
    store *st = store_new();
    char buf[512];
    obj_json(buf, sizeof buf, "new", "u2", "5", "w");
    CHECK(rywcache_record(st, NULL, buf, strlen(buf)) == 0);
    int n = 0;
    rywcache_each(st, count_each, &n);
    CHECK(n == 1);
    watch_event(st, "gone", "u3", "6");
    CHECK(rywcache_record_delete(st, NULL, "ns/gone", "u3") == 0);
    const store_obj *o = (const store_obj *)1;
    CHECK(rywcache_lookup(st, "ns/gone", &o) == 1 && o == NULL);
    watch_event(st, "gone", "u3", "7");    /* an update from before the delete */
    CHECK(rywcache_lookup(st, "ns/gone", &o) == 1 && o == NULL);
    watch_delete(st, "ns/gone");            /* the delete arrives */
    CHECK(rywcache_lookup(st, "ns/gone", &o) == 0);
    rywcache_forget_store(st);
    CHECK(rywcache_len() == 0);
    store_free(st);
}

TEST(a_new_object_under_the_name_supersedes_a_delete)
{
    store *st = store_new();
    watch_event(st, "b", "u4", "8");
    CHECK(rywcache_record_delete(st, NULL, "ns/b", "u4") == 0);
    watch_event(st, "b", "u5", "9");       /* deleted and created again by someone */
    const store_obj *o = NULL;
    CHECK(rywcache_lookup(st, "ns/b", &o) == 0);
    store_free(st);
}

TEST(an_answer_the_watch_brought_and_passed_is_not_laid_over)
{
    store *st = store_new();
    watch_event(st, "c", "u7", "1");
    ryw_pending *p = rywcache_begin(st, "ns/c");
    watch_event(st, "c", "u7", "2");       /* our write, by the watch, before its answer */
    watch_event(st, "c", "u7", "3");       /* and someone's after it */
    char buf[512];
    obj_json(buf, sizeof buf, "c", "u7", "2", "mine");
    CHECK(rywcache_record(st, p, buf, strlen(buf)) == 0);
    const store_obj *o = NULL;
    CHECK(rywcache_lookup(st, "ns/c", &o) == 0);  /* the store's newer version is read */
    ryw_pending *q = rywcache_begin(st, "ns/c");
    watch_delete(st, "ns/c");               /* our delete, by the watch, first */
    watch_event(st, "c", "u8", "4");       /* created again */
    CHECK(rywcache_record_delete(st, q, "ns/c", "u7") == 0);
    CHECK(rywcache_lookup(st, "ns/c", &o) == 0);
    rywcache_abandon(rywcache_begin(st, "ns/c"));   /* a cancelled write leaves nothing */
    CHECK(rywcache_len() == 0);
    store_free(st);
}

TEST(stores_are_kept_apart)
{
    store *a = store_new(), *b = store_new();
    char buf[512];
    obj_json(buf, sizeof buf, "x", "u6", "1", "w");
    CHECK(rywcache_record(a, NULL, buf, strlen(buf)) == 0);
    const store_obj *o = NULL;
    CHECK(rywcache_lookup(b, "ns/x", &o) == 0);
    rywcache_forget_store(a);
    CHECK(rywcache_lookup(a, "ns/x", &o) == 0);
    store_free(a);
    store_free(b);
}

int main(void)
{
    RUN(a_write_is_read_until_the_watch_brings_it);
    RUN(a_write_the_watch_already_brought_is_not_kept);
    RUN(a_create_is_listed_and_a_delete_hides_the_object);
    RUN(a_new_object_under_the_name_supersedes_a_delete);
    RUN(an_answer_the_watch_brought_and_passed_is_not_laid_over);
    RUN(stores_are_kept_apart);
    DONE();
}
