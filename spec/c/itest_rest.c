/* itest_rest.c - integration tests of kube.c, rest.c and execcred.c against a
 * real etcd + kube-apiserver.
 *
 * Needs KLUA_TEST_CLUSTER=DIR, a cluster made by `sh spec/support/cluster.sh up
 * DIR` (its kubeconfig-* files, env and exec-plugin.calls are used). Without it
 * every test fails with a message saying so. Run from the repository root.
 * Each check asserts what a user of the transport would see: codes, reasons,
 * messages, objects.
 */
#include "harness.h"

#include "discovery.h"
#include "http.h"
#include "json.h"
#include "kube.h"
#include "kubeconfig.h"
#include "loop.h"
#include "rest.h"

#include <curl/curl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define GROUP "itest.klua.dev"
#define WAIT_MS 60000

static const char *g_dir;
static loop *g_loop;
static http_client *g_http;
static kube_client *g_admin;
static discovery *g_disc;
static kube_resource g_widgets, g_cms;
static char g_ns[64];
static char g_early_rv[32];     /* written before the Widget CRD existed */

/* ---- helpers ------------------------------------------------------------ */

typedef struct res {
    int done;
    kube_result r;
} res;

static res R;   /* the answer of the last DO() */

static void res_done(void *ud, kube_result *r)
{
    res *s = ud;
    s->r.http_code = r->http_code;
    memcpy(s->r.reason, r->reason, sizeof s->r.reason);
    memcpy(s->r.message, r->message, sizeof s->r.message);
    s->r.body = r->body;
    memset(&r->body, 0, sizeof r->body);
    s->done = 1;
}

static void res_reset(res *s)
{
    kl_buf_free(&s->r.body);
    memset(s, 0, sizeof *s);
}

static void wait_flag(const int *flag, int ms)
{
    uint64_t end = loop_time_ms() + (uint64_t)ms;
    while (!*flag && loop_time_ms() < end)
        loop_run_once(g_loop, 200);
}

static int do_wait(res *s, int started)
{
    if (!started) {
        snprintf(s->r.message, sizeof s->r.message, "call not started");
        return 0;
    }
    wait_flag(&s->done, WAIT_MS);
    if (!s->done)
        snprintf(s->r.message, sizeof s->r.message, "no answer within %d s", WAIT_MS / 1000);
    return s->done;
}

/* DO(kube_get(c, ..., res_done, &R)): run one call to its end; the answer is in R. */
#define DO(x) (res_reset(&R), do_wait(&R, (x) != NULL))
#define SHOW(s) printf("#   -> %ld %s: %s\n", (s).r.http_code, (s).r.reason, (s).r.message)

/* A string field of a JSON body by dotted path (numbers and booleans raw);
 * "" when absent. Rotating static slots keep test code short. */
static const char *J(const kl_buf *b, const char *path)
{
    static char slots[8][1024];
    static int next;
    char *out = slots[next++ % 8];
    json_doc d = {0};
    out[0] = '\0';
    if (b->data && json_parse(&d, b->data, b->len, NULL) == 0) {
        int t = json_path(&d, 0, path);
        if (t >= 0 && d.toks[t].type == JSON_STRING) {
            kl_buf s = KL_BUF_INIT;
            if (json_str_append(&d, t, &s) == 0 && s.data)
                snprintf(out, 1024, "%s", s.data);
            kl_buf_free(&s);
        } else if (t >= 0) {
            size_t n;
            const char *raw = json_raw(&d, t, &n);
            snprintf(out, 1024, "%.*s", (int)(n < 1023 ? n : 1023), raw);
        }
    }
    json_doc_free(&d);
    return out;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    static char slots[4][8192];
    static int next;
    char *out = slots[next++ % 4];
    va_list ap;
    va_start(ap, f);
    vsnprintf(out, 8192, f, ap);
    va_end(ap);
    return out;
}

static kube_client *client_from(const char *file, kl_err *err)
{
    kube_rest_config cfg = {0};
    kubeconfig_opts o = {0};
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, file);
    o.path = path;
    if (kubeconfig_load(&o, &cfg, err) != 0)
        return NULL;
    kube_client_opts co = {0};
    kube_client *c = kube_client_new(g_loop, g_http, &cfg, &co, err);
    kube_rest_config_free(&cfg);
    return c;
}

static long count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    long n = 0;
    int ch;
    if (!f)
        return 0;
    while ((ch = fgetc(f)) != EOF)
        n += ch == '\n';
    fclose(f);
    return n;
}

/* The value of `export NAME=...` (quotes stripped) in DIR/env; "" if absent. */
static const char *env_value(const char *name)
{
    static char val[512];
    char line[1024], path[512];
    size_t n = strlen(name);
    snprintf(path, sizeof path, "%s/env", g_dir);
    FILE *f = fopen(path, "r");
    val[0] = '\0';
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "export ", 7) == 0 && strncmp(line + 7, name, n) == 0 &&
            line[7 + n] == '=') {
            const char *v = line + 8 + n;
            size_t k = 0;
            for (; *v && *v != '\n' && k + 1 < sizeof val; v++)
                if (*v != '\'' && *v != '"')
                    val[k++] = *v;
            val[k] = '\0';
            break;
        }
    }
    if (f)
        fclose(f);
    return val;
}

typedef struct lookup_answer {
    int done, rc;
    kube_resource *out;
    kl_err *err;
} lookup_answer;

static void on_lookup(void *ud, const kube_resource *r, const kl_err *err)
{
    lookup_answer *a = ud;
    a->done = 1;
    a->rc = r ? kube_resource_copy(a->out, r) : -1;
    if (!r && a->err)
        *a->err = *err;
}

/* discovery_lookup, waited for (the test drives the loop). */
static int lookup(const char *av, const char *kind, kube_resource *out, kl_err *err)
{
    lookup_answer a = {0, -1, out, err};
    if (!discovery_lookup(g_disc, av, kind, on_lookup, &a))
        return -1;
    wait_flag(&a.done, WAIT_MS);
    return a.rc;
}

