/* test_store.c - the informer cache: metadata extraction, exact bytes,
 * put/replace/remove with index maintenance, selector, namespace and owner
 * queries, the cache transforms (managedFields dropped by default, kept on
 * request, keep projections) and the memory cost per object under each. */
#include "harness.h"
#include "store.h"
#include "store_transform.h"

#include <stdint.h>
#include <stdlib.h>

static store_obj *obj(const char *json)
{
    kl_err err;
    store_obj *o = store_obj_new(json, strlen(json), &err);
    if (!o)
        printf("# store_obj_new: %s\n", err.msg);
    return o;
}

/* A small object: ns may be "", labels is the JSON object body, owner a uid or NULL. */
static store_obj *mk(const char *ns, const char *name, const char *labels, const char *owner)
{
    char buf[1024];
    char owners[128] = "";
    if (owner)
        snprintf(owners, sizeof owners,
                 ",\"ownerReferences\":[{\"kind\":\"Deployment\",\"name\":\"d\",\"uid\":\"%s\"}]",
                 owner);
    snprintf(buf, sizeof buf,
             "{\"kind\":\"Pod\",\"metadata\":{\"namespace\":\"%s\",\"name\":\"%s\","
             "\"labels\":{%s}%s}}",
             ns, name, labels, owners);
    return obj(buf);
}

/* Collects visited keys, sorted and comma-joined, for comparisons. */
typedef struct seen {
    char *keys[64];
    size_t n;
    size_t total;      /* every visit, also past the 64 keys kept */
    size_t stop_after; /* 0 = never */
    char joined[1024];
} seen;

