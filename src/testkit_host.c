/* testkit_host.c - the host table of the test kit (see testkit_host.h).
 *
 * Provides: kt_push_host. Uses: testkit, fakeapi, discovery, kube, lua_ctx,
 * tool_lua, util.
 *
 * klua.testkit (Lua, trusted) drives the run through `host`, a table of the
 * functions below, each holding the kt_run as an upvalue.
 */
#include "testkit_host.h"

#include "buf.h"
#include "tool_lua.h"
#include "util.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    if (kt_runtime_start(r, ns, &err) != 0)
        return fail2(L, err.msg);
    lua_pushboolean(L, 1);
    return 1;
}

static int h_stop(lua_State *L)
{
    kt_run *r = run_of(L);
    kt_runtime_free(r);
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
    if (kt_run_until_idle(r, &err) != 0)
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
    if (kt_advance_by(r, (uint64_t)ms, &err) != 0)
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

void kt_push_host(lua_State *L, kt_run *r)
{
    lua_newtable(L);
    lua_pushlightuserdata(L, r);
    luaL_setfuncs(L, host_fns, 1);
}