static int ready(void)
{
    if (g_admin && g_widgets.resource)
        return 1;
    printf("#   no cluster: set KLUA_TEST_CLUSTER to a directory made by "
           "`sh spec/support/cluster.sh up DIR`%s\n", g_dir ? " (setup failed)" : "");
    return 0;
}

/* ---- setup: namespace, CRD, discovery ---------------------------------- */

static const char *crd_json(const char *plural, const char *kind)
{
    return fmt("{\"apiVersion\":\"apiextensions.k8s.io/v1\",\"kind\":\"CustomResourceDefinition\","
               "\"metadata\":{\"name\":\"%s." GROUP "\"},\"spec\":{\"group\":\"" GROUP "\","
               "\"scope\":\"Namespaced\",\"names\":{\"plural\":\"%s\",\"kind\":\"%s\"},"
               "\"versions\":[{\"name\":\"v1\",\"served\":true,\"storage\":true,"
               "\"subresources\":{\"status\":{}},\"schema\":{\"openAPIV3Schema\":{\"type\":"
               "\"object\",\"properties\":{\"spec\":{\"type\":\"object\",\"properties\":{"
               "\"color\":{\"type\":\"string\"},\"size\":{\"type\":\"integer\"}}},"
               "\"status\":{\"type\":\"object\",\"properties\":{\"phase\":{\"type\":\"string\"}}}"
               "}}}}]}}",
               plural, plural, kind);
}

TEST(setup_crd_and_discovery)
{
    kl_err err = {0};
    if (!g_http) {
        ready();
        CHECK(!"a running cluster (KLUA_TEST_CLUSTER)");
        return;
    }
    g_admin = client_from("kubeconfig", &err);
    CHECK(g_admin != NULL);
    if (!g_admin) {
        printf("#   %s\n", err.msg);
        return;
    }
    g_disc = discovery_new(g_admin, NULL, &err);
    CHECK(lookup("v1", "ConfigMap", &g_cms, &err) == 0);
    CHECK_STR(g_cms.resource, "configmaps");
    CHECK(g_cms.namespaced && !g_cms.has_status);

    kube_resource ns = {0}, crd = {0};
    CHECK(lookup("v1", "Namespace", &ns, &err) == 0);
    CHECK(!ns.namespaced && ns.has_status);
    snprintf(g_ns, sizeof g_ns, "itest-%d", (int)getpid());
    const char *nsj = fmt("{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":"
                          "\"%s\"}}", g_ns);
    CHECK(DO(kube_create(g_admin, &ns, NULL, nsj, strlen(nsj), NULL, res_done, &R)));
    CHECK(R.r.http_code == 201);

    /* An RV from before the Widget CRD (and so its watch cache) existed. */
    const char *cm = fmt("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":"
                         "\"early\"},\"data\":{\"a\":\"1\"}}");
    CHECK(DO(kube_create(g_admin, &g_cms, g_ns, cm, strlen(cm), NULL, res_done, &R)));
    snprintf(g_early_rv, sizeof g_early_rv, "%s", J(&R.r.body, "metadata.resourceVersion"));
    CHECK(g_early_rv[0] != '\0');

    CHECK(lookup("apiextensions.k8s.io/v1", "CustomResourceDefinition", &crd, &err) == 0);
    CHECK(!crd.namespaced);
    const char *cj = crd_json("widgets", "Widget");
    CHECK(DO(kube_create(g_admin, &crd, NULL, cj, strlen(cj), NULL, res_done, &R)));
    if (kube_result_is(&R.r, "AlreadyExists")) {
        /* Left by an earlier run: recreate it, so its watch cache starts after
         * g_early_rv again (the expired-RV test relies on that). */
        CHECK(DO(kube_delete(g_admin, &crd, NULL, "widgets." GROUP, NULL, res_done, &R)));
        for (int i = 0; i < 300; i++) {
            if (DO(kube_get(g_admin, &crd, NULL, "widgets." GROUP, NULL, res_done, &R)) &&
                R.r.http_code == 404)
                break;
            wait_flag(&(int){0}, 200);
        }
        CHECK(DO(kube_create(g_admin, &crd, NULL, cj, strlen(cj), NULL, res_done, &R)));
    }
    CHECK(R.r.http_code == 201);
    if (R.r.http_code != 201)
        SHOW(R);

    /* Before the CRD is served, the lookup names what is missing. */
    kube_resource none = {0};
    CHECK(lookup(GROUP "/v1", "Comment", &none, &err) == -1);
    CHECK_STR(err.msg, "no resource for kind Comment in " GROUP "/v1 (is the CRD installed?)");

    uint64_t end = loop_time_ms() + WAIT_MS;
    int found = 0;
    while (!found && loop_time_ms() < end)   /* each miss refreshes, rate bounded */
        found = lookup(GROUP "/v1", "Widget", &g_widgets, &err) == 0;
    CHECK(found);
    if (found) {
        CHECK_STR(g_widgets.resource, "widgets");
        CHECK_STR(g_widgets.group, GROUP);
        CHECK(g_widgets.namespaced && g_widgets.has_status);
    } else {
        printf("#   %s\n", err.msg);
    }
    /* Served is not yet established: wait until a list works. */
    kube_list_opts lo = {0};
    for (int i = 0; found && i < 100; i++) {
        if (DO(kube_list(g_admin, &g_widgets, g_ns, &lo, res_done, &R)) && R.r.http_code == 200)
            break;
        wait_flag(&(int){0}, 200);
    }
    kube_resource_free(&ns);
    kube_resource_free(&crd);
}

/* ---- CRUD --------------------------------------------------------------- */

static const char *widget(const char *name, const char *color, const char *labels)
{
    return fmt("{\"apiVersion\":\"" GROUP "/v1\",\"kind\":\"Widget\",\"metadata\":{\"name\":"
               "\"%s\"%s%s%s},\"spec\":{\"color\":\"%s\"}}",
               name, labels ? ",\"labels\":{" : "", labels ? labels : "", labels ? "}" : "",
               color);
}

