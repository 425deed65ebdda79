/* lua_ctx_io.c - the ctx's I/O methods and ctx.log (see lua_ctx_io.h).
 *
 * Provides: lua_ctx_io_methods, lua_ctx_log_funcs.
 * Uses: lua_ctx_op (the call in flight, argument helpers), http (ctx:http),
 * loop (ctx:sleep), log.
 */
#include "lua_ctx_io.h"

#include "log.h"
#include "lua_ctx_op.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LOG_FIELDS 8

/* ---- http ---- */

static void on_http_done(void *ud, http_response *resp)
{
    lua_ctx *c = ud;
    c->hreq = NULL;
    if (resp->curl_code != 0) {
        /* 28 is CURLE_OPERATION_TIMEDOUT */
        lua_ctx_set_answer(c, 0, resp->curl_code == 28 ? "Timeout" : "ConnectionError", resp->error);
        lua_ctx_finish(c);
        return;
    }
    c->code = resp->status;
    kl_buf_reset(&c->rbody);
    kl_buf_append(&c->rbody, resp->body.data ? resp->body.data : "", resp->body.len);
    for (size_t i = 0; i < resp->nheaders; i++) {
        kl_buf_append(&c->rheaders, resp->headers[i].name, strlen(resp->headers[i].name) + 1);
        kl_buf_append(&c->rheaders, resp->headers[i].value, strlen(resp->headers[i].value) + 1);
        c->nrheaders++;
    }
    lua_ctx_finish(c);
}

static int push_http_answer(lua_State *L, lua_ctx *c)
{
    if (c->code == 0) {
        lua_pushnil(L);
        lua_ctx_push_error(L, 0, c->reason, c->message);
        return 2;
    }
    lua_createtable(L, 0, 3);                            /* [resp] */
    lua_pushinteger(L, c->code);
    lua_setfield(L, -2, "status");
    lua_createtable(L, 0, (int)c->nrheaders);            /* [resp, headers] */
    const char *p = c->rheaders.data;
    for (size_t i = 0; i < c->nrheaders; i++) {
        const char *v = p + strlen(p) + 1;
        lua_pushstring(L, v);
        lua_setfield(L, -2, p);
        p = v + strlen(v) + 1;
    }
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, c->rbody.data ? c->rbody.data : "", c->rbody.len);
    lua_setfield(L, -2, "body");
    kl_buf_free(&c->rbody);
    return 1;
}

static void start_http(lua_ctx *c)
{
    if (!c->s->http) {
        lua_ctx_set_answer(c, 0, "ConnectionError", "no HTTP client");
        lua_ctx_finish(c);
        return;
    }
    http_request_opts o = {0};
    o.method = c->method[0] ? c->method : "GET";
    o.url = c->url;
    o.headers = (const char *const *)c->hdrs;
    o.body = c->body.data;
    o.body_len = c->body.len;
    o.timeout_ms = c->timeout_ms;
    o.on_done = on_http_done;
    o.ud = c;
    kl_err err = {0};
    c->hreq = http_start(c->s->http, &o, &err);
    if (!c->hreq) {
        lua_ctx_set_answer(c, 0, "ConnectionError", err.msg);
        lua_ctx_finish(c);
    }
}

static int valid_header_part(const char *s)
{
    for (; *s; s++)
        if (*s == '\r' || *s == '\n')
            return 0;
    return 1;
}

static int l_http(lua_State *L)
{
    lua_ctx *c = lua_ctx_check(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_ctx_copy_field(L, 2, "method", c->method, sizeof c->method, "ctx:http");
    for (char *p = c->method; *p; p++)
        if (*p < 'A' || *p > 'Z')
            return luaL_error(L, "ctx:http: method must be upper-case letters");
    if (lua_getfield(L, 2, "url") != LUA_TSTRING)
        return luaL_error(L, "ctx:http: url is required");
    const char *url = lua_tostring(L, -1);
    if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
        return luaL_error(L, "ctx:http: url must start with https:// or http://");
    lua_pop(L, 1);
    if (lua_getfield(L, 2, "body") == LUA_TSTRING) {
        size_t n;
        const char *b = lua_tolstring(L, -1, &n);
        kl_buf_append(&c->body, b, n);
    } else if (!lua_isnil(L, -1)) {
        return luaL_error(L, "ctx:http: body must be a string");
    }
    lua_pop(L, 1);
    lua_Number timeout = 30;
    if (lua_getfield(L, 2, "timeout") != LUA_TNIL)
        timeout = luaL_checknumber(L, -1);
    lua_pop(L, 1);
    if (!(timeout > 0 && timeout <= 3600))
        return luaL_error(L, "ctx:http: timeout must be seconds between 0 and 3600");
    c->timeout_ms = (long)(timeout * 1000);
    /* Headers: collect into a Lua table of "Name: value" first (can raise
     * freely), then copy to C in one go. */
    size_t n = 0;
    lua_newtable(L);                                     /* [.., lines] */
    int lines = lua_gettop(L);
    if (lua_getfield(L, 2, "headers") == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
                return luaL_error(L, "ctx:http: headers must map names to strings");
            const char *k = lua_tostring(L, -2), *v = lua_tostring(L, -1);
            if (!valid_header_part(k) || !valid_header_part(v) || strchr(k, ':'))
                return luaL_error(L, "ctx:http: invalid header %s", k);
            lua_pushfstring(L, "%s: %s", k, v);
            lua_rawseti(L, lines, (lua_Integer)++n);
            lua_pop(L, 1);
        }
    } else if (!lua_isnil(L, -1)) {
        return luaL_error(L, "ctx:http: headers must be a table");
    }
    lua_getfield(L, 2, "url");
    c->url = strdup(lua_tostring(L, -1));
    c->hdrs = calloc(n + 1, sizeof *c->hdrs);
    if (!c->url || !c->hdrs)
        return luaL_error(L, "ctx:http: out of memory");
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, lines, (lua_Integer)i + 1);
        c->hdrs[i] = strdup(lua_tostring(L, -1));
        lua_pop(L, 1);
        if (!c->hdrs[i])
            return luaL_error(L, "ctx:http: out of memory");
    }
    return lua_ctx_op_begin(L, c, start_http, push_http_answer, "http");
}

