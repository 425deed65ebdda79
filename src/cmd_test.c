/* cmd_test.c - `klua test` (see cmd_test.h).
 *
 * Provides: klua_test_main. Uses: fakeapi, reload, lua_ctx, informer,
 * discovery, kube, http, kubeconfig, loop, tool_lua, lua_json, log.
 *
 * The C side of the test kit: klua.testkit (Lua, trusted) drives the run
 * through `host`, a table of the functions below, each holding the
 * kt_run as an upvalue. One loop and one fakeapi server serve the whole
 * run; each test builds and frees its own runtime (clients, discovery,
 * informers, ctx state, controllers). Requests to the fake server are
 * answered by Lua handlers the testkit installs per test: the API
 * (klua.fakeapi, absent with --cluster) and the ctx:http stand-in (every
 * script HTTP request reaches the server as an HTTP proxy: http_proxy
 * points at it, no_proxy exempts the API server).
 */
#include "cmd_test.h"

#include "buf.h"
#include "controller.h"
#include "discovery.h"
#include "err.h"
#include "fakeapi.h"
#include "http.h"
#include "informer.h"
#include "kube.h"
#include "kubeconfig.h"
#include "log.h"
#include "loop.h"
#include "lua_ctx.h"
#include "lua_host.h"
#include "lua_json.h"
#include "reload.h"
#include "tool_lua.h"
#include "util.h"

#include <dirent.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#define QUIET_FAKE_MS 25      /* nothing happened for this long: idle (in-memory API) */
#define QUIET_CLUSTER_MS 300  /* the same against a real API server (watch latency) */
#define BUSY_LIMIT_MS 20000   /* kt.run gives up after this long */
#define REQUEST_LIMIT_MS 30000

typedef struct kt_run {
    lua_State *L;
    loop *l;
    fakeapi *fake;
    int cluster;
    const char *scripts, *kubeconfig, *context;
    lua_host_opts limits;
    uint64_t offset;                 /* the loop's clock runs this far ahead of CLOCK_MONOTONIC */
    int ref_api, ref_http, ref_closed, ref_tap;
    char ctype[256];                 /* a stand-in answer's Content-Type */
    /* --cluster: a client for set-up (CRDs, namespaces) */
    http_client *base_http;
    kube_client *base_kc;
    /* the runtime of the current test */
    http_client *http, *script_http;
    kube_client *kc;
    discovery *disco;
    informer_registry *reg;
    lua_ctx_shared *shared;
    reload_set *set;
    int started, start_failed;
    unsigned long events;            /* informer events seen (activity) */
    kl_err start_err;
} kt_run;

/* The monotonic clock plus what kt.advance (and sleeping reconciles) added:
 * libcurl's own timers need time to pass. */
static uint64_t kt_clock(void *ud)
{
    kt_run *r = ud;
    return loop_time_ms() + r->offset;
}

/* ---- the fake server's handler: Lua answers ---- */

static void push_headers(lua_State *L, const char *h)
{
    lua_newtable(L);
    while (h && *h && *h != '\r') {
        const char *eol = strstr(h, "\r\n");
        const char *colon = memchr(h, ':', eol ? (size_t)(eol - h) : strlen(h));
        if (!eol || !colon)
            break;
        char name[128];
        size_t nl = (size_t)(colon - h) < sizeof name - 1 ? (size_t)(colon - h) : sizeof name - 1;
        for (size_t i = 0; i < nl; i++)
            name[i] = (char)((h[i] >= 'A' && h[i] <= 'Z') ? h[i] + 32 : h[i]);
        name[nl] = '\0';
        const char *v = colon + 1;
        while (*v == ' ')
            v++;
        lua_pushlstring(L, v, (size_t)(eol - v));
        lua_setfield(L, -2, name);
        h = eol + 2;
    }
}

/* The body value at idx (a string, or a table encoded as JSON). */
static void take_body(lua_State *L, int idx, kl_buf *out)
{
    if (lua_type(L, idx) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        kl_buf_append(out, s, n);
    } else if (lua_type(L, idx) == LUA_TTABLE) {
        kl_err err = {0};
        if (lua_json_encode(L, idx, out, &err) != 0)
            kl_buf_printf(out, "{\"message\":\"klua test: cannot encode the answer: %s\"}",
                          err.msg);
    }
}