static int collect(void *ud, const store_obj *o)
{
    seen *s = ud;
    s->total++;
    if (s->n < 64)
        s->keys[s->n++] = o->key;
    return s->stop_after && s->n >= s->stop_after;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *joined(seen *s)
{
    qsort(s->keys, s->n, sizeof s->keys[0], cmp_str);
    size_t off = 0;
    s->joined[0] = '\0';
    for (size_t i = 0; i < s->n && off < sizeof s->joined; i++)
        off += (size_t)snprintf(s->joined + off, sizeof s->joined - off, "%s%s", i ? "," : "",
                                s->keys[i]);
    return s->joined;
}

static const char *select_keys(const store *st, const char *ns, const char *sel)
{
    static seen s;
    kl_err err;
    memset(&s, 0, sizeof s);
    if (store_each_selected(st, ns, sel, collect, &s, &err) < 0)
        return "(error)";
    return joined(&s);
}

static const char *owned_by(const store *st, const char *uid)
{
    static seen s;
    memset(&s, 0, sizeof s);
    store_each_owned_by(st, uid, collect, &s);
    return joined(&s);
}

static const char *in_ns(const store *st, const char *ns)
{
    static seen s;
    memset(&s, 0, sizeof s);
    store_each_in_namespace(st, ns, collect, &s);
    return joined(&s);
}

TEST(object_metadata_is_extracted)
{
    const char *json =
        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\n  \"metadata\" : {\"name\":\"cm\","
        "\"namespace\":\"prod\",\"uid\":\"u-1\",\"resourceVersion\":\"42\",\"generation\":7,"
        "\"deletionTimestamp\":\"2024-01-01T00:00:00Z\","
        "\"labels\":{\"app\":\"web\",\"note\":\"a\\\"b\\u00e9\"},"
        "\"ownerReferences\":[{\"uid\":\"o-1\"},{\"name\":\"no-uid\"},{\"uid\":\"o-2\"}]},"
        "\"data\":{\"k\":\"v\"}}";
    store_obj *o = obj(json);
    CHECK(o != NULL);
    if (!o)
        return;
    CHECK_STR(o->key, "prod/cm");
    CHECK_STR(o->ns, "prod");
    CHECK_STR(o->name, "cm");
    CHECK_STR(o->uid, "u-1");
    CHECK_STR(o->rv, "42");
    CHECK(o->generation == 7);
    CHECK(o->deleting == 1);
    CHECK(o->nlabels == 2);
    CHECK_STR(store_obj_label(o, "app"), "web");
    CHECK_STR(store_obj_label(o, "note"), "a\"b\xc3\xa9"); /* unescaped */
    CHECK(store_obj_label(o, "missing") == NULL);
    store_obj *nul = obj("{\"metadata\":{\"name\":\"n\",\"labels\":{\"a\":\"1\","
                         "\"b\":\"x\\u0000y\",\"c\":\"3\"}}}");
    CHECK(nul && nul->nlabels == 2 && strcmp(store_obj_label(nul, "c"), "3") == 0 &&
          !store_obj_label(nul, "b") && !store_obj_label(nul, "y"));
    store_obj_free(nul);
    CHECK(o->nowners == 2);
    CHECK_STR(o->owner_uids[0], "o-1");
    CHECK_STR(o->owner_uids[1], "o-2");
    /* the exact bytes as given, whitespace and escapes included */
    CHECK(o->json_len == strlen(json));
    CHECK(memcmp(o->json, json, o->json_len) == 0);
    store_obj_free(o);

    o = obj("{\"metadata\":{\"name\":\"node-1\",\"deletionTimestamp\":null}}");
    CHECK(o != NULL);
    if (!o)
        return;
    CHECK_STR(o->key, "node-1"); /* cluster-scoped */
    CHECK_STR(o->ns, "");
    CHECK_STR(o->uid, "");
    CHECK(o->deleting == 0);
    CHECK(o->generation == 0);
    CHECK(o->nlabels == 0 && o->nowners == 0);
    store_obj_free(o);
}

TEST(objects_without_a_name_are_rejected)
{
    kl_err err;
    const char *cases[][2] = {
        {"{\"metadata\":{\"namespace\":\"a\"}}", "cannot cache object: it has no metadata.name"},
        {"{\"metadata\":{\"name\":\"\"}}", "cannot cache object: it has no metadata.name"},
        {"{\"metadata\":{\"name\":5}}", "cannot cache object: it has no metadata.name"},
        {"{\"kind\":\"Pod\"}", "cannot cache object: it has no metadata"},
        {"[1,2]", "cannot cache object: it has no metadata"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kl_err_clear(&err);
        CHECK(store_obj_new(cases[i][0], strlen(cases[i][0]), &err) == NULL);
        CHECK_STR(err.msg, cases[i][1]);
    }
    kl_err_clear(&err);
    CHECK(store_obj_new("{\"metadata\":", 12, &err) == NULL);
    CHECK(strncmp(err.msg, "cannot cache object: ", 21) == 0 && strlen(err.msg) > 21);
}

TEST(put_replace_remove_maintain_indexes)
{
    store *s = store_new();
    store_obj *old = (store_obj *)1;
    CHECK(store_put(s, mk("a", "x", "\"app\":\"web\",\"tier\":\"fe\"", "u1"), &old) != NULL);
    CHECK(old == NULL);
    CHECK(store_put(s, mk("a", "y", "\"app\":\"db\"", "u1"), NULL) != NULL);
    CHECK(store_put(s, mk("b", "z", "\"app\":\"web\"", NULL), NULL) != NULL);
    CHECK(store_len(s) == 3);
    CHECK_STR(select_keys(s, NULL, "app=web"), "a/x,b/z");
    CHECK_STR(owned_by(s, "u1"), "a/x,a/y");

    /* a/x changes labels and owner: it moves between index sets */
    CHECK(store_put(s, mk("a", "x", "\"app\":\"db\"", "u2"), &old) != NULL);
    CHECK(old != NULL && old && strcmp(store_obj_label(old, "app"), "web") == 0);
    store_obj_free(old);
    CHECK(store_len(s) == 3);
    CHECK_STR(select_keys(s, NULL, "app=web"), "b/z");
    CHECK_STR(select_keys(s, NULL, "app=db"), "a/x,a/y");
    CHECK_STR(select_keys(s, NULL, "tier=fe"), "");
    CHECK_STR(select_keys(s, NULL, "tier"), "");
    CHECK_STR(owned_by(s, "u1"), "a/y");
    CHECK_STR(owned_by(s, "u2"), "a/x");
    CHECK_STR(store_obj_label(store_get(s, "a/x"), "app"), "db");

    store_obj *gone = store_remove(s, "a/x");
    CHECK(gone != NULL && gone && strcmp(gone->key, "a/x") == 0);
    store_obj_free(gone);
    CHECK(store_remove(s, "a/x") == NULL);
    CHECK(store_get(s, "a/x") == NULL);
    CHECK(store_len(s) == 2);
    CHECK_STR(select_keys(s, NULL, "app=db"), "a/y");
    CHECK_STR(owned_by(s, "u2"), "");
    CHECK_STR(in_ns(s, "a"), "a/y");
    store_free(s);
}

TEST(selector_queries)
{
    store *s = store_new();
    store_put(s, mk("a", "web1", "\"app\":\"web\",\"env\":\"prod\"", NULL), NULL);
    store_put(s, mk("a", "web2", "\"app\":\"web\",\"env\":\"dev\"", NULL), NULL);
    store_put(s, mk("b", "web3", "\"app\":\"web\"", NULL), NULL);
    store_put(s, mk("b", "db1", "\"app\":\"db\",\"env\":\"prod\"", NULL), NULL);
    store_put(s, mk("", "node", "\"app.kubernetes.io/name\":\"n\"", NULL), NULL);

    CHECK_STR(select_keys(s, NULL, ""), "a/web1,a/web2,b/db1,b/web3,node");
    CHECK_STR(select_keys(s, "b", ""), "b/db1,b/web3");
    CHECK_STR(select_keys(s, NULL, "app=web"), "a/web1,a/web2,b/web3");
    CHECK_STR(select_keys(s, "a", "app==web,env!=dev"), "a/web1");
    CHECK_STR(select_keys(s, "b", "app=web"), "b/web3");
    CHECK_STR(select_keys(s, NULL, "app=nothing"), "");
    CHECK_STR(select_keys(s, NULL, "env in (prod,staging)"), "a/web1,b/db1");
    CHECK_STR(select_keys(s, NULL, "env notin (prod)"), "a/web2,b/web3,node");
    CHECK_STR(select_keys(s, NULL, "env"), "a/web1,a/web2,b/db1");
    CHECK_STR(select_keys(s, "b", "!env"), "b/web3");
    CHECK_STR(select_keys(s, NULL, "app.kubernetes.io/name=n"), "node");
    CHECK_STR(select_keys(s, NULL, "app in (db)"), "b/db1");

    kl_err err;
    kl_err_clear(&err);
    seen sn = {0};
    CHECK(store_each_selected(s, NULL, "app in (web", collect, &sn, &err) == -1);
    CHECK_STR(err.msg, "invalid label selector \"app in (web\": expected ')' at 11");
    CHECK(sn.n == 0);
    store_free(s);
}

TEST(namespace_iteration_and_early_stop)
{
    store *s = store_new();
    store_put(s, mk("a", "1", "", NULL), NULL);
    store_put(s, mk("a", "2", "", NULL), NULL);
    store_put(s, mk("b", "1", "", NULL), NULL);
    store_put(s, mk("", "c", "", NULL), NULL);
    CHECK_STR(in_ns(s, "a"), "a/1,a/2");
    CHECK_STR(in_ns(s, "b"), "b/1");
    CHECK_STR(in_ns(s, "zzz"), "");
    CHECK_STR(in_ns(s, NULL), "a/1,a/2,b/1,c");
    /* a replace without taking the old object: the store frees it */
    CHECK(store_put(s, mk("a", "1", "\"v\":\"2\"", NULL), NULL) != NULL);
    CHECK(store_len(s) == 4);
    CHECK_STR(in_ns(s, "a"), "a/1,a/2");

    seen sn = {0};
    sn.stop_after = 2;
    store_each(s, collect, &sn);
    CHECK(sn.n == 2);
    memset(&sn, 0, sizeof sn);
    sn.stop_after = 1;
    store_each_in_namespace(s, "a", collect, &sn);
    CHECK(sn.n == 1);
    store_free(s);
}

/* Heavy churn exercises the tables' deletion (entries shift back). */
TEST(churn_keeps_every_key_reachable)
{
    store *s = store_new();
    char name[32], labels[64], owner[32];
    int n = 3000, ok = 1;
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "o%d", i);
        snprintf(labels, sizeof labels, "\"mod\":\"m%d\",\"id\":\"i%d\"", i % 7, i);
        snprintf(owner, sizeof owner, "own%d", i % 13);
        if (store_put(s, mk("ns", name, labels, owner), NULL) == NULL)
            ok = 0;
    }
    for (int i = 0; i < n; i += 2) {
        snprintf(name, sizeof name, "ns/o%d", i);
        store_obj_free(store_remove(s, name));
    }
    CHECK(ok);
    CHECK(store_len(s) == (size_t)n / 2);
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "ns/o%d", i);
        if ((store_get(s, name) != NULL) != (i % 2 == 1))
            ok = 0;
        snprintf(labels, sizeof labels, "id=i%d", i);
        seen sn = {0};
        store_each_selected(s, NULL, labels, collect, &sn, NULL);
        if (sn.n != (size_t)(i % 2))
            ok = 0;
    }
    CHECK(ok);
    seen sn = {0};
    store_each_selected(s, "ns", "mod=m3", collect, &sn, NULL);
    size_t expect = 0;
    for (int i = 1; i < n; i += 2)
        expect += i % 7 == 3;
    CHECK(sn.total == expect);
    store_free(s);
}