/* ---- sleep, time, environment ---- */

static void on_sleep_timer(loop *l, void *ud)
{
    (void)l;
    lua_ctx *c = ud;
    c->timer = 0;
    lua_ctx_finish(c);
}

static void start_sleep(lua_ctx *c)
{
    c->timer = loop_timer_add(c->s->l, (uint64_t)c->timeout_ms, on_sleep_timer, c);
    if (!c->timer)
        lua_ctx_finish(c);
}

static int l_sleep(lua_State *L)
{
    lua_ctx *c = lua_ctx_check(L);
    lua_Number s = luaL_checknumber(L, 2);
    if (!(s >= 0 && s <= 86400))
        return luaL_error(L, "ctx:sleep: seconds must be between 0 and 86400");
    c->timeout_ms = (long)(s * 1000);
    return lua_ctx_op_begin(L, c, start_sleep, NULL, "sleep");
}

static int l_now(lua_State *L)
{
    luaL_checkudata(L, 1, LUA_CTX_MT);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

static int l_getenv(lua_State *L)
{
    luaL_checkudata(L, 1, LUA_CTX_MT);
    const char *name = luaL_checkstring(L, 2);
    int allowed = strncmp(name, "KLUA_", 5) == 0 || strncmp(name, "GITHUB_", 7) == 0;
    if (strstr(name, "TOKEN") || strstr(name, "SECRET") || strstr(name, "PASSWORD"))
        allowed = 0; /* secrets go through ctx:secret */
    const char *v = allowed ? getenv(name) : NULL;
    if (v)
        lua_pushstring(L, v);
    else
        lua_pushnil(L);
    return 1;
}

static int l_secret(lua_State *L)
{
    lua_ctx *c = luaL_checkudata(L, 1, LUA_CTX_MT);
    const char *name = luaL_checkstring(L, 2);
    for (size_t i = 0; i < c->s->nsecrets; i++) {
        if (strcmp(c->s->secrets[i * 2], name) == 0) {
            lua_pushstring(L, c->s->secrets[i * 2 + 1]);
            return 1;
        }
    }
    lua_pushnil(L);
    return 1;
}

/* ---- ctx.log ---- */

static int log_at(lua_State *L, int level)
{
    lua_ctx *c = lua_touserdata(L, lua_upvalueindex(1));
    if (!kl_log_enabled(level))
        return 0;
    const char *msg = luaL_checkstring(L, 1);
    const char *kv[MAX_LOG_FIELDS * 2 + 2] = {0};
    size_t n = 0;
    if (lua_istable(L, 2)) {
        lua_pushnil(L);
        while (n < MAX_LOG_FIELDS * 2 && lua_next(L, 2)) {  /* [.., k, v] */
            if (lua_type(L, -2) == LUA_TSTRING) {
                kv[n++] = lua_tostring(L, -2);
                kv[n++] = luaL_tolstring(L, -1, NULL);   /* [.., k, v, s] anchored below */
                lua_insert(L, 3);                        /* keep s alive at the bottom */
            }
            lua_pop(L, 1);
        }
    }
    char key[600];
    if (c->ns[0])
        snprintf(key, sizeof key, "%s/%s", c->ns, c->name);
    else
        snprintf(key, sizeof key, "%s", c->name);
    kl_log(level, msg, "controller", c->controller, "key", key, kv[0], kv[1], kv[2], kv[3], kv[4],
           kv[5], kv[6], kv[7], kv[8], kv[9], kv[10], kv[11], kv[12], kv[13], kv[14], kv[15],
           (const char *)NULL);
    return 0;
}

static int l_log_info(lua_State *L) { return log_at(L, KL_LOG_INFO); }
static int l_log_warn(lua_State *L) { return log_at(L, KL_LOG_WARN); }
static int l_log_error(lua_State *L) { return log_at(L, KL_LOG_ERROR); }
static int l_log_debug(lua_State *L) { return log_at(L, 1); }

const luaL_Reg lua_ctx_io_methods[] = {
    {"http", l_http},     {"sleep", l_sleep},   {"now", l_now},
    {"getenv", l_getenv}, {"secret", l_secret}, {NULL, NULL},
};

const luaL_Reg lua_ctx_log_funcs[] = {
    {"info", l_log_info}, {"warn", l_log_warn}, {"error", l_log_error}, {"debug", l_log_debug},
    {NULL, NULL},
};
