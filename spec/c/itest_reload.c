/* itest_reload.c - hot reload against a real etcd + kube-apiserver: a reload
 * that needs discovery waits for it as any other I/O.
 *
 * Needs KLUA_TEST_CLUSTER=DIR (see itest_rest.c). A script folder is written
 * to a temporary directory; reload_set runs it with the real discovery,
 * informers and controllers, and the test drives the loop itself. What is
 * asserted is what a user sees: which declaration runs, what a rescan logs
 * and fails with, and that the loop kept turning while discovery was asked.
 */
#include "harness.h"
#include "itest_cluster.h"

#include "controller.h"
#include "discovery.h"
#include "http.h"
#include "informer.h"
#include "kube.h"
#include "kubeconfig.h"
#include "loop.h"
#include "lua_ctx.h"
#include "reload.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT_MS 60000

static loop *g_loop;
static http_client *g_http;
static kube_client *g_c;
static char g_dir[256];

static void write_script(const char *api_version, const char *kind)
{
    char path[300];
    snprintf(path, sizeof path, "%s/a.lua", g_dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return;
    fprintf(f,
            "return {\n"
            "  name = \"a\",\n"
            "  watch = { apiVersion = \"%s\", kind = \"%s\" },\n"
            "  selector = \"klua-itest-reload=none\",\n"
            "  reconcile = function(ctx, obj) return nil end,\n"
            "}\n",
            api_version, kind);
    fclose(f);
}

static const char *running_kind(reload_set *s)
{
    const controller *c = reload_set_find(s, "a");
    return c ? controller_decl(c)->watch.kind : "(none)";
}

typedef struct started {
    int done;
    kl_err err;
} started;

static void on_started(void *ud, const kl_err *err)
{
    started *st = ud;
    st->done = 1;
    if (err)
        st->err = *err;
}

static void on_tick(loop *l, void *ud)
{
    (void)l;
    (*(int *)ud)++;
}

static void run_until(int (*cond)(void *), void *ud)
{
    uint64_t end = loop_time_ms() + WAIT_MS;
    while (!cond(ud) && loop_time_ms() < end)
        loop_run_once(g_loop, 100);
}

static int flag_set(void *ud) { return *(int *)ud != 0; }
static int rescan_over(void *ud) { return !reload_set_rescanning(ud); }

TEST(reload_that_needs_discovery_does_not_block_the_loop)
{
    if (!g_c) {
        printf("#   no cluster: set KLUA_TEST_CLUSTER to a directory made by "
               "`sh spec/support/cluster.sh up DIR`\n");
        CHECK(!"a running cluster");
        return;
    }
    kl_err err = {0};
    discovery *d = discovery_new(g_c, NULL, &err);
    informer_registry *reg = informer_registry_new(g_c);
    lua_ctx_shared *shared = lua_ctx_shared_new(g_loop, g_c, g_http, &err);
    reload_set *s = reload_set_new(g_dir, NULL, &err);
    CHECK(d && reg && shared && s);
    write_script("v1", "ConfigMap");
    CHECK(reload_set_load(s, 0, &err) == 0);
    controller_deps deps = {g_loop, g_c, d, reg, shared, "default", 0, NULL, NULL, NULL, NULL, 0};
    started st = {0};
    CHECK(reload_set_start(s, &deps, on_started, &st, &err) == 0);
    CHECK(st.done == 0);                        /* discovery answers on the loop */
    run_until(flag_set, &st.done);
    CHECK(st.done && st.err.msg[0] == '\0');
    CHECK_STR(running_kind(s), "ConfigMap");

    /* A new kind in a group version nobody asked about yet: the rescan
     * returns at once; the old version runs until discovery answers. */
    write_script("apps/v1", "Deployment");
    unsigned long fetches = discovery_get_stats(d).fetches;
    int ticks = 0;
    loop_timer_add(g_loop, 0, on_tick, &ticks);
    reload_set_rescan(s);
    CHECK(ticks == 0);                          /* no loop ran inside the rescan */
    CHECK(reload_set_rescanning(s));
    CHECK_STR(running_kind(s), "ConfigMap");
    CHECK(discovery_get_stats(d).fetches == fetches + 1);   /* asked, not answered */
    reload_set_rescan(s);                       /* asked again meanwhile: runs after */
    run_until(rescan_over, s);
    CHECK(ticks == 1);
    CHECK(!reload_set_rescanning(s));
    CHECK_STR(running_kind(s), "Deployment");

    /* A kind the server does not serve: reported, the running version stays. */
    write_script("nothing.klua.dev/v1", "Thing");
    reload_set_rescan(s);
    CHECK(reload_set_rescanning(s));
    run_until(rescan_over, s);
    CHECK_STR(running_kind(s), "Deployment");

    reload_set_free(s);
    informer_registry_free(reg);
    lua_ctx_shared_free(shared);
    discovery_free(d);
}

TEST(start_with_an_unknown_kind_fails_naming_the_script)
{
    if (!g_c) {
        CHECK(!"a running cluster");
        return;
    }
    kl_err err = {0};
    discovery *d = discovery_new(g_c, NULL, &err);
    informer_registry *reg = informer_registry_new(g_c);
    reload_set *s = reload_set_new(g_dir, NULL, &err);
    write_script("nothing.klua.dev/v1", "Thing");
    CHECK(reload_set_load(s, 0, &err) == 0);   /* loading needs no cluster */
    controller_deps deps = {g_loop, g_c, d, reg, NULL, "default", 0, NULL, NULL, NULL, NULL, 0};
    started st = {0};
    CHECK(reload_set_start(s, &deps, on_started, &st, &err) == 0);
    CHECK(st.done == 0);
    run_until(flag_set, &st.done);
    char want[512];
    snprintf(want, sizeof want,
             "%s/a.lua: watch: no resource for kind Thing in nothing.klua.dev/v1 (is the CRD "
             "installed?)", g_dir);
    CHECK_STR(st.err.msg, want);
    reload_set_free(s);
    informer_registry_free(reg);
    discovery_free(d);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(g_dir, sizeof g_dir, "/tmp/klua-itest-reload-XXXXXX");
    if (mkdtemp(g_dir))
        itest_connect(&g_loop, &g_http, &g_c);
    RUN(reload_that_needs_discovery_does_not_block_the_loop);
    RUN(start_with_an_unknown_kind_fails_naming_the_script);
    char path[300];
    snprintf(path, sizeof path, "%s/a.lua", g_dir);
    unlink(path);
    rmdir(g_dir);
    kube_client_free(g_c);
    http_client_free(g_http);
    loop_free(g_loop);
    curl_global_cleanup();
    DONE();
}