static void on_fake_request(void *ud, const fakeapi_request *req, uint64_t id,
                            fakeapi_response *resp)
{
    kt_run *r = ud;
    lua_State *L = r->L;
    int proxied = !strcmp(req->method, "CONNECT") || !strncmp(req->target, "http://", 7);
    int ref = proxied ? r->ref_http : r->ref_api;
    if (ref == LUA_NOREF || ref == LUA_REFNIL) {
        resp->status = 404;
        kl_buf_puts(&resp->body, "{\"kind\":\"Status\",\"code\":404,\"reason\":\"NotFound\"}");
        return;
    }
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_pushstring(L, req->method);
    lua_pushstring(L, req->target);
    if (proxied)
        push_headers(L, req->headers);
    else
        lua_pushstring(L, req->content_type);
    lua_pushlstring(L, req->body, req->body_len);
    lua_pushinteger(L, (lua_Integer)id);
    if (lua_pcall(L, 5, 3, 0) != LUA_OK) {
        fprintf(stderr, "klua test: the fake server's handler failed: %s\n", lua_tostring(L, -1));
        resp->status = 500;
        lua_settop(L, top);
        return;
    }
    resp->status = (int)lua_tointeger(L, top + 1);
    if (proxied) {
        /* status, headers, body */
        if (lua_istable(L, top + 2)) {
            lua_pushnil(L);
            while (lua_next(L, top + 2)) {
                const char *k = lua_tostring(L, -2), *v = lua_tostring(L, -1);
                if (k && v && !strcasecmp(k, "content-type"))
                    snprintf(r->ctype, sizeof r->ctype, "%s", v);
                else if (k && v && strcasecmp(k, "content-length") != 0)
                    kl_buf_printf(&resp->headers, "%s: %s\r\n", k, v);
                lua_pop(L, 1);
            }
            lua_getfield(L, top + 2, "content-type");
            if (lua_isstring(L, -1))
                resp->content_type = r->ctype;
            lua_pop(L, 1);
        }
        take_body(L, top + 3, &resp->body);
    } else {
        /* status, body, stream */
        take_body(L, top + 2, &resp->body);
        resp->stream = lua_toboolean(L, top + 3);
    }
    lua_settop(L, top);
}

static void on_fake_closed(void *ud, uint64_t id)
{
    kt_run *r = ud;
    if (r->ref_closed == LUA_NOREF || r->ref_closed == LUA_REFNIL)
        return;
    lua_rawgeti(r->L, LUA_REGISTRYINDEX, r->ref_closed);
    lua_pushinteger(r->L, (lua_Integer)id);
    if (lua_pcall(r->L, 1, 0, 0) != LUA_OK)
        lua_pop(r->L, 1);
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
static long kt_request(kt_run *r, kube_client *kc, const char *method, const char *path,
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
static int run_until_idle(kt_run *r, kl_err *err)
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
static int advance_by(kt_run *r, uint64_t ms, kl_err *err)
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
        if (run_until_idle(r, err) != 0)
            return -1;
    }
    uint64_t t = loop_time_ms() + r->offset;
    if (end > t)
        set_offset(r, r->offset + (end - t));
    return run_until_idle(r, err);
}

static void runtime_free(kt_run *r)
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

static int load_config(kt_run *r, kube_rest_config *cfg, kl_err *err)
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

