/* itest_informer.c - the informer (reflector + store + handlers) against a
 * real kube-apiserver.
 *
 * Needs KLUA_TEST_CLUSTER=DIR (spec/support/cluster.sh up DIR). Watches
 * ConfigMaps in a namespace of its own with a label selector and checks what
 * a controller would see: the initial sync, then add / update / delete in
 * order, label changes moving objects in and out of the selection, handlers
 * added after sync getting the cache replayed, the shared registry handing
 * out one informer, and the relist that follows a 410 (an expired
 * resourceVersion), which must turn objects deleted meanwhile into deletes.
 * And objects nested deeper than the JSON limit (a custom resource with
 * preserve-unknown-fields): skipped in the LIST and in the watch, reported to
 * the skip handler and counted, while the others flow. The streaming list
 * and the paged LIST fallback fill the same cache; the cache transforms
 * (managedFields dropped by default, kept on request, projections) apply.
 */
#include "harness.h"

#include "discovery.h"
#include "http.h"
#include "informer.h"
#include "json.h"
#include "kube.h"
#include "kubeconfig.h"
#include "loop.h"
#include "metrics.h"
#include "rest.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static loop *g_loop;
static http_client *g_http;
static kube_client *g_c;
static kube_resource g_cm;
static char g_ns[64];

typedef struct seen {
    char log[8192];   /* "add:a update:a delete:b " */
    int adds, updates, deletes;
} seen;

static void s_add(void *ud, const store_obj *o)
{
    seen *s = ud;
    s->adds++;
    size_t n = strlen(s->log);
    snprintf(s->log + n, sizeof s->log - n, "add:%s ", o->name);
}

static void s_update(void *ud, const store_obj *old, const store_obj *cur)
{
    seen *s = ud;
    s->updates++;
    size_t n = strlen(s->log);
    snprintf(s->log + n, sizeof s->log - n, "update:%s ", cur->name);
}

static void s_delete(void *ud, const store_obj *o)
{
    seen *s = ud;
    s->deletes++;
    size_t n = strlen(s->log);
    snprintf(s->log + n, sizeof s->log - n, "delete:%s ", o->name);
}

typedef struct call {
    int done;
    long code;
    char rv[64];
} call;

static void call_done(void *ud, kube_result *r)
{
    call *c = ud;
    c->code = r->http_code;
    c->done = 1;
    json_doc d = {0};
    if (kube_result_ok(r) && r->body.data && json_parse(&d, r->body.data, r->body.len, NULL) == 0) {
        char *rv = json_str_dup(&d, json_path(&d, 0, "metadata.resourceVersion"));
        if (rv)
            snprintf(c->rv, sizeof c->rv, "%s", rv);
        free(rv);
    }
    json_doc_free(&d);
    if (!kube_result_ok(r))
        printf("#   call failed: %ld %s: %s\n", r->http_code, r->reason, r->message);
}

static int spin_until(int (*pred)(void *), void *ud, int ms)
{
    uint64_t end = loop_time_ms() + (uint64_t)ms;
    while (!pred(ud) && loop_time_ms() < end)
        loop_run_once(g_loop, 100);
    return pred(ud);
}

static int call_is_done(void *ud) { return ((call *)ud)->done; }

static long cm_write(const char *verb, const char *name, const char *label, const char *data)
{
    char body[1024];
    snprintf(body, sizeof body,
             "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"%s\","
             "\"labels\":{\"itest\":\"%s\"}},\"data\":{\"v\":\"%s\"}}",
             name, label, data);
    call c = {0};
    kube_call *k = NULL;
    if (!strcmp(verb, "create"))
        k = kube_create(g_c, &g_cm, g_ns, body, strlen(body), NULL, call_done, &c);
    else if (!strcmp(verb, "patch"))
        k = kube_patch(g_c, &g_cm, g_ns, name, KUBE_PATCH_MERGE, body, strlen(body), NULL,
                       call_done, &c);
    else
        k = kube_delete(g_c, &g_cm, g_ns, name, NULL, call_done, &c);
    if (!k)
        return -1;
    spin_until(call_is_done, &c, 30000);
    return c.code;
}

static int synced(void *ud) { return informer_has_synced(ud); }

typedef struct want {
    seen *s;
    const char *substr;
} want;