/* Counts the objects a brute-force scan finds: what an index must agree with. */
typedef struct scan {
    const char *ns, *label_key, *label_val, *owner;
    size_t n;
} scan;

static int scan_one(void *ud, const store_obj *o)
{
    scan *sc = ud;
    int ok = !sc->ns || strcmp(o->ns, sc->ns) == 0;
    if (sc->label_key) {
        const char *v = store_obj_label(o, sc->label_key);
        ok = ok && v && strcmp(v, sc->label_val) == 0;
    }
    int owned = !sc->owner;
    for (size_t i = 0; sc->owner && i < o->nowners; i++)
        owned |= strcmp(o->owner_uids[i], sc->owner) == 0;
    sc->n += ok && owned;
    return 0;
}

static size_t scanned(const store *s, const char *ns, const char *k, const char *v,
                      const char *owner)
{
    scan sc = {ns, k, v, owner, 0};
    store_each(s, scan_one, &sc);
    return sc.n;
}

/* Indexes cost nothing until a query needs one; from then on every put,
 * replace and remove keeps them equal to a scan. */
TEST(indexes_are_built_on_first_query_and_kept_up_to_date)
{
    store *s = store_new();
    char name[32], labels[64], owner[32], sel[32];
    int ok = 1;
    for (int i = 0; i < 500; i++) {
        snprintf(name, sizeof name, "o%d", i);
        snprintf(labels, sizeof labels, "\"mod\":\"m%d\",\"app\":\"a\"", i % 7);
        snprintf(owner, sizeof owner, "own%d", i % 13);
        ok &= store_put(s, mk(i % 2 ? "odd" : "even", name, labels, owner), NULL) != NULL;
    }
    CHECK(ok);
    size_t before = store_bytes(s);
    CHECK(strlen(select_keys(s, "odd", "mod=m3,app=a")) > 0);
    size_t with_label = store_bytes(s);
    CHECK(with_label > before); /* the label index exists now, not before */
    in_ns(s, "odd");
    owned_by(s, "own1");
    CHECK(store_bytes(s) > with_label);
    /* churn: replaces change labels, namespaces stay, owners move; removes */
    for (int i = 0; i < 500; i += 3) {
        snprintf(name, sizeof name, "o%d", i);
        snprintf(labels, sizeof labels, "\"mod\":\"m%d\"", (i + 1) % 7);
        snprintf(owner, sizeof owner, "own%d", (i + 5) % 13);
        ok &= store_put(s, mk(i % 2 ? "odd" : "even", name, labels, owner), NULL) != NULL;
    }
    for (int i = 0; i < 500; i += 5) {
        snprintf(name, sizeof name, "%s/o%d", i % 2 ? "odd" : "even", i);
        store_obj_free(store_remove(s, name));
    }
    CHECK(ok);
    for (int m = 0; m < 7; m++) {
        snprintf(sel, sizeof sel, "mod=m%d", m);
        snprintf(labels, sizeof labels, "m%d", m);
        seen sn = {0};
        store_each_selected(s, NULL, sel, collect, &sn, NULL);
        ok &= sn.total == scanned(s, NULL, "mod", labels, NULL);
        memset(&sn, 0, sizeof sn);
        store_each_selected(s, "even", sel, collect, &sn, NULL);
        ok &= sn.total == scanned(s, "even", "mod", labels, NULL);
    }
    for (int i = 0; i < 13; i++) {
        snprintf(owner, sizeof owner, "own%d", i);
        seen sn = {0};
        store_each_owned_by(s, owner, collect, &sn);
        ok &= sn.total == scanned(s, NULL, NULL, NULL, owner);
    }
    seen sn = {0};
    store_each_in_namespace(s, "even", collect, &sn);
    ok &= sn.total == scanned(s, "even", NULL, NULL, NULL) && sn.total > 0;
    CHECK(ok);
    store_free(s);
}