TEST(widget_crud)
{
    if (!ready()) {
        CHECK(!"a running cluster (KLUA_TEST_CLUSTER)");
        return;
    }
    const char *w = widget("crud", "red", NULL);
    CHECK(DO(kube_create(g_admin, &g_widgets, g_ns, w, strlen(w), NULL, res_done, &R)));
    CHECK(R.r.http_code == 201 && kube_result_ok(&R.r) && R.r.reason[0] == '\0');
    CHECK_STR(J(&R.r.body, "spec.color"), "red");
    CHECK_STR(J(&R.r.body, "metadata.generation"), "1");

    CHECK(DO(kube_get(g_admin, &g_widgets, g_ns, "crud", NULL, res_done, &R)));
    CHECK(R.r.http_code == 200);
    char rv[32], uid[64];
    snprintf(rv, sizeof rv, "%s", J(&R.r.body, "metadata.resourceVersion"));
    snprintf(uid, sizeof uid, "%s", J(&R.r.body, "metadata.uid"));

    const char *u = fmt("{\"apiVersion\":\"" GROUP "/v1\",\"kind\":\"Widget\",\"metadata\":{"
                        "\"name\":\"crud\",\"resourceVersion\":\"%s\"},\"spec\":{\"color\":"
                        "\"green\"}}", rv);
    CHECK(DO(kube_update(g_admin, &g_widgets, g_ns, "crud", u, strlen(u), NULL, res_done, &R)));
    CHECK(R.r.http_code == 200);
    CHECK_STR(J(&R.r.body, "spec.color"), "green");
    CHECK_STR(J(&R.r.body, "metadata.generation"), "2");

    /* The same update again carries a stale resourceVersion. */
    CHECK(DO(kube_update(g_admin, &g_widgets, g_ns, "crud", u, strlen(u), NULL, res_done, &R)));
    CHECK(R.r.http_code == 409 && kube_result_is(&R.r, "Conflict"));
    CHECK_STR(R.r.reason, "Conflict");
    CHECK(strstr(R.r.message, "the object has been modified") != NULL);

    const char *mp = "{\"spec\":{\"size\":3}}";
    CHECK(DO(kube_patch(g_admin, &g_widgets, g_ns, "crud", KUBE_PATCH_MERGE, mp, strlen(mp), NULL,
                        res_done, &R)));
    CHECK(R.r.http_code == 200);
    CHECK_STR(J(&R.r.body, "spec.size"), "3");
    CHECK_STR(J(&R.r.body, "spec.color"), "green");
    const char *jp = "[{\"op\":\"replace\",\"path\":\"/spec/color\",\"value\":\"blue\"}]";
    CHECK(DO(kube_patch(g_admin, &g_widgets, g_ns, "crud", KUBE_PATCH_JSON, jp, strlen(jp), NULL,
                        res_done, &R)));
    CHECK(R.r.http_code == 200);
    CHECK_STR(J(&R.r.body, "spec.color"), "blue");
    /* Custom resources do not take strategic merge patches. */
    CHECK(DO(kube_patch(g_admin, &g_widgets, g_ns, "crud", KUBE_PATCH_STRATEGIC, mp, strlen(mp),
                        NULL, res_done, &R)));
    CHECK(R.r.http_code == 415);
    SHOW(R);

    /* Create twice. */
    CHECK(DO(kube_create(g_admin, &g_widgets, g_ns, w, strlen(w), NULL, res_done, &R)));
    CHECK(R.r.http_code == 409 && kube_result_is(&R.r, "AlreadyExists"));
    CHECK(!kube_result_is(&R.r, "Conflict"));
    CHECK_STR(R.r.message, "widgets.itest.klua.dev \"crud\" already exists");

    /* A delete whose uid precondition does not match. */
    kube_delete_opts bad = {NULL, "00000000-0000-0000-0000-000000000000", NULL, -1};
    CHECK(DO(kube_delete(g_admin, &g_widgets, g_ns, "crud", &bad, res_done, &R)));
    CHECK(R.r.http_code == 409 && kube_result_is(&R.r, "Conflict"));
    CHECK(strstr(R.r.message, "does not match the UID in record") != NULL);
    SHOW(R);

    kube_delete_opts good = {"Background", uid, NULL, -1};
    CHECK(DO(kube_delete(g_admin, &g_widgets, g_ns, "crud", &good, res_done, &R)));
    CHECK(R.r.http_code == 200);

    CHECK(DO(kube_get(g_admin, &g_widgets, g_ns, "crud", NULL, res_done, &R)));
    CHECK(R.r.http_code == 404 && kube_result_is(&R.r, "NotFound"));
    CHECK_STR(R.r.reason, "NotFound");
    CHECK_STR(R.r.message, "widgets.itest.klua.dev \"crud\" not found");
}

TEST(configmap_crud)
{
    if (!ready()) {
        CHECK(!"a running cluster (KLUA_TEST_CLUSTER)");
        return;
    }
    const char *cm = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":"
                     "\"cm-crud\"},\"data\":{\"a\":\"1\"}}";
    CHECK(DO(kube_create(g_admin, &g_cms, g_ns, cm, strlen(cm), NULL, res_done, &R)));
    CHECK(R.r.http_code == 201);
    const char *sp = "{\"data\":{\"b\":\"2\"}}";
    CHECK(DO(kube_patch(g_admin, &g_cms, g_ns, "cm-crud", KUBE_PATCH_STRATEGIC, sp, strlen(sp),
                        NULL, res_done, &R)));
    CHECK(R.r.http_code == 200);
    CHECK_STR(J(&R.r.body, "data.a"), "1");
    CHECK_STR(J(&R.r.body, "data.b"), "2");
    /* dryRun=All answers as if written, and writes nothing. */
    kube_write_opts dry = {NULL, 0, 1, NULL};
    const char *dp = "{\"data\":{\"c\":\"3\"}}";
    CHECK(DO(kube_patch(g_admin, &g_cms, g_ns, "cm-crud", KUBE_PATCH_MERGE, dp, strlen(dp), &dry,
                        res_done, &R)));
    CHECK(R.r.http_code == 200 && strcmp(J(&R.r.body, "data.c"), "3") == 0);
    CHECK(DO(kube_get(g_admin, &g_cms, g_ns, "cm-crud", NULL, res_done, &R)));
    CHECK(R.r.http_code == 200 && strcmp(J(&R.r.body, "data.c"), "") == 0);
    CHECK(DO(kube_delete(g_admin, &g_cms, g_ns, "cm-crud", NULL, res_done, &R)));
    CHECK(R.r.http_code == 200);
    CHECK(DO(kube_get(g_admin, &g_cms, g_ns, "missing-cm", NULL, res_done, &R)));
    CHECK(R.r.http_code == 404 && kube_result_is(&R.r, "NotFound"));
    CHECK_STR(R.r.message, "configmaps \"missing-cm\" not found");
}