static int log_has(void *ud)
{
    want *w = ud;
    return strstr(w->s->log, w->substr) != NULL;
}

/* The test drives the loop itself until an answer is in. */
typedef struct sync_answer {
    int done, rc;
    kube_resource *out;
    kl_err *err;
    kube_result *res;
} sync_answer;

static void on_lookup_sync(void *ud, const kube_resource *r, const kl_err *err)
{
    sync_answer *a = ud;
    a->done = 1;
    a->rc = r ? kube_resource_copy(a->out, r) : -1;
    if (!r && a->err)
        *a->err = *err;
}

static int lookup_sync(discovery *d, const char *av, const char *kind, kube_resource *out,
                       kl_err *err)
{
    sync_answer a = {0, -1, out, err, NULL};
    if (!discovery_lookup(d, av, kind, on_lookup_sync, &a))
        return -1;
    while (!a.done)
        loop_run_once(g_loop, 100);
    return a.rc;
}

static void on_request_sync(void *ud, kube_result *r)
{
    sync_answer *a = ud;
    a->done = 1;
    a->res->http_code = r->http_code;
    a->res->body = r->body;
    memset(&r->body, 0, sizeof r->body);
}

static int request_sync(const char *method, const char *path, const char *body, kube_result *r)
{
    sync_answer a = {0, -1, NULL, NULL, r};
    if (!kube_request(g_c, method, path, NULL, body, body ? strlen(body) : 0, on_request_sync, &a))
        return -1;
    while (!a.done)
        loop_run_once(g_loop, 100);
    return r->http_code >= 200 && r->http_code < 300 ? 0 : -1;
}

static int setup(void)
{
    const char *dir = getenv("KLUA_TEST_CLUSTER");
    if (!dir) {
        printf("#   no cluster: set KLUA_TEST_CLUSTER to a directory made by "
               "`sh spec/support/cluster.sh up DIR`\n");
        return -1;
    }
    kl_err err = {0};
    char path[512];
    snprintf(path, sizeof path, "%s/kubeconfig", dir);
    kubeconfig_opts o = {0};
    o.path = path;
    kube_rest_config cfg = {0};
    if (kubeconfig_load(&o, &cfg, &err) != 0 || !(g_loop = loop_new(&err)) ||
        !(g_http = http_client_new(g_loop, &err))) {
        printf("#   setup: %s\n", err.msg);
        kube_rest_config_free(&cfg);
        return -1;
    }
    kube_client_opts co = {0};
    g_c = kube_client_new(g_loop, g_http, &cfg, &co, &err);
    kube_rest_config_free(&cfg);
    if (!g_c) {
        printf("#   setup: %s\n", err.msg);
        return -1;
    }
    discovery *d = discovery_new(g_c, NULL, &err);
    int rc = d ? lookup_sync(d, "v1", "ConfigMap", &g_cm, &err) : -1;
    discovery_free(d);
    if (rc != 0) {
        printf("#   setup: %s\n", err.msg);
        return -1;
    }
    snprintf(g_ns, sizeof g_ns, "itest-inf-%ld-%d", (long)time(NULL), (int)getpid());
    char body[256];
    snprintf(body, sizeof body,
             "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"%s\"}}", g_ns);
    kube_result r = {0};
    rc = request_sync("POST", "/api/v1/namespaces", body, &r);
    kl_buf_free(&r.body);
    return rc == 0 && kube_result_ok(&r) ? 0 : -1;
}

static int g_ok;

