/* lua_ctx_op.c - the ctx's op plumbing and argument helpers (see
 * lua_ctx_op.h), and klua.Error values (lua_ctx_push_error).
 *
 * Provides: lua_ctx_reset, lua_ctx_cancel, lua_ctx_finish,
 * lua_ctx_set_answer, lua_ctx_op_begin, lua_ctx_check, lua_ctx_copy_field,
 * lua_ctx_reason_for, lua_ctx_push_error.
 * Uses: rest/kube, http and discovery (cancelling), loop (timers),
 * lua_host (charging C memory), buf.
 */
#include "lua_ctx_op.h"

#include "lua_host.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERROR_MT "klua.Error"

/* ---- errors ---- */

static int error_tostring(lua_State *L)
{
    lua_getfield(L, 1, "reason");
    lua_getfield(L, 1, "message");
    lua_getfield(L, 1, "code");
    lua_pushfstring(L, "%s: %s (%s)", luaL_optstring(L, 2, "Error"), luaL_optstring(L, 3, ""),
                    luaL_optstring(L, 4, "0"));
    return 1;
}

const char *lua_ctx_reason_for(long code)
{
    switch (code) {
    case 0: return "ConnectionError";
    case 400: return "BadRequest";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "NotFound";
    case 405: return "MethodNotAllowed";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 422: return "Invalid";
    case 429: return "TooManyRequests";
    case 504: return "Timeout";
    default: return code >= 500 ? "InternalError" : "Error";
    }
}

void lua_ctx_push_error(lua_State *L, long code, const char *reason, const char *message)
{
    lua_createtable(L, 0, 3);                            /* [err] */
    lua_pushinteger(L, code);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, reason && *reason ? reason : lua_ctx_reason_for(code));
    lua_setfield(L, -2, "reason");
    lua_pushstring(L, message ? message : "");
    lua_setfield(L, -2, "message");
    if (luaL_newmetatable(L, ERROR_MT)) {                /* [err, mt] */
        lua_pushcfunction(L, error_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_setmetatable(L, -2);
}

/* ---- the call in flight ---- */

void lua_ctx_reset(lua_ctx *c)
{
    c->push = NULL;
    c->r = NULL;
    c->raise = 0;
    c->resolving = 0;
    c->after_resolve = NULL;
    c->op = 0;
    c->api_version[0] = c->kind[0] = c->req_ns[0] = c->req_name[0] = '\0';
    c->subresource[0] = c->field_manager[0] = c->propagation[0] = '\0';
    c->pre_uid[0] = c->pre_rv[0] = c->method[0] = '\0';
    c->force = c->dry_run = 0;
    c->ptype = KUBE_PATCH_MERGE;
    kl_buf_reset(&c->body);
    kl_buf_reset(&c->selector);
    free(c->url);
    c->url = NULL;
    if (c->hdrs) {
        for (char **h = c->hdrs; *h; h++)
            free(*h);
        free(c->hdrs);
        c->hdrs = NULL;
    }
    c->req_body = NULL;
    c->req_len = 0;
    c->too_large = 0;
    c->code = 0;
    c->reason[0] = c->message[0] = '\0';
    lua_ctx_release(c);
}

int lua_ctx_charge(lua_ctx *c, size_t *counter, size_t n)
{
    if (c->L && lua_host_charge(c->L, n) != 0)
        return -1;
    *counter += n;
    return 0;
}

void lua_ctx_discharge(lua_ctx *c, size_t *counter)
{
    if (c->L && *counter)
        lua_host_discharge(c->L, *counter);
    *counter = 0;
}

void lua_ctx_uncharge(lua_ctx *c, size_t *counter, size_t n)
{
    if (n > *counter)
        n = *counter;
    if (c->L && n)
        lua_host_discharge(c->L, n);
    *counter -= n;
}

void lua_ctx_release(lua_ctx *c)
{
    /* rbody is freed, not kept: what a large answer held goes back at once */
    kl_buf_free(&c->rbody);
    kl_buf_reset(&c->rheaders);
    c->nrheaders = 0;
    lua_ctx_discharge(c, &c->resp_charged);
    if (!c->hreq)
        lua_ctx_discharge(c, &c->req_charged);
}

void lua_ctx_cancel(lua_ctx *c)
{
    if (c->timer)
        loop_timer_cancel(c->s->l, c->timer);
    if (c->call)
        kube_cancel(c->call);
    if (c->hreq)
        http_cancel(c->hreq);    /* frees its copy of the request */
    if (c->dreq)
        discovery_cancel(c->dreq);
    c->dreq = NULL;
    c->timer = 0;
    c->call = NULL;
    c->hreq = NULL;
    c->waiting = 0;
    lua_ctx_discharge(c, &c->req_charged);
}

void lua_ctx_finish(lua_ctx *c)
{
    c->done = 1;
    c->waiting = 0;
    if (c->in_lua || c->ended)
        return;
    c->resume(c->resume_ud);
}

void lua_ctx_set_answer(lua_ctx *c, long code, const char *reason, const char *message)
{
    c->code = code;
    snprintf(c->reason, sizeof c->reason, "%s",
             reason && *reason ? reason : lua_ctx_reason_for(code));
    snprintf(c->message, sizeof c->message, "%s", message ? message : "");
}

static int push_results(lua_State *L, lua_ctx *c)
{
    c->done = 0;
    return c->push ? c->push(L, c) : 0;
}

static int op_k(lua_State *L, int status, lua_KContext kctx)
{
    (void)status;
    lua_ctx *c = (lua_ctx *)kctx;
    return push_results(L, c);
}

int lua_ctx_op_begin(lua_State *L, lua_ctx *c, lua_ctx_start_fn start, lua_ctx_push_fn push,
                     const char *what)
{
    if (L != c->co)
        return luaL_error(L, "ctx:%s must be called from the reconcile itself, not from a "
                             "coroutine it created", what);
    if (!lua_isyieldable(L))
        return luaL_error(L, "ctx:%s cannot wait here (inside a metamethod, iterator or sort "
                             "function)", what);
    c->push = push;
    c->done = 0;
    c->waiting = 1;
    c->in_lua = 1;
    start(c);
    c->in_lua = 0;
    if (c->done)
        return push_results(L, c);
    lua_settop(L, 0);
    return lua_yieldk(L, 0, (lua_KContext)c, op_k);
}

/* ---- argument helpers ---- */

lua_ctx *lua_ctx_check(lua_State *L)
{
    lua_ctx *c = luaL_checkudata(L, 1, LUA_CTX_MT);
    if (c->ended)
        luaL_error(L, "this ctx belongs to a reconcile that has ended");
    if (c->waiting)
        luaL_error(L, "ctx is busy with another call");
    lua_ctx_reset(c);
    return c;
}

void lua_ctx_copy_field(lua_State *L, int t, const char *field, char *out, size_t outsz,
                        const char *what)
{
    out[0] = '\0';
    if (lua_getfield(L, t, field) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        if (n >= outsz)
            luaL_error(L, "%s: %s is too long", what, field);
        memcpy(out, s, n + 1);
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "%s: %s must be a string", what, field);
    }
    lua_pop(L, 1);
}