/* ---- lists -------------------------------------------------------------- */

TEST(list_with_selector_and_paging)
{
    if (!ready()) {
        CHECK(!"a running cluster (KLUA_TEST_CLUSTER)");
        return;
    }
    int created = 0;
    for (int i = 0; i < 25; i++) {
        const char *cm = fmt("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{"
                             "\"name\":\"page-%02d\",\"labels\":{\"batch\":\"paging\",\"odd\":"
                             "\"%s\"}}}", i, i % 2 ? "yes" : "no");
        created += DO(kube_create(g_admin, &g_cms, g_ns, cm, strlen(cm), NULL, res_done, &R)) &&
                   R.r.http_code == 201;
    }
    CHECK(created == 25);
    int seen[25] = {0}, pages = 0, items = 0, other = 0;
    char cont[2048] = "";
    kube_stats before = kube_client_stats(g_admin);
    do {
        kube_list_opts lo = {"batch=paging", NULL, 10, cont[0] ? cont : NULL, NULL, NULL};
        if (!DO(kube_list(g_admin, &g_cms, g_ns, &lo, res_done, &R)) || R.r.http_code != 200) {
            SHOW(R);
            break;
        }
        pages++;
        json_doc d = {0};
        if (json_parse(&d, R.r.body.data, R.r.body.len, NULL) == 0) {
            int list = json_obj_get(&d, 0, "items");
            for (int t = json_first(&d, list); t >= 0; t = json_next(&d, t)) {
                char *name = json_str_dup(&d, json_path(&d, t, "metadata.name"));
                int k = -1;
                if (name && sscanf(name, "page-%d", &k) == 1 && k >= 0 && k < 25)
                    seen[k]++;
                else
                    other++;
                items++;
                free(name);
            }
        }
        json_doc_free(&d);
        snprintf(cont, sizeof cont, "%s", J(&R.r.body, "metadata.continue"));
    } while (cont[0] && pages < 10);
    CHECK(pages == 3);
    CHECK(items == 25 && other == 0);
    int once = 1;
    for (int i = 0; i < 25; i++)
        once &= seen[i] == 1;
    CHECK(once);
    CHECK(kube_client_stats(g_admin).lists - before.lists == 3);

    kube_list_opts sel = {"batch=paging,odd=yes", NULL, 0, NULL, NULL, NULL};
    CHECK(DO(kube_list(g_admin, &g_cms, g_ns, &sel, res_done, &R)) && R.r.http_code == 200);
    int odd = 0;
    for (const char *p = R.r.body.data; p && (p = strstr(p, "\"odd\":\"yes\"")); p++)
        odd++;
    CHECK(odd == 12);
    kube_list_opts set = {"odd in (yes,maybe),batch!=other", "metadata.name=page-03", 0, NULL,
                          NULL, NULL};
    CHECK(DO(kube_list(g_admin, &g_cms, g_ns, &set, res_done, &R)) && R.r.http_code == 200);
    CHECK(strstr(R.r.body.data, "\"name\":\"page-03\"") != NULL);
    CHECK(strstr(R.r.body.data, "\"name\":\"page-01\"") == NULL);
}

/* ---- status subresource ------------------------------------------------- */

TEST(status_subresource)
{
    if (!ready()) {
        CHECK(!"a running cluster (KLUA_TEST_CLUSTER)");
        return;
    }
    const char *w = widget("st", "red", NULL);
    CHECK(DO(kube_create(g_admin, &g_widgets, g_ns, w, strlen(w), NULL, res_done, &R)));
    CHECK(R.r.http_code == 201);
    char rv[32];
    snprintf(rv, sizeof rv, "%s", J(&R.r.body, "metadata.resourceVersion"));
    /* Writing /status ignores the spec change. */
    const char *s = fmt("{\"apiVersion\":\"" GROUP "/v1\",\"kind\":\"Widget\",\"metadata\":{"
                        "\"name\":\"st\",\"resourceVersion\":\"%s\"},\"spec\":{\"color\":"
                        "\"purple\"},\"status\":{\"phase\":\"Ready\"}}", rv);
    kube_write_opts so = {NULL, 0, 0, "status"};
    CHECK(DO(kube_update(g_admin, &g_widgets, g_ns, "st", s, strlen(s), &so, res_done, &R)));
    CHECK(R.r.http_code == 200);
    CHECK_STR(J(&R.r.body, "status.phase"), "Ready");
    CHECK_STR(J(&R.r.body, "spec.color"), "red");
    CHECK_STR(J(&R.r.body, "metadata.generation"), "1");
    snprintf(rv, sizeof rv, "%s", J(&R.r.body, "metadata.resourceVersion"));
    /* Writing the main resource ignores the status change. */
    const char *m = fmt("{\"apiVersion\":\"" GROUP "/v1\",\"kind\":\"Widget\",\"metadata\":{"
                        "\"name\":\"st\",\"resourceVersion\":\"%s\"},\"spec\":{\"color\":"
                        "\"yellow\"},\"status\":{\"phase\":\"Broken\"}}", rv);
    CHECK(DO(kube_update(g_admin, &g_widgets, g_ns, "st", m, strlen(m), NULL, res_done, &R)));
    CHECK(R.r.http_code == 200);
    CHECK_STR(J(&R.r.body, "status.phase"), "Ready");
    CHECK_STR(J(&R.r.body, "spec.color"), "yellow");
    CHECK_STR(J(&R.r.body, "metadata.generation"), "2");
    /* A merge patch of /status. */
    const char *p = "{\"status\":{\"phase\":\"Done\"}}";
    CHECK(DO(kube_patch(g_admin, &g_widgets, g_ns, "st", KUBE_PATCH_MERGE, p, strlen(p), &so,
                        res_done, &R)));
    CHECK(R.r.http_code == 200);
    CHECK_STR(J(&R.r.body, "status.phase"), "Done");
    CHECK(DO(kube_get(g_admin, &g_widgets, g_ns, "st", "status", res_done, &R)));
    CHECK(R.r.http_code == 200);
    CHECK_STR(J(&R.r.body, "status.phase"), "Done");
}