/* Objects live packed in the store's arena. Replacing every object again
 * and again leaves dead copies behind: the store moves the survivors of
 * sparse blocks and frees those, so memory stays near what one copy of each
 * costs; every key, index and object read back stays right, and a replaced
 * object its caller still holds is never moved or freed under it. */
TEST(churn_packs_the_arena_and_keeps_every_object_right)
{
    enum { N = 3000, ROUNDS = 12 };
    store *s = store_new();
    char name[32], labels[96], owner[32], key[48];
    int ok = 1;
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "o%d", i);
        snprintf(labels, sizeof labels, "\"mod\":\"m%d\",\"round\":\"r0\"", i % 7);
        snprintf(owner, sizeof owner, "own%d", i % 13);
        ok &= store_put(s, mk(i % 2 ? "odd" : "even", name, labels, owner), NULL) != NULL;
    }
    /* build every index before the churn, so that moves must update them */
    in_ns(s, "odd");
    owned_by(s, "own1");
    select_keys(s, NULL, "mod=m1");
    select_keys(s, NULL, "round=r0");
    size_t one_copy = store_bytes(s), peak = 0;
    store_obj *held = NULL; /* a replaced object kept across many puts */
    for (int r = 1; r <= ROUNDS; r++) {
        for (int i = 0; i < N; i++) {
            snprintf(name, sizeof name, "o%d", i);
            snprintf(labels, sizeof labels, "\"mod\":\"m%d\",\"round\":\"r%d\"", (i + r) % 7, r);
            snprintf(owner, sizeof owner, "own%d", (i + r) % 13);
            store_obj *old = NULL;
            ok &= store_put(s, mk(i % 2 ? "odd" : "even", name, labels, owner), &old) != NULL;
            if (r == 1 && i == 10)
                held = old;
            else
                store_obj_free(old);
        }
        size_t b = store_bytes(s);
        peak = b > peak ? b : peak;
    }
    CHECK(ok);
    printf("# arena: %zu bytes for one copy of each, at most %zu after %d rounds of replaces\n",
           one_copy, peak, ROUNDS);
    CHECK(peak < one_copy * 3 / 2);
    CHECK(held && strcmp(held->key, "even/o10") == 0 && strcmp(store_obj_label(held, "round"), "r0") == 0);
    store_obj_free(held);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "%s/o%d", i % 2 ? "odd" : "even", i);
        const store_obj *o = store_get(s, key);
        snprintf(labels, sizeof labels, "m%d", (i + ROUNDS) % 7);
        snprintf(owner, sizeof owner, "own%d", (i + ROUNDS) % 13);
        ok &= o && strcmp(o->key, key) == 0 && strcmp(o->name, key + (i % 2 ? 4 : 5)) == 0 &&
              strcmp(store_obj_label(o, "mod"), labels) == 0 && o->nowners == 1 &&
              strcmp(o->owner_uids[0], owner) == 0 && strstr(o->json, key + (i % 2 ? 4 : 5));
    }
    CHECK(ok);
    for (int m = 0; m < 7; m++) {
        snprintf(labels, sizeof labels, "mod=m%d", m);
        snprintf(name, sizeof name, "m%d", m);
        seen sn = {0};
        store_each_selected(s, NULL, labels, collect, &sn, NULL);
        ok &= sn.total == scanned(s, NULL, "mod", name, NULL);
    }
    for (int i = 0; i < 13; i++) {
        snprintf(owner, sizeof owner, "own%d", i);
        seen sn = {0};
        store_each_owned_by(s, owner, collect, &sn);
        ok &= sn.total == scanned(s, NULL, NULL, NULL, owner);
    }
    seen sn = {0};
    store_each_in_namespace(s, "odd", collect, &sn);
    ok &= sn.total == N / 2;
    CHECK(ok);
    /* removed objects outlive their store until their owner frees them */
    store_obj *kept = store_remove(s, "odd/o1");
    store_free(s);
    CHECK(kept && strcmp(kept->key, "odd/o1") == 0);
    store_obj_free(kept);
}