static kube_client *new_client(kt_run *r, http_client *h, kl_err *err)
{
    kube_rest_config cfg = {0};
    if (load_config(r, &cfg, err) != 0) {
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

static int runtime_start(kt_run *r, const char *ns, kl_err *err)
{
    if (!(r->http = http_client_new(r->l, err)) || !(r->script_http = http_client_new(r->l, err)))
        return -1;
    if (!(r->kc = new_client(r, r->http, err)))
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
    return run_until_idle(r, err);
}

/* ---- host functions (upvalue 1: the kt_run) ---- */

static kt_run *run_of(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

static int fail2(lua_State *L, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
}

static int ns_request(kt_run *r, const char *method, const char *ns, kl_buf *out)
{
    kl_buf body = KL_BUF_INIT, path = KL_BUF_INIT;
    long code;
    if (!strcmp(method, "POST")) {
        kl_buf_printf(&body,
                      "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":"
                      "{\"name\":\"%s\"}}",
                      ns);
        code = kt_request(r, r->base_kc, "POST", "/api/v1/namespaces", NULL, body.data, body.len,
                          out);
    } else {
        kl_buf_printf(&path, "/api/v1/namespaces/%s", ns);
        code = kt_request(r, r->base_kc, "DELETE", path.data, NULL, NULL, 0, out);
    }
    kl_buf_free(&body);
    kl_buf_free(&path);
    return (int)code;
}

/* host.start({ namespace = ns }) -> true | nil, err */
static int h_start(lua_State *L)
{
    kt_run *r = run_of(L);
    const char *ns = NULL;
    if (lua_istable(L, 1)) {
        lua_getfield(L, 1, "namespace");
        ns = lua_tostring(L, -1);
    }
    kl_err err = {0};
    if (ns) {
        kl_buf out = KL_BUF_INIT;
        int code = ns_request(r, "POST", ns, &out);
        if (code != 201) {
            snprintf(err.msg, sizeof err.msg, "creating namespace %s: %d %.*s", ns, code,
                     (int)(out.len > 300 ? 300 : out.len), out.data ? out.data : "");
            kl_buf_free(&out);
            return fail2(L, err.msg);
        }
        kl_buf_free(&out);
    }
    if (runtime_start(r, ns, &err) != 0)
        return fail2(L, err.msg);
    lua_pushboolean(L, 1);
    return 1;
}

static int h_stop(lua_State *L)
{
    kt_run *r = run_of(L);
    runtime_free(r);
    /* Let the fake server see the closed connections. */
    for (int i = 0; i < 3; i++)
        loop_run_once(r->l, 0);
    return 0;
}

static int h_delete_namespace(lua_State *L)
{
    kt_run *r = run_of(L);
    kl_buf out = KL_BUF_INIT;
    ns_request(r, "DELETE", luaL_checkstring(L, 1), &out);
    kl_buf_free(&out);
    return 0;
}

/* host.request(method, path, content_type, body) -> code, body */
static int h_request(lua_State *L)
{
    kt_run *r = run_of(L);
    const char *method = luaL_checkstring(L, 1), *path = luaL_checkstring(L, 2);
    const char *ctype = luaL_optstring(L, 3, NULL);
    size_t len = 0;
    const char *body = luaL_optlstring(L, 4, NULL, &len);
    kube_client *kc = r->kc ? r->kc : r->base_kc;
    if (!kc)
        return luaL_error(L, "kt: no runtime is running");
    kl_buf out = KL_BUF_INIT;
    long code = kt_request(r, kc, method, path, ctype, body, len, &out);
    lua_pushinteger(L, code);
    lua_pushlstring(L, out.data ? out.data : "", out.len);
    kl_buf_free(&out);
    return 2;
}

typedef struct lookup_wait {
    int done;
    kube_resource res;
    kl_err err;
} lookup_wait;

static void on_lookup(void *ud, const kube_resource *res, const kl_err *err)
{
    lookup_wait *w = ud;
    w->done = 1;
    if (res)
        kube_resource_copy(&w->res, res);
    else if (err)
        w->err = *err;
}

/* host.resolve(apiVersion, kind) -> { group, version, plural, namespaced } | nil, err */
static int h_resolve(lua_State *L)
{
    kt_run *r = run_of(L);
    const char *av = luaL_checkstring(L, 1), *kind = luaL_checkstring(L, 2);
    if (!r->disco)
        return fail2(L, "no runtime is running");
    lookup_wait w = {0};
    discovery_req *q = discovery_lookup(r->disco, av, kind, on_lookup, &w);
    if (!q)
        return fail2(L, "out of memory");
    uint64_t deadline = loop_time_ms() + REQUEST_LIMIT_MS;
    while (!w.done && loop_time_ms() < deadline)
        loop_run_once(r->l, 10);
    if (!w.done) {
        discovery_cancel(q);
        return fail2(L, "discovery did not answer");
    }
    if (!w.res.resource)
        return fail2(L, w.err.msg[0] ? w.err.msg : "unknown kind");
    lua_newtable(L);
    lua_pushstring(L, w.res.group);
    lua_setfield(L, -2, "group");
    lua_pushstring(L, w.res.version);
    lua_setfield(L, -2, "version");
    lua_pushstring(L, w.res.resource);
    lua_setfield(L, -2, "plural");
    lua_pushboolean(L, w.res.namespaced);
    lua_setfield(L, -2, "namespaced");
    kube_resource_free(&w.res);
    return 1;
}

static int h_run(lua_State *L)
{
    kt_run *r = run_of(L);
    kl_err err = {0};
    if (!r->started)
        return fail2(L, "no runtime is running");
    if (run_until_idle(r, &err) != 0)
        return fail2(L, err.msg);
    lua_pushboolean(L, 1);
    return 1;
}

static int h_advance(lua_State *L)
{
    kt_run *r = run_of(L);
    lua_Integer ms = luaL_checkinteger(L, 1);
    if (ms < 0)
        return luaL_error(L, "kt.advance: time does not go back");
    kl_err err = {0};
    if (!r->started)
        return fail2(L, "no runtime is running");
    if (advance_by(r, (uint64_t)ms, &err) != 0)
        return fail2(L, err.msg);
    lua_pushboolean(L, 1);
    return 1;
}

static int h_secret(lua_State *L)
{
    kt_run *r = run_of(L);
    if (!r->shared)
        return luaL_error(L, "kt.secret: no runtime is running");
    if (lua_ctx_shared_set_secret(r->shared, luaL_checkstring(L, 1), luaL_checkstring(L, 2)) != 0)
        return luaL_error(L, "out of memory");
    return 0;
}

static int h_getenv(lua_State *L)
{
    lua_pushstring(L, getenv(luaL_checkstring(L, 1)));
    return 1;
}

static int h_setenv(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    if (lua_isnoneornil(L, 2))
        unsetenv(name);
    else
        setenv(name, luaL_checkstring(L, 2), 1);
    return 0;
}

static int h_emit(lua_State *L)
{
    kt_run *r = run_of(L);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    fakeapi_stream_send(r->fake, (uint64_t)luaL_checkinteger(L, 1), s, n);
    return 0;
}

static int h_now(lua_State *L)
{
    char buf[64];
    lua_pushstring(L, kl_rfc3339_now(0, buf, sizeof buf));
    return 1;
}

/* host.elapsed_ms(since): real milliseconds since `since` (0: an origin). */
static int h_elapsed_ms(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)loop_time_ms() - luaL_checkinteger(L, 1));
    return 1;
}

static int h_token(lua_State *L)
{
    char buf[16];
    snprintf(buf, sizeof buf, "%05llx", (unsigned long long)kl_rand_below(0xfffff));
    lua_pushstring(L, buf);
    return 1;
}

static int h_yaml(lua_State *L)
{
    kl_err err = {0};
    if (tool_lua_push_yaml_file(L, luaL_checkstring(L, 1), &err) != 0)
        return fail2(L, err.msg);
    return 1;
}

static void set_ref(lua_State *L, int idx, int *ref)
{
    luaL_unref(L, LUA_REGISTRYINDEX, *ref);
    lua_pushvalue(L, idx);
    *ref = lua_isfunction(L, idx) ? luaL_ref(L, LUA_REGISTRYINDEX) : (lua_pop(L, 1), LUA_NOREF);
}

/* host.set_tap(fn): fn(action) for each write and ctx:http call (replay). */
static int h_set_tap(lua_State *L)
{
    set_ref(L, 1, &run_of(L)->ref_tap);
    return 0;
}

/* host.set_now(epoch_seconds): ctx:now() answers that time from now on. */
static int h_set_now(lua_State *L)
{
    kt_run *r = run_of(L);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (r->shared)
        lua_ctx_shared_set_now_offset(r->shared, luaL_checknumber(L, 1) - (double)ts.tv_sec -
                                                     (double)ts.tv_nsec / 1e9);
    return 0;
}

/* host.clock(): the test clock as epoch seconds (what ctx:now() answers). */
static int h_clock(lua_State *L)
{
    kt_run *r = run_of(L);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + (double)r->offset / 1000.0);
    return 1;
}

