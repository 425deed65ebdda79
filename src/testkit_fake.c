/* testkit_fake.c - the fake server's answers (see testkit_fake.h).
 *
 * Provides: kt_fake_handler, kt_set_proxy_env.
 * Uses: fakeapi, testkit (kt_run), lua_json, buf.
 */
#include "testkit_fake.h"

#include "buf.h"
#include "lua_json.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

fakeapi_handler kt_fake_handler(kt_run *r)
{
    fakeapi_handler fh = {on_fake_request, on_fake_closed, r};
    return fh;
}

/* ---- script HTTP goes through the fake server ---- */

void kt_set_proxy_env(int port, const char *extra_host)
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