/* An object larger than an arena piece is held as it came. */
TEST(a_large_object_is_kept_whole)
{
    size_t n = 100000;
    char *big = malloc(n + 128);
    CHECK(big != NULL);
    if (!big)
        return;
    int h = snprintf(big, 128, "{\"metadata\":{\"name\":\"big\",\"namespace\":\"a\"},\"data\":\"");
    memset(big + h, 'x', n);
    strcpy(big + h + n, "\"}");
    store *s = store_new();
    CHECK(store_put(s, obj(big), NULL) != NULL);
    CHECK(store_put(s, mk("a", "small", "", NULL), NULL) != NULL);
    const store_obj *o = store_get(s, "a/big");
    CHECK(o && o->json_len == strlen(big) && memcmp(o->json, big, o->json_len) == 0);
    CHECK_STR(in_ns(s, "a"), "a/big,a/small");
    store_obj_free(store_remove(s, "a/big"));
    CHECK(store_len(s) == 1);
    store_free(s);
    free(big);
}

/* A realistic ~1 KB object (a Deployment-owned Pod-ish ConfigMap). */
static size_t make_1k(char *buf, size_t cap, int i)
{
    int n = snprintf(
        buf, cap,
        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"config-%06d\","
        "\"namespace\":\"team-%d\",\"uid\":\"6f1c2d3e-%04x-4a5b-9c8d-%012d\","
        "\"resourceVersion\":\"%d\",\"generation\":1,"
        "\"creationTimestamp\":\"2024-05-01T12:00:00Z\","
        "\"labels\":{\"app.kubernetes.io/name\":\"svc-%d\",\"app.kubernetes.io/part-of\":\"shop\","
        "\"tier\":\"%s\",\"pod-template-hash\":\"%08x\"},"
        "\"annotations\":{\"klua.dev/note\":\"generated for the memory test\"},"
        "\"ownerReferences\":[{\"apiVersion\":\"apps/v1\",\"kind\":\"ReplicaSet\","
        "\"name\":\"rs-%d\",\"uid\":\"9a8b7c6d-0000-4000-8000-%012d\",\"controller\":true,"
        "\"blockOwnerDeletion\":true}],"
        "\"managedFields\":[{\"manager\":\"kubectl\",\"operation\":\"Update\","
        "\"apiVersion\":\"v1\",\"time\":\"2024-05-01T12:00:00Z\",\"fieldsType\":\"FieldsV1\","
        "\"fieldsV1\":{\"f:data\":{\".\":{},\"f:config.yaml\":{}}}}]},"
        "\"data\":{\"config.yaml\":\"",
        i, i % 20, i & 0xffff, i, 1000 + i, i % 50, (i % 3) ? "backend" : "frontend",
        (unsigned)(i * 2654435761u), i / 4, i / 4);
    /* pad the data to reach ~1 KB */
    while (n < 1000 && (size_t)n + 2 < cap)
        buf[n++] = 'x';
    n += snprintf(buf + n, cap - (size_t)n, "\"}}");
    return (size_t)n;
}

/* The JSON the cache keeps of json under t (NULL: the default); caller frees. */
static char *kept(const char *json, const store_transform *t, const char *av, const char *kind)
{
    json_doc d = {0};
    kl_buf out = KL_BUF_INIT;
    char *r = NULL;
    if (json_parse(&d, json, strlen(json), NULL) == 0 &&
        store_transform_apply(t, &d, 0, av, kind, &out) == 0)
        r = kl_buf_take(&out);
    kl_buf_free(&out);
    json_doc_free(&d);
    return r;
}