/* host.set_handlers(api, http, closed): the Lua answers of the fake server. */
static int h_set_handlers(lua_State *L)
{
    kt_run *r = run_of(L);
    set_ref(L, 1, &r->ref_api);
    set_ref(L, 2, &r->ref_http);
    set_ref(L, 3, &r->ref_closed);
    return 0;
}

static const luaL_Reg host_fns[] = {
    {"start", h_start},     {"stop", h_stop},         {"request", h_request},
    {"resolve", h_resolve}, {"run", h_run},           {"advance", h_advance},
    {"secret", h_secret},   {"getenv", h_getenv},     {"setenv", h_setenv},
    {"emit", h_emit},       {"now", h_now},           {"token", h_token},
    {"yaml", h_yaml},       {"set_handlers", h_set_handlers},
    {"delete_namespace", h_delete_namespace},         {"elapsed_ms", h_elapsed_ms},
    {"set_tap", h_set_tap},  {"set_now", h_set_now},  {"clock", h_clock},
    {NULL, NULL},
};

/* ---- files: specs and CRDs ---- */

/* s ends with one of the '|'-separated suffixes. */
static int ends_with(const char *s, const char *suffixes)
{
    size_t n = strlen(s);
    while (*suffixes) {
        size_t m = strcspn(suffixes, "|");
        if (n >= m && !strncmp(s + n - m, suffixes, m))
            return 1;
        suffixes += m + (suffixes[m] == '|');
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Append to the Lua array at the top the files of dir ending in suffix
 * (sorted); a file path is taken as is. Returns how many. */
static int add_files(lua_State *L, const char *path, const char *suffix)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return 0;
    if (S_ISREG(st.st_mode)) {
        if (!ends_with(path, suffix))
            return 0;
        lua_pushstring(L, path);
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
        return 1;
    }
    DIR *d = opendir(path);
    if (!d)
        return 0;
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !ends_with(e->d_name, suffix))
            continue;
        char **nn = realloc(names, (n + 1) * sizeof *names);
        if (!nn)
            break;
        names = nn;
        if (!(names[n] = strdup(e->d_name)))
            break;
        n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        lua_pushfstring(L, "%s/%s", path, names[i]);
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
        free(names[i]);
    }
    free(names);
    return (int)n;
}

