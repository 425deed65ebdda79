/* testkit.c - the runtime of one test (see testkit.h).
 *
 * Provides: kt_clock, kt_request, kt_run_until_idle, kt_advance_by,
 * kt_runtime_start, kt_runtime_free, kt_load_config, kt_new_client.
 * Uses: fakeapi, reload, controller, lua_ctx, informer, discovery, kube,
 * http, kubeconfig, loop.
 *
 * One loop and one fakeapi server serve the whole run; each test builds
 * and frees its own runtime (clients, discovery, informers, ctx state,
 * controllers).
 */
#include "testkit.h"

#include "controller.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define QUIET_FAKE_MS 25      /* nothing happened for this long: idle (in-memory API) */
#define QUIET_CLUSTER_MS 300  /* the same against a real API server (watch latency) */
#define BUSY_LIMIT_MS 20000   /* kt.run gives up after this long */

/* The monotonic clock plus what kt.advance (and sleeping reconciles) added:
 * libcurl's own timers need time to pass. */
uint64_t kt_clock(void *ud)
{
    kt_run *r = ud;
    return loop_time_ms() + r->offset;
}

/* ---- synchronous requests ---- */

typedef struct sync_call {
    int done;
    long code;
    kl_buf body;
} sync_call;

static void on_sync(void *ud, kube_result *res)
{
    sync_call *s = ud;
    s->done = 1;
    s->code = res->http_code;
    if (res->http_code == 0)
        kl_buf_puts(&s->body, res->message);
    else
        kl_buf_append(&s->body, res->body.data, res->body.len);
}

/* Send a request and drive the loop until its answer. Returns the HTTP
 * code (0: no answer, message in out). */
long kt_request(kt_run *r, kube_client *kc, const char *method, const char *path,
                       const char *ctype, const char *body, size_t len, kl_buf *out)
{
    sync_call s = {0};
    kube_call *call = kube_request(kc, method, path, ctype, body, len, on_sync, &s);
    if (!call) {
        kl_buf_puts(out, "out of memory");
        return 0;
    }
    uint64_t deadline = loop_time_ms() + REQUEST_LIMIT_MS;
    while (!s.done && loop_time_ms() < deadline)
        loop_run_once(r->l, 10);
    if (!s.done) {
        kube_cancel(call);
        kl_buf_puts(out, "no answer within 30 s");
        return 0;
    }
    kl_buf_append(out, s.body.data, s.body.len);
    kl_buf_free(&s.body);
    return s.code;
}

/* ---- the runtime of one test ---- */

static void on_started(void *ud, const kl_err *err)
{
    kt_run *r = ud;
    if (err) {
        r->start_failed = 1;
        r->start_err = *err;
    }
}

static unsigned long activity(kt_run *r)
{
    unsigned long a = fakeapi_activity(r->fake) + r->events;
    if (r->kc)
        a += kube_client_stats(r->kc).requests;
    return a;
}

static void set_offset(kt_run *r, uint64_t offset)
{
    r->offset = offset;
    if (r->shared)
        lua_ctx_shared_set_now_offset(r->shared, (double)offset / 1000.0);
}

/* Drive the loop until nothing has happened for the quiet period: no
 * request served or sent, no reconcile running, no script HTTP in flight.
 * A reconcile that is still running then waits on a timer (ctx:sleep):
 * the clock jumps to the next timer, so sleeps take no time. */