#define MF "\"managedFields\":[{\"manager\":\"kubectl\",\"fieldsV1\":{\"f:data\":{}}}]"

TEST(managed_fields_are_dropped_by_default)
{
    /* wherever managedFields sits among metadata's members */
    const char *in[] = {
        "{\"metadata\":{\"name\":\"a\"," MF ",\"uid\":\"u\"},\"data\":{\"k\":\"v\"}}",
        "{\"metadata\":{" MF ",\"name\":\"a\",\"uid\":\"u\"},\"data\":{\"k\":\"v\"}}",
        "{\"metadata\":{\"name\":\"a\",\"uid\":\"u\" , " MF " },\"data\":{\"k\":\"v\"}}",
    };
    for (size_t i = 0; i < 3; i++) {
        char *k = kept(in[i], NULL, NULL, NULL);
        CHECK(k && !strstr(k, "managedFields") && strstr(k, "\"name\":\"a\"") &&
              strstr(k, "\"uid\":\"u\"") && strstr(k, "\"data\":{\"k\":\"v\"}"));
        /* what is kept is valid JSON */
        json_doc d = {0};
        CHECK(k && json_parse(&d, k, strlen(k), NULL) == 0);
        json_doc_free(&d);
        free(k);
    }
    char *k = kept("{\"metadata\":{" MF "}}", NULL, NULL, NULL);
    CHECK_STR(k, "{\"metadata\":{}}");
    free(k);
    /* nothing to drop: the bytes are the server's, exactly */
    const char *plain = "{ \"metadata\" : {\"name\":\"a\"} , \"x\":[1, 2] }";
    k = kept(plain, NULL, NULL, NULL);
    CHECK_STR(k, plain);
    free(k);
    /* a managedFields elsewhere than metadata is data, and stays */
    k = kept("{\"spec\":{" MF "},\"metadata\":{\"name\":\"a\"}}", NULL, NULL, NULL);
    CHECK(k && strstr(k, "managedFields"));
    free(k);
}

TEST(managed_fields_kept_on_request)
{
    store_transform t = {1, NULL, 0};
    const char *in = "{\"metadata\":{\"name\":\"a\"," MF "}}";
    char *k = kept(in, &t, NULL, NULL);
    CHECK_STR(k, in);
    free(k);
}

TEST(a_projection_keeps_the_paths_and_what_klua_needs)
{
    store_transform t = STORE_TRANSFORM_DEFAULT;
    kl_err err;
    CHECK(store_transform_keep(&t, "spec.replicas", &err) == 0);
    CHECK(store_transform_keep(&t, "metadata.annotations", &err) == 0);
    CHECK(store_transform_keep(&t, "status", &err) == 0);
    CHECK(store_transform_keep(&t, "a..b", &err) == -1);
    CHECK(store_transform_keep(&t, "", &err) == -1);
    const char *in =
        "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"d\","
        "\"namespace\":\"ns\",\"uid\":\"u\",\"resourceVersion\":\"7\",\"generation\":3,"
        "\"creationTimestamp\":\"2024-01-01T00:00:00Z\",\"deletionTimestamp\":null,"
        "\"finalizers\":[\"f\"],\"labels\":{\"app\":\"x\"},\"annotations\":{\"a\":\"b\"},"
        "\"ownerReferences\":[{\"uid\":\"o\"}]," MF "},\"spec\":{\"replicas\":2,"
        "\"template\":{\"big\":\"yyyyyyyy\"}},\"status\":{\"ready\":1}}";
    char *k = kept(in, &t, NULL, NULL);
    CHECK_STR(k, "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"d\","
                 "\"namespace\":\"ns\",\"uid\":\"u\",\"resourceVersion\":\"7\",\"generation\":3,"
                 "\"deletionTimestamp\":null,\"finalizers\":[\"f\"],\"labels\":{\"app\":\"x\"},"
                 "\"annotations\":{\"a\":\"b\"},\"ownerReferences\":[{\"uid\":\"o\"}]},"
                 "\"spec\":{\"replicas\":2},\"status\":{\"ready\":1}}");
    free(k);
    /* keeping metadata whole still drops managedFields, unless asked */
    store_transform m = STORE_TRANSFORM_DEFAULT;
    CHECK(store_transform_keep(&m, "metadata", &err) == 0);
    k = kept(in, &m, NULL, NULL);
    CHECK(k && strstr(k, "creationTimestamp") && !strstr(k, "managedFields") && !strstr(k, "spec"));
    free(k);
    m.managed_fields = 1;
    k = kept(in, &m, NULL, NULL);
    CHECK(k && strstr(k, "managedFields"));
    free(k);
    /* the same paths in another order are the same transform */
    store_transform u = STORE_TRANSFORM_DEFAULT, c;
    CHECK(store_transform_keep(&u, "status", &err) == 0);
    CHECK(store_transform_keep(&u, "metadata.annotations", &err) == 0);
    CHECK(!store_transform_same(&t, &u));
    CHECK(store_transform_keep(&u, "spec.replicas", &err) == 0);
    CHECK(store_transform_same(&t, &u));
    CHECK(store_transform_copy(&c, &t) == 0 && store_transform_same(&c, &t));
    store_transform dflt = STORE_TRANSFORM_DEFAULT;
    CHECK(!store_transform_same(&dflt, &t) && !store_transform_same(&dflt, &m));
    store_transform_clear(&t);
    store_transform_clear(&u);
    store_transform_clear(&c);
    store_transform_clear(&m);
}