TEST(initial_sync_then_events_in_order)
{
    if (!g_ok)
    {
        CHECK(!"cluster setup failed");
        return;
    }
    CHECK(cm_write("create", "a", "yes", "1") == 201);
    CHECK(cm_write("create", "b", "yes", "1") == 201);
    CHECK(cm_write("create", "other", "no", "1") == 201);
    informer *inf = informer_new(g_c, &g_cm, g_ns, "itest=yes");
    seen s = {0};
    informer_handler h = {s_add, s_update, s_delete, &s};
    CHECK(informer_add_handler(inf, &h) > 0);
    CHECK(informer_start(inf) == 0);
    CHECK(spin_until(synced, inf, 30000));
    CHECK(store_len(informer_store(inf)) == 2);
    CHECK(s.adds == 2);
    char key[128];
    snprintf(key, sizeof key, "%s/a", g_ns);
    const store_obj *a = store_get(informer_store(inf), key);
    CHECK(a && !strcmp(a->name, "a") && strstr(a->json, "\"kind\":\"ConfigMap\""));
    /* events after sync, in order */
    s.log[0] = '\0';
    CHECK(cm_write("create", "c", "yes", "1") == 201);
    CHECK(cm_write("patch", "c", "yes", "2") == 200);
    CHECK(cm_write("delete", "c", "yes", "") == 200);
    want w = {&s, "delete:c"};
    CHECK(spin_until(log_has, &w, 30000));
    CHECK_STR(s.log, "add:c update:c delete:c ");
    /* a label change moves an object out of the selection (a delete) and in */
    s.log[0] = '\0';
    CHECK(cm_write("patch", "b", "no", "1") == 200);
    w.substr = "delete:b";
    CHECK(spin_until(log_has, &w, 30000));
    CHECK(cm_write("patch", "other", "yes", "1") == 200);
    w.substr = "add:other";
    CHECK(spin_until(log_has, &w, 30000));
    CHECK_STR(s.log, "delete:b add:other ");
    /* a handler added after sync gets the cache replayed as adds */
    seen late = {0};
    informer_handler h2 = {s_add, s_update, s_delete, &late};
    int id2 = informer_add_handler(inf, &h2);
    CHECK(id2 > 0 && late.adds == 2);
    informer_remove_handler(inf, id2);
    informer_free(inf);
    cm_write("delete", "a", "", "");
    cm_write("delete", "b", "", "");
    cm_write("delete", "other", "", "");
}

static void count_synced(void *ud, informer *inf)
{
    (void)inf;
    (*(int *)ud)++;
}

/* Several controllers share one informer: each hears once when its first
 * LIST is in the store; a removed listener is never called. */
TEST(synced_listeners_are_told_once)
{
    if (!g_ok) {
        CHECK(!"cluster setup failed");
        return;
    }
    informer *inf = informer_new(g_c, &g_cm, g_ns, NULL);
    int a = 0, b = 0, c = 0;
    int ida = informer_add_synced_listener(inf, count_synced, &a);
    int idb = informer_add_synced_listener(inf, count_synced, &b);
    int idc = informer_add_synced_listener(inf, count_synced, &c);
    CHECK(ida > 0 && idb > 0 && idc > 0 && ida != idb && idb != idc);
    informer_remove_synced_listener(inf, idb);
    informer_start(inf);
    CHECK(spin_until(synced, inf, 30000));
    CHECK(a == 1 && b == 0 && c == 1);
    /* later changes do not call them again */
    CHECK(cm_write("create", "after-sync", "x", "1") == 201);
    uint64_t end = loop_time_ms() + 500;
    while (loop_time_ms() < end)
        loop_run_once(g_loop, 50);
    CHECK(a == 1 && b == 0 && c == 1);
    informer_free(inf);
    cm_write("delete", "after-sync", "", "");
}

TEST(registry_shares_one_informer)
{
    if (!g_ok)
    {
        CHECK(!"cluster setup failed");
        return;
    }
    informer_registry *reg = informer_registry_new(g_c);
    informer *i1 = informer_registry_get(reg, &g_cm, g_ns, NULL);
    informer *i2 = informer_registry_get(reg, &g_cm, g_ns, NULL);
    informer *i3 = informer_registry_get(reg, &g_cm, g_ns, "itest=yes");
    CHECK(i1 && i1 == i2);
    CHECK(i3 && i3 != i1);
    CHECK(spin_until(synced, i1, 30000));
    informer_registry_release(reg, i1);
    informer_registry_release(reg, i2);
    informer_registry_release(reg, i3);
    informer_registry_free(reg);
}

/* The relist path: stop watching, change the world, and restart the watch
 * from a resourceVersion the server no longer has. The informer must relist
 * and report what changed, including objects deleted while it was away. */