int kt_run_until_idle(kt_run *r, kl_err *err)
{
    uint64_t quiet = r->cluster ? QUIET_CLUSTER_MS : QUIET_FAKE_MS;
    uint64_t start = loop_time_ms(), since = start;
    unsigned long last = activity(r);
    int calm = 0;   /* iterations in a row where nothing happened */
    for (;;) {
        loop_run_once(r->l, 2);
        uint64_t now = loop_time_ms(), due;
        unsigned long a = activity(r);
        if (r->start_failed)
            return kl_err_set(err, KL_EINVAL, "%s", r->start_err.msg);
        int sleeping = reload_set_active(r->set) > 0 && !http_in_flight(r->script_http);
        /* A timer already due (a deferred dispatch) is work about to happen. */
        int due_now = loop_next_due(r->l, &due) == 0 && due <= now + r->offset;
        if (a != last || (reload_set_active(r->set) && !sleeping) || due_now ||
            http_in_flight(r->script_http) || !reload_set_synced(r->set) ||
            reload_set_rescanning(r->set)) {
            last = a;
            since = now;
            calm = 0;
        } else {
            calm++;
        }
        /* Both: a quiet period of wall time, and iterations that saw it (a
         * process descheduled for the whole period saw nothing). */
        if (now - since >= quiet && calm >= 5) {
            if (!sleeping)
                return 0;
            calm = 0;
            uint64_t t = loop_time_ms() + r->offset;
            if (loop_next_due(r->l, &due) == 0 && due > t)
                set_offset(r, r->offset + (due - t));
            since = now;
        }
        if (now - start > BUSY_LIMIT_MS)
            return kl_err_set(err, KL_ETIMEOUT,
                              "still busy after %d s (%zu reconciles running; a key that "
                              "requeues without end?)",
                              BUSY_LIMIT_MS / 1000, reload_set_active(r->set));
    }
}

/* Move the clock ms forward, one due timer after the other, running until
 * idle at each, so that chains of timers (backoff) play out in order. */
int kt_advance_by(kt_run *r, uint64_t ms, kl_err *err)
{
    uint64_t end = loop_time_ms() + r->offset + ms, due;
    while (loop_next_due(r->l, &due) == 0 && due <= end) {
        uint64_t t = loop_time_ms() + r->offset;
        if (due > t)
            set_offset(r, r->offset + (due - t));
        /* Most timers (the client's own) start nothing: skip the quiet wait. */
        unsigned long before = activity(r);
        for (int i = 0; i < 3; i++)
            loop_run_once(r->l, 0);
        if (activity(r) == before && !reload_set_active(r->set) && !http_in_flight(r->script_http))
            continue;
        if (kt_run_until_idle(r, err) != 0)
            return -1;
    }
    uint64_t t = loop_time_ms() + r->offset;
    if (end > t)
        set_offset(r, r->offset + (end - t));
    return kt_run_until_idle(r, err);
}

void kt_runtime_free(kt_run *r)
{
    reload_set_free(r->set);
    informer_registry_free(r->reg);
    discovery_free(r->disco);
    lua_ctx_shared_free(r->shared);
    kube_client_free(r->kc);
    http_client_free(r->http);
    http_client_free(r->script_http);
    r->set = NULL;
    r->reg = NULL;
    r->disco = NULL;
    r->shared = NULL;
    r->kc = NULL;
    r->http = r->script_http = NULL;
    r->started = r->start_failed = 0;
}

int kt_load_config(kt_run *r, kube_rest_config *cfg, kl_err *err)
{
    if (r->cluster) {
        /* Else $KUBECONFIG, else `make cluster-up`'s, else ~/.kube/config. */
        struct stat st;
        const char *local = "build/cluster/kubeconfig";
        const char *env = getenv("KUBECONFIG");
        kubeconfig_opts ko = {r->kubeconfig, r->context, NULL};
        if (!ko.path && !(env && *env) && stat(local, &st) == 0)
            ko.path = local;
        return kubeconfig_load(&ko, cfg, err);
    }
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", fakeapi_port(r->fake));
    if (!(cfg->server = strdup(url)) || !(cfg->namespace = strdup("default")))
        return kl_err_set(err, KL_ENOMEM, "out of memory");
    return 0;
}