TEST(list_items_get_apiVersion_and_kind)
{
    char *k = kept("{\"metadata\":{\"name\":\"a\"}}", NULL, "v1", "ConfigMap");
    CHECK_STR(k, "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\"}}");
    free(k);
    k = kept("{}", NULL, "v1", "ConfigMap");
    CHECK_STR(k, "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\"}");
    free(k);
    k = kept("{\"kind\":\"X\",\"apiVersion\":\"g/v\",\"metadata\":{}}", NULL, "v1", "ConfigMap");
    CHECK_STR(k, "{\"kind\":\"X\",\"apiVersion\":\"g/v\",\"metadata\":{}}");
    free(k);
}

/* Bytes per cached object of N objects kept under t; *json_avg: the wire
 * JSON's average size. */
static size_t per_object(const store_transform *t, size_t *json_avg)
{
    enum { N = 10000 };
    store *s = store_new();
    char buf[2048];
    size_t json_total = 0, empty = store_bytes(s), ok = 1;
    kl_buf out = KL_BUF_INIT;
    for (int i = 0; i < N; i++) {
        size_t len = make_1k(buf, sizeof buf, i);
        json_total += len;
        json_doc d = {0};
        kl_buf_reset(&out);
        store_obj *o = NULL;
        if (json_parse(&d, buf, len, NULL) == 0 &&
            store_transform_apply(t, &d, 0, NULL, NULL, &out) == 0)
            o = store_obj_from_doc(&d, 0, out.data, out.len, NULL);
        json_doc_free(&d);
        if (!o || store_put(s, o, NULL) == NULL)
            ok = 0;
    }
    kl_buf_free(&out);
    CHECK(ok);
    size_t per = (store_bytes(s) - empty) / N;
    *json_avg = json_total / N;
    store_free(s);
    return per;
}

TEST(memory_per_object_under_each_transform)
{
    store_transform whole = {1, NULL, 0}, dflt = STORE_TRANSFORM_DEFAULT, spec = {0, NULL, 0};
    kl_err err;
    CHECK(store_transform_keep(&spec, "spec", &err) == 0);
    size_t json, pw = per_object(&whole, &json), pd = per_object(&dflt, &json),
                 ps = per_object(&spec, &json);
    printf("# store: %zu bytes/object whole, %zu without managedFields (the default), "
           "%zu keeping only spec (json %zu bytes)\n", pw, pd, ps, json);
    CHECK(pd < pw && ps < pd);
    CHECK(pw - pd > 150);  /* this object's managedFields: about 190 bytes */
    store_transform_clear(&spec);
}

TEST(memory_per_object)
{
    enum { N = 10000 };
    store *s = store_new();
    char buf[2048];
    size_t json_total = 0, ok = 1;
    size_t empty = store_bytes(s);
    for (int i = 0; i < N; i++) {
        size_t len = make_1k(buf, sizeof buf, i);
        json_total += len;
        store_obj *o = store_obj_new(buf, len, NULL);
        if (!o || store_put(s, o, NULL) == NULL)
            ok = 0;
    }
    CHECK(ok);
    CHECK(store_len(s) == N);
    size_t per = (store_bytes(s) - empty) / N, json = json_total / N;
    printf("# store: %zu bytes/object (json %zu bytes)\n", per, json);
    CHECK(json > 900 && json < 1200);
    CHECK(per > json);      /* the JSON itself is held */
    CHECK(per < 2 * json);  /* the design goal: well under twice the JSON */

    /* queries on the big store use the indexes */
    seen sn = {0};
    store_each_selected(s, "team-3", "tier=frontend,app.kubernetes.io/name=svc-3", collect, &sn,
                        NULL);
    /* i % 20 == 3, i % 50 == 3 and i % 3 == 0: i = 3, 303, 603, ... */
    size_t expect = 0;
    for (int i = 0; i < N; i++)
        expect += i % 100 == 3 && i % 3 == 0;
    CHECK(sn.total == expect);
    memset(&sn, 0, sizeof sn);
    store_each_owned_by(s, "9a8b7c6d-0000-4000-8000-000000000010", collect, &sn);
    CHECK_STR(joined(&sn), "team-0/config-000040,team-1/config-000041,team-2/config-000042,"
                           "team-3/config-000043");

    /* removing everything gives the memory back (tables keep their size) */
    size_t full = store_bytes(s);
    for (int i = 0; i < N; i++) {
        char key[64];
        snprintf(key, sizeof key, "team-%d/config-%06d", i % 20, i);
        store_obj_free(store_remove(s, key));
    }
    CHECK(store_len(s) == 0);
    CHECK(store_bytes(s) < full / 10);
    store_free(s);
}