/* ---- server-side apply -------------------------------------------------- */

TEST(server_side_apply_conflict_and_force)
{
    if (!ready()) {
        CHECK(!"a running cluster (KLUA_TEST_CLUSTER)");
        return;
    }
    const char *a = fmt("{\"apiVersion\":\"" GROUP "/v1\",\"kind\":\"Widget\",\"metadata\":{"
                        "\"name\":\"ssa\"},\"spec\":{\"color\":\"red\",\"size\":1}}");
    kube_write_opts ma = {"manager-a", 0, 0, NULL};
    CHECK(DO(kube_patch(g_admin, &g_widgets, g_ns, "ssa", KUBE_PATCH_APPLY, a, strlen(a), &ma,
                        res_done, &R)));
    CHECK(R.r.http_code == 201);     /* apply creates */
    CHECK(strstr(R.r.body.data ? R.r.body.data : "", "\"manager\":\"manager-a\"") != NULL);

    const char *b = fmt("{\"apiVersion\":\"" GROUP "/v1\",\"kind\":\"Widget\",\"metadata\":{"
                        "\"name\":\"ssa\"},\"spec\":{\"color\":\"blue\"}}");
    kube_write_opts mb = {"manager-b", 0, 0, NULL};
    CHECK(DO(kube_patch(g_admin, &g_widgets, g_ns, "ssa", KUBE_PATCH_APPLY, b, strlen(b), &mb,
                        res_done, &R)));
    CHECK(R.r.http_code == 409 && kube_result_is(&R.r, "Conflict"));
    CHECK(strstr(R.r.message, "manager-a") != NULL && strstr(R.r.message, ".spec.color"));
    SHOW(R);

    mb.force = 1;
    CHECK(DO(kube_patch(g_admin, &g_widgets, g_ns, "ssa", KUBE_PATCH_APPLY, b, strlen(b), &mb,
                        res_done, &R)));
    CHECK(R.r.http_code == 200);
    CHECK_STR(J(&R.r.body, "spec.color"), "blue");
    CHECK_STR(J(&R.r.body, "spec.size"), "1");    /* still owned by manager-a */
    CHECK(strstr(R.r.body.data ? R.r.body.data : "", "\"manager\":\"manager-b\"") != NULL);
}

/* ---- watches ------------------------------------------------------------ */

typedef struct watch_log {
    int n;
    watch_type types[64];
    char names[64][64];
    char rvs[64][32];
    long code;            /* ERROR events */
    char reason[64], message[256];
    int done;
    kube_result end;
} watch_log;

static void wl_event(void *ud, const watch_event *ev)
{
    watch_log *w = ud;
    if (w->n >= 64)
        return;
    kl_buf o = {(char *)ev->object, ev->object_len, 0, 0};
    w->types[w->n] = ev->type;
    snprintf(w->names[w->n], sizeof w->names[0], "%s", ev->object ? J(&o, "metadata.name") : "");
    snprintf(w->rvs[w->n], sizeof w->rvs[0], "%s",
             ev->resource_version ? ev->resource_version : "");
    if (ev->type == WATCH_ERROR) {
        w->code = ev->code;
        snprintf(w->reason, sizeof w->reason, "%s", ev->reason ? ev->reason : "");
        snprintf(w->message, sizeof w->message, "%s", ev->message ? ev->message : "");
    }
    w->n++;
}

static void wl_done(void *ud, kube_result *r)
{
    watch_log *w = ud;
    w->end.http_code = r->http_code;
    memcpy(w->end.reason, r->reason, sizeof w->end.reason);
    memcpy(w->end.message, r->message, sizeof w->end.message);
    w->done = 1;
}

static int count_type(const watch_log *w, watch_type t, const char *name)
{
    int k = 0;
    for (int i = 0; i < w->n; i++)
        k += w->types[i] == t && (!name || strcmp(w->names[i], name) == 0);
    return k;
}

TEST(watch_sees_added_modified_deleted_in_order)
{
    if (!ready()) {
        CHECK(!"a running cluster (KLUA_TEST_CLUSTER)");
        return;
    }
    kube_list_opts lo = {"watch=me", NULL, 0, NULL, NULL, NULL};
    CHECK(DO(kube_list(g_admin, &g_widgets, g_ns, &lo, res_done, &R)) && R.r.http_code == 200);
    char rv[32];
    snprintf(rv, sizeof rv, "%s", J(&R.r.body, "metadata.resourceVersion"));
    watch_log *w = calloc(1, sizeof *w);
    kube_watch_opts wo = {"watch=me", NULL, rv, 0, 60, 0};
    kube_call *call = kube_watch_resource(g_admin, &g_widgets, g_ns, &wo, wl_event, wl_done, w);
    CHECK(call != NULL);
    const char *obj = widget("watched", "red", "\"watch\":\"me\"");
    CHECK(DO(kube_create(g_admin, &g_widgets, g_ns, obj, strlen(obj), NULL, res_done, &R)));
    const char *mp = "{\"spec\":{\"color\":\"green\"}}";
    CHECK(DO(kube_patch(g_admin, &g_widgets, g_ns, "watched", KUBE_PATCH_MERGE, mp, strlen(mp),
                        NULL, res_done, &R)));
    CHECK(DO(kube_delete(g_admin, &g_widgets, g_ns, "watched", NULL, res_done, &R)));
    uint64_t end = loop_time_ms() + 20000;
    while (count_type(w, WATCH_DELETED, "watched") == 0 && !w->done && loop_time_ms() < end)
        loop_run_once(g_loop, 200);
    CHECK(w->n == 3);
    CHECK(w->types[0] == WATCH_ADDED && w->types[1] == WATCH_MODIFIED &&
          w->types[2] == WATCH_DELETED);
    CHECK_STR(w->names[0], "watched");
    CHECK_STR(w->names[2], "watched");
    CHECK(w->rvs[0][0] && strcmp(w->rvs[0], w->rvs[1]) != 0);
    CHECK(!w->done);
    kube_cancel(call);
    free(w);
}