TEST(relist_reports_objects_deleted_meanwhile)
{
    if (!g_ok)
    {
        CHECK(!"cluster setup failed");
        return;
    }
    CHECK(cm_write("create", "keep", "rl", "1") == 201);
    CHECK(cm_write("create", "gone", "rl", "1") == 201);
    informer *inf = informer_new(g_c, &g_cm, g_ns, "itest=rl");
    seen s = {0};
    informer_handler h = {s_add, s_update, s_delete, &s};
    informer_add_handler(inf, &h);
    informer_start(inf);
    CHECK(spin_until(synced, inf, 30000));
    informer_stop(inf);
    s.log[0] = '\0';
    CHECK(cm_write("delete", "gone", "", "") == 200);
    CHECK(cm_write("patch", "keep", "rl", "2") == 200);
    CHECK(cm_write("create", "new", "rl", "1") == 201);
    /* Restarting a stopped informer lists again (a relist, since it has
     * synced before): the deleted object must come out as a delete. */
    informer_start(inf);
    want w = {&s, "delete:gone"};
    CHECK(spin_until(log_has, &w, 30000));
    w.substr = "add:new";
    CHECK(spin_until(log_has, &w, 30000));
    CHECK(strstr(s.log, "update:keep") != NULL);
    CHECK(store_len(informer_store(inf)) == 2);
    printf("#   relist events: %s\n", s.log);
    informer_free(inf);
}

/* ---- undecodable objects ---- */

typedef struct skips {
    int n;
    char names[512];   /* "ns/name@rv " per skip */
    int uid_ok, reason_ok;
} skips;

static void on_skip(void *ud, informer *inf, const informer_skipped *sk)
{
    skips *k = ud;
    k->n++;
    size_t n = strlen(k->names);
    snprintf(k->names + n, sizeof k->names - n, "%s/%s@%s ", sk->namespace ? sk->namespace : "?",
             sk->name ? sk->name : "?", sk->resource_version ? sk->resource_version : "?");
    k->uid_ok += sk->uid && strlen(sk->uid) > 10;
    k->reason_ok += sk->reason && strstr(sk->reason, "deeper than") != NULL;
}

static long post(const char *path, const char *body, size_t len)
{
    kube_result r = {0};
    (void)len;                       /* body is NUL-terminated */
    request_sync("POST", path, body, &r); /* -1 for any error status */
    long code = r.http_code;
    kl_buf_free(&r.body);
    return code;
}

/* A Deep object; depth > 0: a spec nested that many maps deep. */
static long deep_create(const char *name, int depth)
{
    kl_buf b = KL_BUF_INIT;
    kl_buf_printf(&b, "{\"apiVersion\":\"hostile.klua.dev/v1\",\"kind\":\"Deep\","
                      "\"metadata\":{\"name\":\"%s\"},\"spec\":", name);
    for (int i = 0; i < depth; i++)
        kl_buf_puts(&b, "{\"a\":");
    kl_buf_puts(&b, "1");
    for (int i = 0; i < depth; i++)
        kl_buf_putc(&b, '}');
    kl_buf_putc(&b, '}');
    char path[200];
    snprintf(path, sizeof path, "/apis/hostile.klua.dev/v1/namespaces/%s/deeps", g_ns);
    long code = post(path, b.data, b.len);
    kl_buf_free(&b);
    return code;
}

static double metric(const char *family, const char *resource)
{
    metrics_family *f = metrics_find(metrics_default(), family);
    return f ? metrics_value(f, (const char *const[]){resource}) : -2;
}

typedef struct skip_want {
    skips *k;
    int n;
} skip_want;

static int skips_reach(void *ud)
{
    skip_want *w = ud;
    return w->k->n >= w->n;
}