/* The benchmark's Widget (bench/peers/loader) as the API server sends it:
 * 1,036 bytes in the bench's namespace, 290 of them managedFields. */
static size_t make_widget(char *buf, size_t cap, int i)
{
    char payload[441];
    for (size_t k = 0; k < 440; k++)
        payload[k] = "klua-bench-"[k % 11];
    payload[440] = '\0';
    int n = snprintf(
        buf, cap,
        "{\"apiVersion\":\"bench.klua.dev/v1\",\"kind\":\"Widget\",\"metadata\":{"
        "\"creationTimestamp\":\"2026-12-06T09:33:46Z\",\"generation\":1,"
        "\"labels\":{\"app\":\"bench\",\"shard\":\"s%02d\"},\"managedFields\":[{"
        "\"apiVersion\":\"bench.klua.dev/v1\",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{"
        "\"f:metadata\":{\"f:labels\":{\".\":{},\"f:app\":{},\"f:shard\":{}}},\"f:spec\":{"
        "\".\":{},\"f:payload\":{},\"f:replicas\":{},\"f:seq\":{}}},\"manager\":\"loader\","
        "\"operation\":\"Update\",\"time\":\"2026-12-06T09:33:46Z\"}],\"name\":\"w-%06d\","
        "\"namespace\":\"bench-sync\",\"resourceVersion\":\"%d\","
        "\"uid\":\"be1e06d1-bead-461c-9c97-%012d\"},\"spec\":{\"payload\":\"%s\","
        "\"replicas\":1,\"seq\":0}}",
        i % 16, i, 100000 + i, i, payload);
    return (size_t)n;
}

/* Issue 14's goal for the cache itself: a Widget kept (without its
 * managedFields, the default) costs less than its wire JSON, everything
 * the store holds for it counted (object, strings, tables). */
TEST(a_cached_widget_costs_less_than_its_wire_json)
{
    enum { N = 10000 };
    store *s = store_new();
    store_transform t = STORE_TRANSFORM_DEFAULT;
    char buf[2048];
    size_t wire = 0, ok = 1, empty = store_bytes(s);
    kl_buf out = KL_BUF_INIT;
    for (int i = 0; i < N; i++) {
        size_t len = make_widget(buf, sizeof buf, i);
        wire += len;
        json_doc d = {0};
        kl_buf_reset(&out);
        store_obj *o = NULL;
        if (json_parse(&d, buf, len, NULL) == 0 &&
            store_transform_apply(&t, &d, 0, NULL, NULL, &out) == 0)
            o = store_obj_from_doc(&d, 0, out.data, out.len, NULL);
        json_doc_free(&d);
        if (!o || !store_put(s, o, NULL))
            ok = 0;
    }
    kl_buf_free(&out);
    CHECK(ok);
    size_t per = (store_bytes(s) - empty) / N;
    printf("# store: a Widget costs %zu bytes (wire JSON %zu, kept %zu)\n", per, wire / N,
           (size_t)store_get(s, "bench-sync/w-000123")->json_len);
    CHECK(per <= wire / N);
    store_free(s);
}

TEST(store_key_is_the_key_objects_are_filed_under)
{
    char k[STORE_KEY_MAX];
    CHECK(store_key(k, sizeof k, "ns", "a") == 0 && strcmp(k, "ns/a") == 0);
    CHECK(store_key(k, sizeof k, "", "a") == 0 && strcmp(k, "a") == 0);
    CHECK(store_key(k, sizeof k, NULL, "a") == 0 && strcmp(k, "a") == 0);
    char small[4];
    CHECK(store_key(small, sizeof small, "ns", "a") == -1);
    const char *j = "{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\",\"uid\":\"u\","
                    "\"resourceVersion\":\"1\"}}";
    kl_err err = {0};
    store_obj *o = store_obj_new(j, strlen(j), &err);
    CHECK(o != NULL);
    store_key(k, sizeof k, o->ns, o->name);
    CHECK(strcmp(k, o->key) == 0);
    store_obj_free(o);
}

int main(void)
{
    RUN(store_key_is_the_key_objects_are_filed_under);
    RUN(object_metadata_is_extracted);
    RUN(objects_without_a_name_are_rejected);
    RUN(put_replace_remove_maintain_indexes);
    RUN(selector_queries);
    RUN(namespace_iteration_and_early_stop);
    RUN(churn_keeps_every_key_reachable);
    RUN(indexes_are_built_on_first_query_and_kept_up_to_date);
    RUN(churn_packs_the_arena_and_keeps_every_object_right);
    RUN(a_large_object_is_kept_whole);
    RUN(managed_fields_are_dropped_by_default);
    RUN(managed_fields_kept_on_request);
    RUN(a_projection_keeps_the_paths_and_what_klua_needs);
    RUN(list_items_get_apiVersion_and_kind);
    RUN(memory_per_object);
    RUN(memory_per_object_under_each_transform);
    RUN(a_cached_widget_costs_less_than_its_wire_json);
    DONE();
}