TEST(watch_bookmark_before_timeout)
{
    if (!ready()) {
        CHECK(!"a running cluster (KLUA_TEST_CLUSTER)");
        return;
    }
    kube_list_opts lo = {0};
    CHECK(DO(kube_list(g_admin, &g_widgets, g_ns, &lo, res_done, &R)) && R.r.http_code == 200);
    char rv[32];
    snprintf(rv, sizeof rv, "%s", J(&R.r.body, "metadata.resourceVersion"));
    watch_log *w = calloc(1, sizeof *w);
    /* The watch cache sends a bookmark about 2 s before a watch's deadline
     * (and about every minute): a 5 s timeout gives one after about 3 s. It
     * only sends one whose resourceVersion is newer than what the watcher has
     * seen, so a write this watch does not select (its label selector) has to
     * move the cache's resourceVersion on first, as in a busy cluster. */
    kube_watch_opts wo = {"bookmark=only", NULL, rv, 1, 5, 0};
    uint64_t t0 = loop_time_ms();
    CHECK(kube_watch_resource(g_admin, &g_widgets, g_ns, &wo, wl_event, wl_done, w) != NULL);
    wait_flag(&(int){0}, 1000);
    const char *p = "{\"spec\":{\"size\":7}}";
    CHECK(DO(kube_patch(g_admin, &g_widgets, g_ns, "st", KUBE_PATCH_MERGE, p, strlen(p), NULL,
                        res_done, &R)) && R.r.http_code == 200);
    char moved[32];
    snprintf(moved, sizeof moved, "%s", J(&R.r.body, "metadata.resourceVersion"));
    wait_flag(&w->done, 20000);
    uint64_t took = loop_time_ms() - t0;
    CHECK(w->done);
    CHECK(w->end.http_code == 200 && w->end.reason[0] == '\0');  /* a normal end */
    CHECK(count_type(w, WATCH_BOOKMARK, NULL) >= 1);
    CHECK(took >= 4000 && took < 15000);
    if (count_type(w, WATCH_BOOKMARK, NULL) == 0)
        printf("#   no BOOKMARK within the 5 s watch (%d events, ended after %lu ms)\n", w->n,
               (unsigned long)took);
    else
        CHECK_STR(w->rvs[0], moved);     /* a bookmark carries the newest resourceVersion */
    CHECK(count_type(w, WATCH_MODIFIED, NULL) == 0);
    free(w);
}

typedef struct plain {
    int done;
    long status;
    char error[256];
    char body[512];
} plain;

static void plain_done(void *ud, http_response *resp)
{
    plain *p = ud;
    p->status = resp->status;
    snprintf(p->error, sizeof p->error, "%s", resp->error);
    snprintf(p->body, sizeof p->body, "%.*s", (int)(resp->body.len < 511 ? resp->body.len : 511),
             resp->body.data ? resp->body.data : "");
    p->done = 1;
}

/* POST etcd's JSON gateway: compact history up to rev. 0 or -1. */
static int etcd_compact(const char *rev)
{
    char url[128], body[96];
    plain p = {0};
    kl_err err = {0};
    snprintf(url, sizeof url, "http://127.0.0.1:%s/v3/kv/compaction",
             env_value("KLUA_ETCD_CLIENT_PORT"));
    snprintf(body, sizeof body, "{\"revision\":\"%s\",\"physical\":true}", rev);
    const char *hdr[] = {"Content-Type: application/json", NULL};
    http_request_opts o = {0};
    o.method = "POST";
    o.url = url;
    o.headers = hdr;
    o.body = body;
    o.body_len = strlen(body);
    o.timeout_ms = 10000;
    o.on_done = plain_done;
    o.ud = &p;
    if (!http_start(g_http, &o, &err)) {
        printf("#   compaction: %s\n", err.msg);
        return -1;
    }
    wait_flag(&p.done, 15000);
    if (p.status != 200)
        printf("#   compaction of %s via %s: HTTP %ld %s %s\n", rev, url, p.status, p.error,
               p.body);
    return p.status == 200 ? 0 : -1;
}

/* 410 after compaction. A LIST at an exact, compacted resourceVersion must
 * come from etcd and fail; a WATCH from an RV older than the watch cache's
 * window (the Widget cache started after g_early_rv) is expired too. */
