/* lua_ctx_io.c - the ctx's I/O methods and ctx.log (see lua_ctx_io.h).
 *
 * Provides: lua_ctx_io_methods, lua_ctx_log_funcs.
 * Uses: lua_ctx_op (the call in flight, argument helpers), http (ctx:http),
 * loop (ctx:sleep), log, metrics (klua_http_requests_total).
 */
#include "lua_ctx_io.h"

#include "lua_json.h"

#include "log.h"
#include "lua_host.h"
#include "lua_ctx_op.h"
#include "lua_ctx_secret.h"
#include "metrics.h"

#include <fnmatch.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#ifndef KLUA_VERSION
#define KLUA_VERSION "dev"
#endif

#define MAX_LOG_FIELDS 8
/* A log message, field name or value longer than this is cut. */
#define LOG_VALUE_MAX (16 * 1024)
/* Refused ctx:getenv names remembered for warning once. */
#define ENV_WARN_MAX 256

/* ---- http ---- */

/* Grow the response body's buffer to hold need bytes, charging the growth
 * to the script's memory cap first: doubling while the cap allows, then
 * by a quarter. -1: past the cap; -2: out of memory. */
static int grow_body(lua_ctx *c, size_t need)
{
    kl_buf *b = &c->rbody;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (lua_ctx_charge(c, &c->resp_charged, cap - b->cap) != 0) {
        /* near the cap: grow by a quarter (by the chunk would copy the body
         * again for every chunk), never taking more room than that from
         * the script's other reconciles */
        size_t room = c->L ? lua_host_mem_room(c->L) : 0;
        if (room < need - b->cap)
            return -1;
        size_t want = need + need / 4;
        cap = want - b->cap <= room ? want : b->cap + room;
        if (lua_ctx_charge(c, &c->resp_charged, cap - b->cap) != 0)
            return -1;
    }
    char *p = realloc(b->data, cap);
    if (!p) {
        lua_ctx_uncharge(c, &c->resp_charged, cap - b->cap);
        return -2;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

/* Body bytes of any status: kept while the script's cap allows. A
 * non-zero return aborts the transfer. */
static int on_http_data(void *ud, long status, const char *data, size_t len)
{
    (void)status;
    lua_ctx *c = ud;
    if (len > SIZE_MAX - c->rbody.len - 1) {
        c->too_large = 1;
        return 1;
    }
    int rc = grow_body(c, c->rbody.len + len + 1);
    if (rc != 0) {
        c->too_large = rc == -1 ? 1 : 2;
        return 1;
    }
    memcpy(c->rbody.data + c->rbody.len, data, len);
    c->rbody.len += len;
    c->rbody.data[c->rbody.len] = '\0';
    return 0;
}

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* -v 2: one line per ctx:http request. The URL loses its user info and
 * query (where credentials travel), and secret values are redacted. */
static void log_http(lua_ctx *c, long status, const char *failure)
{
    if (!kl_log_enabled(KL_LOG_V2) || !c->url)
        return;
    char cut[1024], url[1024], st[32], ms[32];
    const char *u = c->url, *host = strstr(u, "://");
    host = host ? host + 3 : u;
    const char *at = strchr(host, '@'), *slash = strchr(host, '/');
    size_t scheme = (size_t)(host - u);
    if (at && (!slash || at < slash))
        host = at + 1;
    snprintf(cut, sizeof cut, "%.*s%.*s", (int)scheme, u, (int)strcspn(host, "?#"), host);
    lua_ctx_shared_redact(c->s, cut, url, sizeof url);
    snprintf(st, sizeof st, "%ld", status);
    snprintf(ms, sizeof ms, "%.1f", mono_ms() - c->sent_ms);
    kl_log(KL_LOG_V2, "http request", "controller", c->controller, "method",
           c->method[0] ? c->method : "GET", "url", url, KL_LOG_RAW "status", st,
           KL_LOG_RAW "duration_ms", ms, failure ? "error" : NULL, failure, NULL);
}

static void on_http_done(void *ud, http_response *resp)
{
    lua_ctx *c = ud;
    c->hreq = NULL;
    metrics_http_request(c->controller, resp->curl_code ? 0 : resp->status);
    log_http(c, c->too_large ? 0 : resp->status,
             c->too_large ? "ResponseTooLarge" : resp->curl_code ? resp->error : NULL);
    lua_ctx_discharge(c, &c->req_charged);               /* http freed its copy */
    if (c->too_large) {
        char msg[256];
        size_t got = c->rbody.len;
        snprintf(msg, sizeof msg, c->too_large == 1
                     ? "the response body passed the script's memory cap after %zu bytes "
                       "(klua run --lua-memory)"
                     : "out of memory after %zu bytes of the response body", got);
        lua_ctx_release(c);                              /* free the partial body now */
        lua_ctx_set_answer(c, 0, "ResponseTooLarge", msg);
        lua_ctx_finish(c);
        return;
    }
    if (resp->curl_code != 0) {
        lua_ctx_release(c);
        /* 28 is CURLE_OPERATION_TIMEDOUT */
        lua_ctx_set_answer(c, 0, resp->curl_code == 28 ? "Timeout" : "ConnectionError", resp->error);
        lua_ctx_finish(c);
        return;
    }
    c->code = resp->status;
    int bad = 0;
    for (size_t i = 0; i < resp->nheaders; i++) {
        bad |= kl_buf_append(&c->rheaders, resp->headers[i].name,
                             strlen(resp->headers[i].name) + 1);
        bad |= kl_buf_append(&c->rheaders, resp->headers[i].value,
                             strlen(resp->headers[i].value) + 1);
        c->nrheaders++;
    }
    if (bad) {
        lua_ctx_release(c);
        lua_ctx_set_answer(c, 0, "ConnectionError", "out of memory reading the answer");
    }
    if (c->s->tap) {   /* klua run --record, klua replay */
        lua_ctx_action a = {0};
        a.controller = c->controller;
        a.ns = c->ns;
        a.name = c->name;
        a.method = c->method;
        a.url = c->url;
        a.body = c->req_body ? c->req_body : "";
        a.body_len = c->req_body ? c->req_len : 0;
        a.code = c->code;
        a.resp_body = c->rbody.data;
        a.resp_len = c->rbody.len;
        a.resp_headers = c->rheaders.data;
        a.nresp_headers = c->nrheaders;
        c->s->tap(c->s->tap_ud, &a);
    }
    lua_ctx_finish(c);
}

static int push_http_answer(lua_State *L, lua_ctx *c)
{
    if (c->code == 0) {
        lua_ctx_release(c);
        lua_pushnil(L);
        lua_ctx_push_error(L, 0, c->reason, c->message);
        return 2;
    }
    /* The body becomes a Lua string (counted by the allocator): give its C
     * copy's charge back first, so that a body that fits the cap fits once.
     * If a push raises, lua_ctx_end frees what is left when the reconcile
     * ends. */
    lua_ctx_discharge(c, &c->resp_charged);
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
    lua_ctx_release(c);
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
    o.body = c->req_body;                                /* copied by http_start */
    o.body_len = c->req_len;
    o.timeout_ms = c->timeout_ms;
    o.on_data = on_http_data;
    o.stream_all = 1;
    o.on_done = on_http_done;
    o.ud = c;
    kl_err err = {0};
    c->sent_ms = mono_ms();
    c->hreq = http_start(c->s->http, &o, &err);
    c->req_body = NULL;                                  /* the script's string: not ours */
    if (!c->hreq) {
        lua_ctx_discharge(c, &c->req_charged);
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

/* nil, err without waiting (the request never starts). */
static int refuse(lua_State *L, const char *reason, const char *message)
{
    lua_pushnil(L);
    lua_ctx_push_error(L, 0, reason, message);
    return 2;
}

static int l_http(lua_State *L)
{
    lua_ctx *c = lua_ctx_check(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    lua_ctx_copy_field(L, 2, "method", c->method, sizeof c->method, "ctx:http");
    for (char *p = c->method; *p; p++)
        if (*p < 'A' || *p > 'Z')
            return luaL_error(L, "ctx:http: method must be upper-case letters");
    if (lua_getfield(L, 2, "url") != LUA_TSTRING)        /* [ctx, req, url] */
        return luaL_error(L, "ctx:http: url is required");
    size_t url_len;
    const char *url = lua_tolstring(L, 3, &url_len);
    if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
        return luaL_error(L, "ctx:http: url must start with https:// or http://");
    /* The body stays on the stack (index 4) until the request has copied
     * it: no C copy of our own. */
    if (lua_getfield(L, 2, "body") == LUA_TSTRING) {     /* [ctx, req, url, body] */
        c->req_body = lua_tolstring(L, 4, &c->req_len);
    } else if (!lua_isnil(L, 4)) {
        return luaL_error(L, "ctx:http: body must be a string");
    }
    lua_Number timeout = 30;
    if (lua_getfield(L, 2, "timeout") != LUA_TNIL)
        timeout = luaL_checknumber(L, -1);
    lua_pop(L, 1);
    if (!(timeout > 0 && timeout <= 3600))
        return luaL_error(L, "ctx:http: timeout must be seconds between 0 and 3600");
    c->timeout_ms = (long)(timeout * 1000);
    /* Headers: collect into a Lua table of "Name: value" first (can raise
     * freely), then copy to C in one go. */
    size_t n = 0, hbytes = 0;
    int has_agent = 0;
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
            has_agent |= strcasecmp(k, "User-Agent") == 0;
            const char *line = lua_pushfstring(L, "%s: %s", k, v);
            hbytes += strlen(line) + 1;
            lua_rawseti(L, lines, (lua_Integer)++n);
            lua_pop(L, 1);
        }
    } else if (!lua_isnil(L, -1)) {
        return luaL_error(L, "ctx:http: headers must be a table");
    }
    if (!has_agent) {
        const char *line = lua_pushliteral(L, "User-Agent: klua/" KLUA_VERSION);
        hbytes += strlen(line) + 1;
        lua_rawseti(L, lines, (lua_Integer)++n);
    }
    /* What klua holds for the request until it is sent (the body's copy
     * in http, URL and headers) counts against the script's cap. */
    size_t need = c->req_len + 1 + url_len + 1 + hbytes + (n + 1) * sizeof(char *);
    if (lua_ctx_charge(c, &c->req_charged, need) != 0)
        return refuse(L, "RequestTooLarge", "the request (body and headers) would pass the "
                                            "script's memory cap (klua run --lua-memory)");
    c->url = strdup(url);
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
    const lua_ctx *c = luaL_checkudata(L, 1, LUA_CTX_MT);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9 + c->s->now_offset);
    return 1;
}

/* ---- environment and secrets ---- */

static int env_allowed(const lua_ctx_shared *s, const char *name)
{
    for (size_t i = 0; i < s->nenv_allow; i++)
        if (fnmatch(s->env_allow[i], name, 0) == 0)
            return 1;
    return 0;
}

/* One warning per refused name (a reconcile loop would repeat it for
 * ever); past ENV_WARN_MAX names, no more warnings. */
static void warn_refused(lua_ctx *c, const char *name)
{
    lua_ctx_shared *s = c->s;
    for (size_t i = 0; i < s->nenv_refused; i++)
        if (strcmp(s->env_refused[i], name) == 0)
            return;
    if (s->nenv_refused >= ENV_WARN_MAX)
        return;
    char **n = realloc(s->env_refused, (s->nenv_refused + 1) * sizeof *n);
    if (n) {
        s->env_refused = n;
        if ((n[s->nenv_refused] = strdup(name)))
            s->nenv_refused++;
    }
    kl_log(KL_LOG_WARN, "ctx:getenv: variable not allowed (klua run --allow-env PATTERN allows it)",
           "controller", c->controller, "variable", name, "flag", "--allow-env", NULL);
}

static int l_getenv(lua_State *L)
{
    lua_ctx *c = luaL_checkudata(L, 1, LUA_CTX_MT);
    const char *name = luaL_checkstring(L, 2);
    if (!env_allowed(c->s, name)) {
        warn_refused(c, name);
        lua_pushnil(L);
        return 1;
    }
    const char *v = getenv(name);
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
    size_t n = 0;
    const char *v = lua_ctx_secret_get(c->s, name, &n);
    if (v)
        lua_pushlstring(L, v, n);
    else
        lua_pushnil(L);
    return 1;
}

/* ---- ctx.log ---- */

/* The value at idx as JSON, pushed as a Lua string (so nothing C-owned is
 * pending if a later step raises), or NULL (nothing pushed) when it does
 * not encode (NaN, a function inside a table...): then it is logged as text. */
static const char *encode_field(lua_State *L, int idx, size_t *len)
{
    kl_buf b = KL_BUF_INIT;
    kl_err err = {0};
    if (lua_json_encode(L, idx, &b, &err) != 0 || !b.data || b.len > LOG_VALUE_MAX) {
        kl_buf_free(&b);
        return NULL;
    }
    lua_pushlstring(L, b.data, b.len);
    kl_buf_free(&b);
    return lua_tolstring(L, -1, len);
}

static int log_at(lua_State *L, int level)
{
    lua_ctx *c = lua_touserdata(L, lua_upvalueindex(1));
    if (!kl_log_enabled(level))
        return 0;
    size_t len;
    const char *raw = luaL_checklstring(L, 1, &len);
    lua_settop(L, 2);
    luaL_checkstack(L, MAX_LOG_FIELDS * 2 + 8, "ctx.log");
    const char *msg = lua_ctx_push_redacted(L, c->s, raw, len, LOG_VALUE_MAX);     /* [msg, fields, msg'] */
    size_t total = strlen(msg);
    const char *kv[MAX_LOG_FIELDS * 2 + 2] = {0};
    size_t n = 0;
    if (lua_istable(L, 2)) {
        lua_pushnil(L);
        while (n < MAX_LOG_FIELDS * 2 && lua_next(L, 2)) {  /* [.., k, v] */
            if (lua_type(L, -2) == LUA_TSTRING) {
                const char *k = lua_tolstring(L, -2, &len);
                int t = lua_type(L, -1);
                /* numbers, booleans and tables keep their type in JSON lines */
                const char *v = NULL;
                if (t == LUA_TNUMBER || t == LUA_TBOOLEAN || t == LUA_TTABLE) {
                    v = encode_field(L, lua_gettop(L), &len);      /* [.., k, v, json?] */
                    if (v)
                        lua_pushfstring(L, KL_LOG_RAW "%s", k);    /* [.., k, v, json, k1] */
                }
                if (!v) {
                    v = luaL_tolstring(L, -1, &len);               /* [.., k, v, s] */
                    lua_pushstring(L, k);                          /* [.., k, v, s, k] */
                }
                k = lua_tolstring(L, -1, &len);
                kv[n] = lua_ctx_push_redacted(L, c->s, k, len, LOG_VALUE_MAX);
                lua_insert(L, 4);                        /* anchored below the iteration */
                lua_pop(L, 1);                           /* [.., k, v, s] */
                v = lua_tolstring(L, -1, &len);
                kv[n + 1] = lua_ctx_push_redacted(L, c->s, v, len, LOG_VALUE_MAX);
                lua_insert(L, 4);
                lua_pop(L, 1);                           /* [.., k, v] */
                total += strlen(kv[n]) + strlen(kv[n + 1]);
                n += 2;
            }
            lua_pop(L, 1);                               /* [.., k] */
        }
    }
    char key[STORE_KEY_MAX];
    store_key(key, sizeof key, c->ns, c->name);
    /* The line kl_log formats (JSON escapes take up to 6 bytes a byte) is C
     * memory held for the script: it counts against the cap meanwhile. */
    size_t line = 0;
    if (lua_ctx_charge(c, &line, total * 6 + 1024) != 0)
        return luaL_error(L, "ctx.log: not enough memory for the log line (%d bytes over the "
                             "script's memory cap)", (int)(total * 6 + 1024));
    kl_log(level, msg, "controller", c->controller, "key", key, kv[0], kv[1], kv[2], kv[3], kv[4],
           kv[5], kv[6], kv[7], kv[8], kv[9], kv[10], kv[11], kv[12], kv[13], kv[14], kv[15],
           (const char *)NULL);
    lua_ctx_discharge(c, &line);
    return 0;
}

static int l_log_info(lua_State *L) { return log_at(L, KL_LOG_INFO); }
static int l_log_warn(lua_State *L) { return log_at(L, KL_LOG_WARN); }
static int l_log_error(lua_State *L) { return log_at(L, KL_LOG_ERROR); }
static int l_log_debug(lua_State *L) { return log_at(L, KL_LOG_V1); }

const luaL_Reg lua_ctx_io_methods[] = {
    {"http", l_http},     {"sleep", l_sleep},   {"now", l_now},
    {"getenv", l_getenv}, {"secret", l_secret}, {NULL, NULL},
};

const luaL_Reg lua_ctx_log_funcs[] = {
    {"info", l_log_info}, {"warn", l_log_warn}, {"error", l_log_error}, {"debug", l_log_debug},
    {NULL, NULL},
};