/* Add every CustomResourceDefinition of the YAML files listed in the array
 * at idx to the array at the top. */
static int collect_crds(lua_State *L, int files, kl_err *err)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, files);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, files, i);
        const char *f = lua_tostring(L, -1);
        if (tool_lua_push_yaml_file(L, f, err) != 0) {
            lua_pop(L, 1);
            return -1;
        }
        lua_Integer nd = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer j = 1; j <= nd; j++) {
            lua_rawgeti(L, -1, j);
            if (lua_istable(L, -1)) {
                lua_getfield(L, -1, "kind");
                int is_crd = lua_isstring(L, -1) &&
                             !strcmp(lua_tostring(L, -1), "CustomResourceDefinition");
                lua_pop(L, 1);
                if (is_crd) {
                    lua_pushvalue(L, -1);
                    lua_rawseti(L, -5, (lua_Integer)lua_rawlen(L, -5) + 1);
                }
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 2);
    }
    return 0;
}

/* --cluster: create the CRDs (AlreadyExists is fine) and wait until the
 * API server serves each kind. */
static int install_crds(kt_run *r, int crds, kl_err *err)
{
    lua_State *L = r->L;
    lua_Integer n = (lua_Integer)lua_rawlen(L, crds);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, crds, i);
        kl_buf body = KL_BUF_INIT, out = KL_BUF_INIT, path = KL_BUF_INIT;
        int rc = 0;
        if (lua_json_encode(L, -1, &body, err) != 0) {
            rc = -1;
        } else {
            long code = kt_request(r, r->base_kc, "POST",
                                   "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", NULL,
                                   body.data, body.len, &out);
            if (code != 201 && code != 409)
                rc = kl_err_set(err, KL_EAPI, "creating a CRD: %ld %.*s", code,
                                (int)(out.len > 300 ? 300 : out.len), out.data ? out.data : "");
        }
        /* Wait until /apis/G/V lists the plural. */
        lua_getfield(L, -1, "spec");
        lua_getfield(L, -1, "group");
        lua_getfield(L, -2, "names");
        lua_getfield(L, -1, "plural");
        lua_getfield(L, -4, "versions");
        lua_rawgeti(L, -1, 1);
        lua_getfield(L, -1, "name");
        const char *group = lua_tostring(L, -6), *plural = lua_tostring(L, -4);
        const char *version = lua_tostring(L, -1);
        if (rc == 0 && group && plural && version) {
            kl_buf_printf(&path, "/apis/%s/%s", group, version);
            uint64_t deadline = loop_time_ms() + REQUEST_LIMIT_MS;
            for (;;) {
                kl_buf_reset(&out);
                long code = kt_request(r, r->base_kc, "GET", path.data, NULL, NULL, 0, &out);
                char want[300];
                snprintf(want, sizeof want, "\"name\":\"%s\"", plural);
                if (code == 200 && out.data && strstr(out.data, want))
                    break;
                if (loop_time_ms() > deadline) {
                    rc = kl_err_set(err, KL_ETIMEOUT, "the API server does not serve %s",
                                    path.data);
                    break;
                }
                loop_run_once(r->l, 100);
            }
        }
        lua_pop(L, 8);
        kl_buf_free(&body);
        kl_buf_free(&out);
        kl_buf_free(&path);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* ---- the command ---- */