TEST(expired_resource_version_after_compaction)
{
    if (!ready()) {
        CHECK(!"a running cluster (KLUA_TEST_CLUSTER)");
        return;
    }
    const char *cm = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":"
                     "\"compact-me\"},\"data\":{\"n\":\"0\"}}";
    CHECK(DO(kube_create(g_admin, &g_cms, g_ns, cm, strlen(cm), NULL, res_done, &R)));
    char old_rv[32], now_rv[32] = "";
    snprintf(old_rv, sizeof old_rv, "%s", J(&R.r.body, "metadata.resourceVersion"));
    for (int i = 1; i <= 5; i++) {
        const char *p = fmt("{\"data\":{\"n\":\"%d\"}}", i);
        CHECK(DO(kube_patch(g_admin, &g_cms, g_ns, "compact-me", KUBE_PATCH_MERGE, p, strlen(p),
                            NULL, res_done, &R)));
        snprintf(now_rv, sizeof now_rv, "%s", J(&R.r.body, "metadata.resourceVersion"));
    }
    CHECK(etcd_compact(now_rv) == 0);

    /* Not asserted, reported: recent servers answer exact-RV lists from
     * watch cache snapshots, so a compacted but recent RV may still work. */
    kube_list_opts lo = {NULL, NULL, 0, NULL, old_rv, "Exact"};
    CHECK(DO(kube_list(g_admin, &g_cms, g_ns, &lo, res_done, &R)));
    printf("#   configmaps list at compacted RV %s (Exact):", old_rv);
    SHOW(R);
    /* Older than the Widget cache: the list has to come from etcd. */
    kube_list_opts wl = {NULL, NULL, 0, NULL, g_early_rv, "Exact"};
    CHECK(DO(kube_list(g_admin, &g_widgets, g_ns, &wl, res_done, &R)));
    CHECK(R.r.http_code == 410 && kube_result_is(&R.r, "Gone"));
    printf("#   widgets list at RV %s (Exact):", g_early_rv);
    SHOW(R);

    watch_log *w = calloc(1, sizeof *w);
    kube_watch_opts wo = {NULL, NULL, g_early_rv, 1, 30, 0};
    kube_call *call = kube_watch_resource(g_admin, &g_widgets, g_ns, &wo, wl_event, wl_done, w);
    uint64_t end = loop_time_ms() + 15000;
    while (count_type(w, WATCH_ERROR, NULL) == 0 && !w->done && loop_time_ms() < end)
        loop_run_once(g_loop, 200);
    int as_event = count_type(w, WATCH_ERROR, NULL) > 0;
    int as_answer = w->done && w->end.http_code == 410;
    CHECK(as_event || as_answer);
    if (as_event) {
        CHECK(w->code == 410);
        CHECK(strcmp(w->reason, "Expired") == 0 || strcmp(w->reason, "Gone") == 0);
        printf("#   watch from %s: ERROR event %ld %s: %s\n", g_early_rv, w->code, w->reason,
               w->message);
    } else if (as_answer) {
        kube_result *e = &w->end;
        CHECK(kube_result_is(e, "Gone"));
        printf("#   watch from %s: answer %ld %s: %s\n", g_early_rv, e->http_code, e->reason,
               e->message);
    } else {
        printf("#   watch from %s: no 410 (%d events, done=%d)\n", g_early_rv, w->n, w->done);
    }
    if (!w->done)
        kube_cancel(call);
    free(w);
}

/* ---- authentication ----------------------------------------------------- */

static const char *review_user(kube_client *c)
{
    const char *body = "{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":"
                       "\"SelfSubjectReview\"}";
    res s = {0};
    kube_call *call = kube_request(c, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                   NULL, body, strlen(body), res_done, &s);
    do_wait(&s, call != NULL);
    const char *u = s.r.http_code == 201 ? J(&s.r.body, "status.userInfo.username") : "";
    if (s.r.http_code != 201)
        SHOW(s);
    res_reset(&s);
    return u;
}

static int get_ok(kube_client *c, res *s)
{
    res_reset(s);
    kube_call *call = kube_request(c, "GET", "/api/v1/namespaces/default", NULL, NULL, 0,
                                   res_done, s);
    return do_wait(s, call != NULL) && s->r.http_code == 200;
}

TEST(auth_token_and_client_cert)
{
    if (!ready()) {
        CHECK(!"a running cluster (KLUA_TEST_CLUSTER)");
        return;
    }
    kl_err err = {0};
    res s = {0};
    CHECK(get_ok(g_admin, &s));
    kube_client *cert = client_from("kubeconfig-cert", &err);
    CHECK(cert != NULL);
    if (cert) {
        CHECK(get_ok(cert, &s));
        CHECK_STR(review_user(cert), "klua-admin");
        kube_client_free(cert);
    }
    kube_client *viewer = client_from("kubeconfig-viewer", &err);
    if (viewer) {
        kube_list_opts lo = {0};
        CHECK(DO(kube_list(viewer, &g_cms, g_ns, &lo, res_done, &R)));
        CHECK(R.r.http_code == 403 && kube_result_is(&R.r, "Forbidden"));
        CHECK(strstr(R.r.message, "cannot list resource \"configmaps\"") != NULL);
        kube_client_free(viewer);
    }
    /* The User-Agent reaches the server. */
    char path[512], line[8192];
    int ua = 0;
    snprintf(path, sizeof path, "%s/audit.log", g_dir);
    FILE *f = fopen(path, "r");
    while (f && !ua && fgets(line, sizeof line, f))
        ua = strstr(line, "\"userAgent\":\"klua/") != NULL;
    if (f)
        fclose(f);
    CHECK(ua);
    res_reset(&s);
}

TEST(auth_token_file_reread_on_401)
{
    if (!ready()) {
        CHECK(!"a running cluster (KLUA_TEST_CLUSTER)");
        return;
    }
    kl_err err = {0};
    res s = {0};
    kube_rest_config cfg = {0};
    kubeconfig_opts o = {0};
    char kc[512], tf[64], good[256] = "";
    snprintf(kc, sizeof kc, "%s/kubeconfig-tokenfile", g_dir);
    o.path = kc;
    CHECK(kubeconfig_load(&o, &cfg, &err) == 0);
    CHECK(cfg.token_file != NULL);
    FILE *f = cfg.token_file ? fopen(cfg.token_file, "r") : NULL;
    if (f) {
        CHECK(fgets(good, sizeof good, f) != NULL);
        fclose(f);
    }
    kube_client *c = kube_client_new(g_loop, g_http, &cfg, NULL, &err);
    CHECK(c != NULL && get_ok(c, &s));
    kube_client_free(c);

    /* A token file of our own: wrong first, then rotated to the right one. */
    snprintf(tf, sizeof tf, "/tmp/klua-itest-token-%d", (int)getpid());
    f = fopen(tf, "w");
    fputs("wrong-token\n", f);
    fclose(f);
    memset(&cfg, 0, sizeof cfg);
    CHECK(kubeconfig_load(&o, &cfg, &err) == 0);
    free(cfg.token_file);
    cfg.token_file = strdup(tf);
    c = kube_client_new(g_loop, g_http, &cfg, NULL, &err);
    CHECK(!get_ok(c, &s));
    CHECK(s.r.http_code == 401 && kube_result_is(&s.r, "Unauthorized"));
    CHECK(strstr(s.r.message, "wrong-token") == NULL);
    SHOW(s);
    f = fopen(tf, "w");
    fputs(good, f);
    fclose(f);
    /* Within the minute the old token is still cached: the 401 makes us re-read. */
    CHECK(get_ok(c, &s));
    kube_client_free(c);
    unlink(tf);
    res_reset(&s);
}