TEST(undecodable_objects_are_skipped_and_reported)
{
    if (!g_ok) {
        CHECK(!"cluster setup failed");
        return;
    }
    const char *crd =
        "{\"apiVersion\":\"apiextensions.k8s.io/v1\",\"kind\":\"CustomResourceDefinition\","
        "\"metadata\":{\"name\":\"deeps.hostile.klua.dev\"},\"spec\":{\"group\":"
        "\"hostile.klua.dev\",\"scope\":\"Namespaced\",\"names\":{\"plural\":\"deeps\","
        "\"singular\":\"deep\",\"kind\":\"Deep\",\"listKind\":\"DeepList\"},\"versions\":"
        "[{\"name\":\"v1\",\"served\":true,\"storage\":true,\"schema\":{\"openAPIV3Schema\":"
        "{\"type\":\"object\",\"x-kubernetes-preserve-unknown-fields\":true}}}]}}";
    long code = post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd, strlen(crd));
    CHECK(code == 201 || code == 409);
    /* served once established: creating the first object says so */
    uint64_t end = loop_time_ms() + 30000;
    while ((code = deep_create("plain-a", 1)) == 404 && loop_time_ms() < end)
        loop_run_once(g_loop, 200);
    CHECK(code == 201);
    CHECK(deep_create("deep-a", 197) == 201); /* managedFields mirror it past 200 levels */
    kube_resource res = {0};
    kl_err err = {0};
    discovery *d = discovery_new(g_c, NULL, &err);
    CHECK(d && lookup_sync(d, "hostile.klua.dev/v1", "Deep", &res, &err) == 0);
    discovery_free(d);

    informer *inf = informer_new(g_c, &res, g_ns, NULL);
    seen s = {0};
    skips k = {0};
    informer_handler h = {s_add, s_update, s_delete, &s};
    informer_add_handler(inf, &h);
    informer_set_skip_handler(inf, on_skip, &k);
    informer_start(inf);
    CHECK(spin_until(synced, inf, 30000));
    const char *r = "hostile.klua.dev/v1/deeps";
    CHECK(strstr(s.log, "add:plain-a") != NULL);
    CHECK(k.n == 1 && strstr(k.names, "/deep-a@") != NULL && strstr(k.names, g_ns) != NULL);
    CHECK(metric("klua_informer_objects_skipped_total", r) == 1);
    CHECK(metric("klua_cache_objects", r) == 1);

    /* and in the watch: skipped, and the stream goes on to the next object */
    CHECK(deep_create("deep-b", 197) == 201);
    CHECK(deep_create("plain-b", 1) == 201);
    want w = {&s, "add:plain-b"};
    CHECK(spin_until(log_has, &w, 30000));
    skip_want sw = {&k, 2};
    CHECK(spin_until(skips_reach, &sw, 30000));
    CHECK(strstr(k.names, "/deep-b@") != NULL);
    CHECK(k.uid_ok == k.n && k.reason_ok == k.n);
    CHECK(metric("klua_informer_objects_skipped_total", r) == 2);
    CHECK(metric("klua_cache_objects", r) == 2);
    CHECK(store_len(informer_store(inf)) == 2);
    printf("#   skipped: %s\n", k.names);
    informer_free(inf);
    CHECK(metric("klua_cache_objects", r) == 0); /* what it held is no longer counted */
    kube_resource_free(&res);
}

/* Requests in the audit log for this test's namespace whose line holds a
 * and b (the start of a watch; a LIST, which has no ResponseStarted, at
 * each stage). The URI is JSON-escaped there: '&' is \u0026. */
typedef struct audit_q {
    const char *a, *b;
    int at_least;
} audit_q;

static int audit_count(const char *a, const char *b)
{
    char path[512], line[16384];
    snprintf(path, sizeof path, "%s/audit.log", getenv("KLUA_TEST_CLUSTER"));
    FILE *f = fopen(path, "r");
    int n = 0;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strstr(line, g_ns) && (strstr(line, "\"stage\":\"ResponseStarted\"") ||
                                   strstr(line, "\"verb\":\"list\"")) &&
            strstr(line, a) && (!b || strstr(line, b)))
            n++;
    fclose(f);
    return n;
}

static int audit_reached(void *ud)
{
    audit_q *q = ud;
    return audit_count(q->a, q->b) >= q->at_least;
}

static const store_obj *wait_obj(informer *inf, const char *name)
{
    char key[128];
    snprintf(key, sizeof key, "%s/%s", g_ns, name);
    uint64_t end = loop_time_ms() + 30000;
    while (!store_get(informer_store(inf), key) && loop_time_ms() < end)
        loop_run_once(g_loop, 100);
    return store_get(informer_store(inf), key);
}

/* The streaming list (sendInitialEvents) is the default: one request syncs
 * the cache and goes on as the watch; KLUA_WATCH_LIST=0 (here
 * informer_set_watch_list) falls back to paged LISTs. Both caches hold the
 * same objects; managedFields is dropped unless asked for; a projection keeps
 * only its paths and klua's own. */