static const char test_usage[] =
    "Usage: klua test [DIR] [flags]\n"
    "\n"
    "Runs the *_spec.lua files of DIR (beside the scripts, and in DIR/spec/)\n"
    "against DIR's scripts, each test with a fresh runtime.\n"
    "\n"
    "Flags:\n"
    "  --cluster           run against a real API server (--kubeconfig, else\n"
    "                      $KUBECONFIG, else build/cluster/kubeconfig of `make\n"
    "                      cluster-up`, else ~/.kube/config); each test gets its own\n"
    "                      namespace, deleted afterwards; CRDs are created\n"
    "  --kubeconfig FILE, --context NAME   which cluster, with --cluster\n"
    "  --crds PATH         CRD files or folders (repeatable; DIR/crds/ and DIR/*.yaml\n"
    "                      are read too)\n"
    "  --spec PATH         spec files or folders to run instead of DIR's\n"
    "  --verbose           a line for each passing test too\n"
    "  -v N                klua's own log verbosity (default: warnings only)\n";

static void set_proxy_env(int port, const char *extra_host)
{
    char url[64], none[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    snprintf(none, sizeof none, "127.0.0.1,localhost,::1%s%s", extra_host ? "," : "",
             extra_host ? extra_host : "");
    const char *proxies[] = {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "ALL_PROXY",
                             "all_proxy"};
    for (size_t i = 0; i < sizeof proxies / sizeof *proxies; i++)
        setenv(proxies[i], url, 1);
    setenv("no_proxy", none, 1);
    setenv("NO_PROXY", none, 1);
}

/* The host part of an https://host:port URL, in out. */
static void server_host(const char *server, char *out, size_t n)
{
    const char *p = strstr(server, "://");
    p = p ? p + 3 : server;
    size_t len = strcspn(p, ":/");
    snprintf(out, n, "%.*s", (int)len, p);
}

int klua_test_main(int argc, char **argv)
{
    kt_run r = {0};
    r.ref_api = r.ref_http = r.ref_closed = r.ref_tap = LUA_NOREF;
    const char *dir = NULL;
    int verbose = 0, loglevel = -1, rc = 1;
    kl_err err = {0};
    lua_State *L = NULL;
    if (!(L = tool_lua_new(&err))) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    r.L = L;
    lua_newtable(L); /* [crd files] */
    int crd_files = lua_gettop(L);
    lua_newtable(L); /* [crd files, spec paths] */
    int spec_paths = lua_gettop(L);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(test_usage, stdout);
            lua_close(L);
            return 0;
        } else if (!strcmp(a, "--cluster")) {
            r.cluster = 1;
        } else if (!strcmp(a, "--verbose")) {
            verbose = 1;
        } else if (i + 1 < argc && !strcmp(a, "--crds")) {
            lua_pushvalue(L, crd_files);
            int n = add_files(L, argv[++i], ".yaml|.yml");
            lua_pop(L, 1);
            if (!n) {
                fprintf(stderr, "klua test: --crds %s: no YAML files there\n", argv[i]);
                lua_close(L);
                return 2;
            }
        } else if (i + 1 < argc && !strcmp(a, "--spec")) {
            lua_pushstring(L, argv[++i]);
            lua_rawseti(L, spec_paths, (lua_Integer)lua_rawlen(L, spec_paths) + 1);
        } else if (i + 1 < argc && !strcmp(a, "--kubeconfig")) {
            r.kubeconfig = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--context")) {
            r.context = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "-v")) {
            char *end;
            loglevel = (int)strtol(argv[++i], &end, 10);
            if (*end || loglevel < 0 || loglevel > 10) {
                fprintf(stderr, "klua: -v wants a number from 0 to 10\n");
                return 2;
            }
        } else if (a[0] == '-' || dir) {
            fprintf(stderr, "klua test: unexpected argument %s (see klua test --help)\n", a);
            lua_close(L);
            return 2;
        } else {
            dir = a;
        }
    }
    if (!dir)
        dir = ".";
    r.scripts = dir;
    kl_log_setup(0, loglevel < 0 ? KL_LOG_WARN : loglevel);

    /* Spec files: --spec paths, else DIR/NAME_spec.lua and DIR/spec/NAME_spec.lua. */
    lua_newtable(L);
    int files = lua_gettop(L);
    lua_Integer nsp = (lua_Integer)lua_rawlen(L, spec_paths);
    for (lua_Integer i = 1; i <= nsp; i++) {
        lua_rawgeti(L, spec_paths, i);
        const char *p = lua_tostring(L, -1);
        lua_pushvalue(L, files);
        add_files(L, p, "_spec.lua");
        lua_pop(L, 2);
    }
    if (nsp == 0) {
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/spec", dir);
        add_files(L, dir, "_spec.lua");
        add_files(L, sub, "_spec.lua");
    }
    /* CRDs: --crds, DIR/crds/, the YAML files of DIR. */
    {
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/crds", dir);
        lua_pushvalue(L, crd_files);
        add_files(L, sub, ".yaml|.yml");
        add_files(L, dir, ".yaml|.yml");
        lua_pop(L, 1);
    }
    lua_newtable(L);
    int crds = lua_gettop(L);
    if (collect_crds(L, crd_files, &err) != 0)
        goto out;
    if (lua_rawlen(L, files) == 0) {
        kl_err_set(&err, KL_EINVAL, "no *_spec.lua files in %s or %s/spec", dir, dir);
        goto out;
    }

    if (!(r.l = loop_new(&err)))
        goto out;
    loop_set_clock(r.l, kt_clock, &r);
    fakeapi_handler fh = {on_fake_request, on_fake_closed, &r};
    if (!(r.fake = fakeapi_start(r.l, &fh, &err)))
        goto out;
    if (r.cluster) {
        kube_rest_config cfg = {0};
        char host[256] = "";
        if (load_config(&r, &cfg, &err) != 0) {
            kube_rest_config_free(&cfg);
            goto out;
        }
        server_host(cfg.server, host, sizeof host);
        kube_rest_config_free(&cfg);
        set_proxy_env(fakeapi_port(r.fake), host);
        if (!(r.base_http = http_client_new(r.l, &err)) ||
            !(r.base_kc = new_client(&r, r.base_http, &err)))
            goto out;
        if (install_crds(&r, crds, &err) != 0)
            goto out;
    } else {
        set_proxy_env(fakeapi_port(r.fake), NULL);
    }

    /* testkit.main(host, files, { cluster, crds, verbose }) */
    luaL_requiref(L, "klua.json", luaopen_klua_json, 0);
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushlightuserdata(L, &r);
    luaL_setfuncs(L, host_fns, 1);
    int host = lua_gettop(L);
    lua_newtable(L);
    lua_pushboolean(L, r.cluster);
    lua_setfield(L, -2, "cluster");
    lua_pushvalue(L, crds);
    lua_setfield(L, -2, "crds");
    lua_pushboolean(L, verbose);
    lua_setfield(L, -2, "verbose");
    int opts = lua_gettop(L);
    lua_pushvalue(L, host);
    lua_pushvalue(L, files);
    lua_pushvalue(L, opts);
    if (tool_lua_call(L, "klua.testkit", "main", 3, 2, &err) != 0)
        goto out;
    rc = lua_tointeger(L, -1) == 0 ? 0 : 1;
    fflush(stdout);