kube_client *kt_new_client(kt_run *r, http_client *h, kl_err *err)
{
    kube_rest_config cfg = {0};
    if (kt_load_config(r, &cfg, err) != 0) {
        kube_rest_config_free(&cfg);
        return NULL;
    }
    kube_client_opts o = {0};
    o.qps = 1e6; /* no client-side throttling: it would look like idleness */
    o.burst = 1000000;
    o.max_retries = 1;
    kube_client *kc = kube_client_new(r->l, h, &cfg, &o, err);
    kube_rest_config_free(&cfg);
    return kc;
}

/* klua replay: each write and ctx:http call of a reconcile, to Lua. */
static void on_tap(void *ud, const lua_ctx_action *a)
{
    kt_run *r = ud;
    lua_State *L = r->L;
    if (r->ref_tap == LUA_NOREF)
        return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_tap);
    lua_newtable(L);
    const char *f[][2] = {{"controller", a->controller}, {"namespace_of_key", a->ns},
                          {"name_of_key", a->name},     {"method", a->method},
                          {"url", a->url},               {"apiVersion", a->api_version},
                          {"kind", a->kind},             {"namespace", a->target_ns},
                          {"name", a->target_name},      {"subresource", a->subresource},
                          {"contentType", a->content_type}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        lua_pushstring(L, f[i][1]);
        lua_setfield(L, -2, f[i][0]);
    }
    lua_pushlstring(L, a->body ? a->body : "", a->body ? a->body_len : 0);
    lua_setfield(L, -2, "body");
    lua_pushinteger(L, a->code);
    lua_setfield(L, -2, "code");
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "klua replay: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
}

/* Informer events count as activity: an event read in the iteration where
 * the quiet period ends must not read as idleness. */
static void count_add(void *ud, const store_obj *o) { ((kt_run *)ud)->events++; }
static void count_upd(void *ud, const store_obj *a, const store_obj *o)
{
    ((kt_run *)ud)->events++;
}
static void count_del(void *ud, const store_obj *o) { ((kt_run *)ud)->events++; }
static void on_new_informer(void *ud, informer *inf)
{
    informer_handler h = {count_add, count_upd, count_del, ud};
    informer_add_handler(inf, &h);
}

int kt_runtime_start(kt_run *r, const char *ns, kl_err *err)
{
    if (!(r->http = http_client_new(r->l, err)) || !(r->script_http = http_client_new(r->l, err)))
        return -1;
    if (!(r->kc = kt_new_client(r, r->http, err)))
        return -1;
    r->disco = discovery_new(r->kc, NULL, err);
    r->reg = informer_registry_new(r->kc);
    if (r->reg)
        informer_registry_set_new_listener(r->reg, on_new_informer, r);
    r->shared = lua_ctx_shared_new(r->l, r->kc, r->script_http, err);
    if (!r->disco || !r->reg || !r->shared)
        return err->msg[0] ? -1 : kl_err_set(err, KL_ENOMEM, "out of memory");
    lua_ctx_shared_set_discovery(r->shared, r->disco);
    if (r->ref_tap != LUA_NOREF)
        lua_ctx_shared_set_tap(r->shared, on_tap, r);
    /* ctx:getenv reads what `klua run` lets it read by default. */
    if (lua_ctx_shared_allow_env(r->shared, "KLUA_*") != 0 ||
        lua_ctx_shared_allow_env(r->shared, "GITHUB_API_URL") != 0)
        return kl_err_set(err, KL_ENOMEM, "out of memory");
    set_offset(r, r->offset);
    if (!(r->set = reload_set_new(r->scripts, &r->limits, err)) ||
        reload_set_load(r->set, 0, err) != 0)
        return -1;
    controller_deps deps = {r->l, r->kc, r->disco, r->reg, r->shared, ns, 0, NULL, NULL, NULL,
                            NULL, 0};
    if (reload_set_start(r->set, &deps, on_started, r, err) != 0)
        return -1;
    r->started = 1;
    return kt_run_until_idle(r, err);
}

