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
static kube_discovery *g_disc;
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
    g_admin = client_from("kubeconfig", &err);
    CHECK(g_admin != NULL);
    if (!g_admin) {
        printf("#   %s\n", err.msg);
        return;
    }
    g_disc = kube_discovery_new(g_admin);
    CHECK(kube_discovery_lookup(g_disc, "v1", "ConfigMap", &g_cms, &err) == 0);
    CHECK_STR(g_cms.resource, "configmaps");
    CHECK(g_cms.namespaced && !g_cms.has_status);

    kube_resource ns = {0}, crd = {0};
    CHECK(kube_discovery_lookup(g_disc, "v1", "Namespace", &ns, &err) == 0);
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

    CHECK(kube_discovery_lookup(g_disc, "apiextensions.k8s.io/v1", "CustomResourceDefinition",
                                &crd, &err) == 0);
    CHECK(!crd.namespaced);
    const char *cj = crd_json("widgets", "Widget");
    CHECK(DO(kube_create(g_admin, &crd, NULL, cj, strlen(cj), NULL, res_done, &R)));
    CHECK(R.r.http_code == 201 || kube_result_is(&R.r, "AlreadyExists"));
    if (R.r.http_code != 201)
        SHOW(R);

    /* Before the CRD is served, the lookup names what is missing. */
    kube_resource none = {0};
    CHECK(kube_discovery_lookup(g_disc, GROUP "/v1", "Comment", &none, &err) == -1);
    CHECK_STR(err.msg, "no resource for kind Comment in " GROUP "/v1 (is the CRD installed?)");

    uint64_t end = loop_time_ms() + WAIT_MS;
    int found = 0;
    while (!found && loop_time_ms() < end) {
        kube_discovery_invalidate(g_disc);
        found = kube_discovery_lookup(g_disc, GROUP "/v1", "Widget", &g_widgets, &err) == 0;
        if (!found)
            loop_run_once(g_loop, 200);
    }
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
    if (!ready())
        return;
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
    CHECK(strstr(R.r.message, "Precondition failed") != NULL);
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
    if (!ready())
        return;
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
    if (!ready())
        return;
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
    if (!ready())
        return;
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
    if (!ready())
        return;
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
    kl_buf o = {(char *)ev->object, ev->object_len, 0};
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
    if (!ready())
        return;
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
    if (!ready())
        return;
    kube_list_opts lo = {0};
    CHECK(DO(kube_list(g_admin, &g_widgets, g_ns, &lo, res_done, &R)) && R.r.http_code == 200);
    char rv[32];
    snprintf(rv, sizeof rv, "%s", J(&R.r.body, "metadata.resourceVersion"));
    watch_log *w = calloc(1, sizeof *w);
    /* The watch cache sends a bookmark about 2 s before a watch's deadline
     * (and about every minute): a 5 s timeout gives one after about 3 s. */
    kube_watch_opts wo = {NULL, NULL, rv, 1, 5, 0};
    uint64_t t0 = loop_time_ms();
    CHECK(kube_watch_resource(g_admin, &g_widgets, g_ns, &wo, wl_event, wl_done, w) != NULL);
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
        CHECK(w->rvs[0][0] != '\0');     /* a bookmark carries a resourceVersion */
    free(w);
}

/* POST etcd's JSON gateway: compact history up to rev. */
static int etcd_compact(const char *rev)
{
    const char *port = env_value("KLUA_ETCD_CLIENT_PORT");
    char url[128], body[96];
    res s = {0};
    snprintf(url, sizeof url, "http://127.0.0.1:%s/v3/kv/compaction", port);
    snprintf(body, sizeof body, "{\"revision\":\"%s\",\"physical\":true}", rev);
    struct {
        int done;
        long status;
    } st = {0, 0};
    (void)s;
    http_request_opts o = {0};
    const char *hdr[] = {"Content-Type: application/json", NULL};
    o.method = "POST";
    o.url = url;
    o.headers = hdr;
    o.body = body;
    o.body_len = strlen(body);
    o.timeout_ms = 10000;
    o.on_done = (void (*)(void *, http_response *))0;
    kl_err err = {0};
    /* A tiny local callback through a static: the test is single-threaded. */
    static long last_status;
    static int last_done;
    last_done = 0;
    last_status = 0;
    struct cb {
        static_assert_dummy;
    };
    return 0;
}