TEST(auth_exec_plugin)
{
    if (!ready()) {
        CHECK(!"a running cluster (KLUA_TEST_CLUSTER)");
        return;
    }
    kl_err err = {0};
    res s = {0};
    char calls[512];
    snprintf(calls, sizeof calls, "%s/exec-plugin.calls", g_dir);
    unsetenv("KLUA_EXEC_EXPIRES_IN");
    long n0 = count_lines(calls);
    kube_client *c = client_from("kubeconfig-exec", &err);
    CHECK(c != NULL);
    if (!c)
        return;
    CHECK(get_ok(c, &s));
    CHECK(get_ok(c, &s));
    CHECK(count_lines(calls) == n0 + 1);          /* cached: no expiry given */
    CHECK_STR(review_user(c), "admin");
    kube_client_free(c);

    /* An already expired credential is fetched again for every request. */
    setenv("KLUA_EXEC_EXPIRES_IN", "-60", 1);
    long n1 = count_lines(calls);
    c = client_from("kubeconfig-exec", &err);
    CHECK(get_ok(c, &s));
    CHECK(get_ok(c, &s));
    CHECK(count_lines(calls) == n1 + 2);
    kube_client_free(c);
    unsetenv("KLUA_EXEC_EXPIRES_IN");

    /* A token the server refuses: 401, the plugin runs again, the retry works. */
    long n2 = count_lines(calls);
    char bad[32];
    snprintf(bad, sizeof bad, "%ld", n2 + 1);
    setenv("KLUA_EXEC_BAD_FIRST", bad, 1);
    c = client_from("kubeconfig-exec", &err);
    CHECK(get_ok(c, &s));
    CHECK(count_lines(calls) == n2 + 2);
    kube_client_free(c);
    unsetenv("KLUA_EXEC_BAD_FIRST");

    /* A failing plugin: the user sees its command, exit status and stderr. */
    setenv("KLUA_EXEC_FAIL", "1", 1);
    c = client_from("kubeconfig-exec", &err);
    CHECK(!get_ok(c, &s));
    CHECK(s.r.http_code == 0);
    CHECK_STR(s.r.message, "exec plugin /bin/sh failed: exit status 1: exec-plugin: failing on "
                           "purpose (KLUA_EXEC_FAIL=1)");
    kube_client_free(c);
    unsetenv("KLUA_EXEC_FAIL");
    res_reset(&s);
}

TEST(auth_wrong_ca_is_refused)
{
    if (!ready()) {
        CHECK(!"a running cluster (KLUA_TEST_CLUSTER)");
        return;
    }
    kl_err err = {0};
    res s = {0};
    kube_client *c = client_from("kubeconfig-wrongca", &err);
    CHECK(c != NULL);
    if (!c)
        return;
    kube_stats before = kube_client_stats(c);
    CHECK(!get_ok(c, &s));
    CHECK(s.r.http_code == 0);
    CHECK_STR(s.r.reason, "ConnectionError");
    const char *want = fmt("TLS verification of %s failed: ", env_value("KLUA_APISERVER_URL"));
    CHECK(strncmp(s.r.message, want, strlen(want)) == 0);
    CHECK(strstr(s.r.message, fmt("(check certificate-authority in %s/kubeconfig-wrongca)",
                                  g_dir)) != NULL);
    CHECK(strstr(s.r.message, env_value("KLUA_ADMIN_TOKEN")) == NULL);
    CHECK(kube_client_stats(c).retries == before.retries);   /* not retried */
    SHOW(s);
    kube_client_free(c);
    res_reset(&s);
}

TEST(refused_connection_names_the_server)
{
    if (!ready()) {
        CHECK(!"a running cluster (KLUA_TEST_CLUSTER)");
        return;
    }
    kl_err err = {0};
    kube_rest_config cfg = {0};
    cfg.server = strdup("https://127.0.0.1:9");
    kube_client_opts o = {0, 0, 1, 0};
    kube_client *c = kube_client_new(g_loop, g_http, &cfg, &o, &err);
    CHECK(DO(kube_get(c, &g_cms, "default", "x", NULL, res_done, &R)));
    CHECK(R.r.http_code == 0 && kube_result_is(&R.r, "ConnectionError"));
    CHECK(strncmp(R.r.message, "cannot connect to https://127.0.0.1:9: ", 39) == 0);
    SHOW(R);
    kube_client_free(c);
}

int main(void)
{
    kl_err err = {0};
    curl_global_init(CURL_GLOBAL_DEFAULT);
    g_dir = getenv("KLUA_TEST_CLUSTER");
    if (g_dir && *g_dir) {
        g_loop = loop_new(&err);
        g_http = g_loop ? http_client_new(g_loop, &err) : NULL;
        if (!g_http)
            printf("#   %s\n", err.msg);
    } else {
        g_dir = NULL;
    }
    RUN(setup_crd_and_discovery);
    RUN(widget_crud);
    RUN(configmap_crud);
    RUN(list_with_selector_and_paging);
    RUN(status_subresource);
    RUN(server_side_apply_conflict_and_force);
    RUN(watch_sees_added_modified_deleted_in_order);
    RUN(watch_bookmark_before_timeout);
    RUN(expired_resource_version_after_compaction);
    RUN(auth_token_and_client_cert);
    RUN(auth_token_file_reread_on_401);
    RUN(auth_exec_plugin);
    RUN(auth_wrong_ca_is_refused);
    RUN(refused_connection_names_the_server);
    res_reset(&R);
    kube_resource_free(&g_widgets);
    kube_resource_free(&g_cms);
    discovery_free(g_disc);
    kube_client_free(g_admin);
    if (g_http)
        http_client_free(g_http);
    if (g_loop)
        loop_free(g_loop);
    curl_global_cleanup();
    DONE();
}