out:
    if (err.msg[0])
        fprintf(stderr, "error: %s\n", err.msg);
    runtime_free(&r);
    kube_client_free(r.base_kc);
    http_client_free(r.base_http);
    fakeapi_free(r.fake);
    loop_free(r.l);
    lua_close(L);
    return rc;
}

/* ---- klua replay ---- */

static const char replay_usage[] =
    "Usage: klua replay FILE --scripts DIR [-v N]\n"
    "\n"
    "Re-runs the informer events of a `klua run --record` FILE through DIR's scripts,\n"
    "with no cluster: each recorded object state is handed to the controllers in order\n"
    "(in memory), their writes are answered as dry runs, their ctx:http calls with the\n"
    "recorded answers. Prints, per key, the writes and HTTP calls the scripts make now\n"
    "as a diff against the recording ('-' recorded only, '+' made now only).\n"
    "Exit 0 when nothing differs, 1 when something does, 2 on bad usage.\n";

int klua_replay_main(int argc, char **argv)
{
    kt_run r = {0};
    r.ref_api = r.ref_http = r.ref_closed = r.ref_tap = LUA_NOREF;
    const char *file = NULL;
    int loglevel = -1, rc = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(replay_usage, stdout);
            return 0;
        } else if (i + 1 < argc && !strcmp(a, "--scripts")) {
            r.scripts = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "-v")) {
            char *end;
            loglevel = (int)strtol(argv[++i], &end, 10);
            if (*end || loglevel < 0 || loglevel > 10) {
                fprintf(stderr, "klua: -v wants a number from 0 to 10\n");
                return 2;
            }
        } else if (a[0] != '-' && !file) {
            file = a;
        } else {
            fprintf(stderr, "klua replay: unexpected argument %s (see klua replay --help)\n", a);
            return 2;
        }
    }
    if (!file || !r.scripts) {
        fputs(replay_usage, stderr);
        return 2;
    }
    kl_log_setup(0, loglevel < 0 ? KL_LOG_WARN : loglevel);
    kl_err err = {0};
    if (!(r.L = tool_lua_new(&err)) || !(r.l = loop_new(&err)))
        goto out;
    loop_set_clock(r.l, kt_clock, &r);
    fakeapi_handler fh = {on_fake_request, on_fake_closed, &r};
    if (!(r.fake = fakeapi_start(r.l, &fh, &err)))
        goto out;
    set_proxy_env(fakeapi_port(r.fake), NULL);
    luaL_requiref(r.L, "klua.json", luaopen_klua_json, 0);
    lua_pop(r.L, 1);
    lua_newtable(r.L);
    lua_pushlightuserdata(r.L, &r);
    luaL_setfuncs(r.L, host_fns, 1);
    lua_pushstring(r.L, file);
    if (tool_lua_call(r.L, "klua.replay", "main", 2, 1, &err) != 0)
        goto out;
    rc = (int)lua_tointeger(r.L, -1);
    fflush(stdout);
out:
    if (err.msg[0]) {
        fprintf(stderr, "error: %s\n", err.msg);
        rc = 2;
    }
    runtime_free(&r);
    fakeapi_free(r.fake);
    loop_free(r.l);
    if (r.L)
        lua_close(r.L);
    return rc;
}