TEST(streaming_list_and_paged_list_fill_the_same_cache)
{
    if (!g_ok) {
        CHECK(!"cluster setup failed");
        return;
    }
    CHECK(cm_write("create", "s1", "wl", "1") == 201);
    CHECK(cm_write("create", "s2", "wl", "1") == 201);
    informer *st = informer_new(g_c, &g_cm, g_ns, "itest=wl");
    informer *pg = informer_new(g_c, &g_cm, g_ns, "itest in (wl)");
    informer *pj = informer_new(g_c, &g_cm, g_ns, "itest=wl,itest!=x");
    informer_set_watch_list(st, 1);
    informer_set_watch_list(pg, 0);
    informer_set_watch_list(pj, 1);
    store_transform keep_mf = {1, NULL, 0}, proj = STORE_TRANSFORM_DEFAULT;
    kl_err err;
    CHECK(store_transform_keep(&proj, "metadata.annotations", &err) == 0);
    CHECK(informer_set_transform(pg, &keep_mf) == 0);
    CHECK(informer_set_transform(pj, &proj) == 0);
    store_transform_clear(&proj);
    CHECK(informer_start(st) == 0 && informer_start(pg) == 0 && informer_start(pj) == 0);
    CHECK(informer_set_transform(st, &keep_mf) == -1); /* too late: started */
    CHECK(spin_until(synced, st, 30000) && spin_until(synced, pg, 30000) &&
          spin_until(synced, pj, 30000));
    CHECK(store_len(informer_store(st)) == 2 && store_len(informer_store(pg)) == 2 &&
          store_len(informer_store(pj)) == 2);
    /* the API server keeps managedFields on every object it stores */
    const store_obj *a = wait_obj(st, "s1"), *b = wait_obj(pg, "s1"), *c = wait_obj(pj, "s1");
    CHECK(a && !strstr(a->json, "managedFields") && strstr(a->json, "\"data\""));
    CHECK(b && strstr(b->json, "managedFields") && strstr(b->json, "\"data\""));
    CHECK(c && !strstr(c->json, "managedFields") && !strstr(c->json, "\"data\"") &&
          strstr(c->json, "\"kind\":\"ConfigMap\"") && strstr(c->json, "\"uid\"") &&
          strstr(c->json, "\"labels\""));
    CHECK(a && b && !strcmp(a->rv, b->rv) && !strcmp(a->uid, b->uid));
    /* events after sync reach both, the streaming one on its first request */
    CHECK(cm_write("create", "s3", "wl", "1") == 201);
    CHECK(wait_obj(st, "s3") && wait_obj(pg, "s3") && wait_obj(pj, "s3"));
    a = wait_obj(st, "s3");
    CHECK(a && !strstr(a->json, "managedFields"));
    audit_q q1 = {"labelSelector=itest%3Dwl\\u0026", "sendInitialEvents=true", 1};
    audit_q q2 = {"labelSelector=itest%20in%20%28wl%29", "\"verb\":\"list\"", 1};
    CHECK(spin_until(audit_reached, &q1, 10000) && spin_until(audit_reached, &q2, 10000));
    /* one request, no LIST, no second watch */
    CHECK(audit_count("labelSelector=itest%3Dwl\\u0026", NULL) == 1);
    CHECK(audit_count("labelSelector=itest%20in%20%28wl%29", "sendInitialEvents") == 0);
    informer_free(st);
    informer_free(pg);
    informer_free(pj);
    cm_write("delete", "s1", "", "");
    cm_write("delete", "s2", "", "");
    cm_write("delete", "s3", "", "");
}

int main(void)
{
    g_ok = setup() == 0;
    RUN(initial_sync_then_events_in_order);
    RUN(synced_listeners_are_told_once);
    RUN(registry_shares_one_informer);
    RUN(relist_reports_objects_deleted_meanwhile);
    RUN(undecodable_objects_are_skipped_and_reported);
    RUN(streaming_list_and_paged_list_fill_the_same_cache);
    if (g_ok) {
        char path[160];
        snprintf(path, sizeof path, "/api/v1/namespaces/%s", g_ns);
        kube_result r = {0};
        request_sync("DELETE", path, NULL, &r);
        kl_buf_free(&r.body);
    }
    kube_resource_free(&g_cm);
    kube_client_free(g_c);
    http_client_free(g_http);
    loop_free(g_loop);
    DONE();
}
