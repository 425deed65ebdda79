/* lua_ctx.c - the ctx object and its bindings (see lua_ctx.h).
 *
 * Provides: lua_ctx_shared, lua_ctx and the Context methods.
 * Uses: rest/kube (API calls), http (ctx:http), store/labels (cache reads),
 * loop (sleep), lua_json (objects in and out), json (discovery answers),
 * log, buf, err.
 *
 * One call at a time can wait per ctx (a coroutine is suspended in at most
 * one call), so the request and its answer live in the lua_ctx itself:
 * op_begin() starts the I/O, the loop callback stores the answer and calls
 * finish(), and push_results() turns it into Lua values, either at once
 * (the answer came before we yielded) or in the continuation op_k.
 */
#include "lua_ctx.h"

#include "buf.h"
#include "json.h"
#include "labels.h"
#include "log.h"
#include "lua_json.h"
#include "util.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CTX_MT "klua.Context"
#define ERROR_MT "klua.Error"
#define NOTE_MAX 1024
#define MAX_LOG_FIELDS 8

struct lua_ctx_shared {
    loop *l;
    kube_client *kc;
    http_client *http;
    kube_resource **res;      /* resolved resources, stable pointers */
    size_t nres;
    char **secrets;           /* name, value pairs */
    size_t nsecrets;
    char hostname[128];
    double now_offset;        /* seconds added to ctx:now (klua test's clock) */
};

enum verb {
    V_NONE, V_SLEEP, V_GET, V_LIST, V_CREATE, V_UPDATE, V_PATCH, V_DELETE, V_EVENT, V_HTTP
};

struct lua_ctx {
    lua_ctx_shared *s;
    lua_ctx_cache cache;
    void (*resume)(void *ud);
    void *resume_ud;
    lua_State *co;
    int ended;
    char controller[64], ns[256], name[256];

    /* the call in flight */
    enum verb verb;
    int waiting, in_lua, done, raise;
    loop_timer_id timer;
    kube_call *call;
    http_request *hreq;
    char api_version[256], kind[128];
    const kube_resource *r;
    char req_ns[256], req_name[256], subresource[32], field_manager[128];
    char propagation[16], pre_uid[128], pre_rv[128];
    int force, dry_run;
    kube_patch_type ptype;
    kl_buf body, selector;
    char *url, **hdrs;        /* ctx:http: owned until the answer */
    long timeout_ms;
    int resolving;

    /* the answer */
    long code;
    char reason[64];
    char message[1024];
    kl_buf rbody;
    kl_buf rheaders;          /* ctx:http: "name\0value\0" ... */
    size_t nrheaders;
};

/* ---- shared ---- */

lua_ctx_shared *lua_ctx_shared_new(loop *l, kube_client *kc, http_client *http, kl_err *err)
{
    lua_ctx_shared *s = calloc(1, sizeof *s);
    if (!s) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    s->l = l;
    s->kc = kc;
    s->http = http;
    if (gethostname(s->hostname, sizeof s->hostname - 1) != 0 || !s->hostname[0])
        snprintf(s->hostname, sizeof s->hostname, "klua");
    return s;
}

void lua_ctx_shared_free(lua_ctx_shared *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nres; i++) {
        kube_resource_free(s->res[i]);
        free(s->res[i]);
    }
    free(s->res);
    for (size_t i = 0; i < s->nsecrets * 2; i++)
        free(s->secrets[i]);
    free(s->secrets);
    free(s);
}

static const kube_resource *shared_find(lua_ctx_shared *s, const char *api_version,
                                        const char *kind)
{
    const char *slash = strchr(api_version, '/');
    size_t glen = slash ? (size_t)(slash - api_version) : 0;
    const char *version = slash ? slash + 1 : api_version;
    for (size_t i = 0; i < s->nres; i++) {
        const kube_resource *r = s->res[i];
        if (strcmp(r->kind, kind) == 0 && strcmp(r->version, version) == 0 &&
            strlen(r->group) == glen && strncmp(r->group, api_version, glen) == 0)
            return r;
    }
    return NULL;
}

int lua_ctx_shared_add_resource(lua_ctx_shared *s, const kube_resource *r)
{
    char *av = kube_resource_api_version(r);
    int known = av && shared_find(s, av, r->kind);
    free(av);
    if (known)
        return 0;
    kube_resource **n = realloc(s->res, (s->nres + 1) * sizeof *n);
    if (!n)
        return -1;
    s->res = n;
    kube_resource *copy = calloc(1, sizeof *copy);
    if (!copy || kube_resource_copy(copy, r) != 0) {
        free(copy);
        return -1;
    }
    s->res[s->nres++] = copy;
    return 0;
}

void lua_ctx_shared_set_now_offset(lua_ctx_shared *s, double seconds) { s->now_offset = seconds; }

int lua_ctx_shared_set_secret(lua_ctx_shared *s, const char *name, const char *value)
{
    char **n = realloc(s->secrets, (s->nsecrets + 1) * 2 * sizeof *n);
    if (!n)
        return -1;
    s->secrets = n;
    char *k = strdup(name), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return -1;
    }
    s->secrets[s->nsecrets * 2] = k;
    s->secrets[s->nsecrets * 2 + 1] = v;
    s->nsecrets++;
    return 0;
}

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

static const char *reason_for(long code)
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
    lua_pushstring(L, reason && *reason ? reason : reason_for(code));
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

static void reset_request(lua_ctx *c)
{
    c->verb = V_NONE;
    c->r = NULL;
    c->raise = 0;
    c->resolving = 0;
    c->api_version[0] = c->kind[0] = c->req_ns[0] = c->req_name[0] = '\0';
    c->subresource[0] = c->field_manager[0] = c->propagation[0] = '\0';
    c->pre_uid[0] = c->pre_rv[0] = '\0';
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
    c->code = 0;
    c->reason[0] = c->message[0] = '\0';
    kl_buf_reset(&c->rbody);
    kl_buf_reset(&c->rheaders);
    c->nrheaders = 0;
}

static void cancel_pending(lua_ctx *c)
{
    if (c->timer)
        loop_timer_cancel(c->s->l, c->timer);
    if (c->call)
        kube_cancel(c->call);
    if (c->hreq)
        http_cancel(c->hreq);
    c->timer = 0;
    c->call = NULL;
    c->hreq = NULL;
    c->waiting = 0;
}

/* The answer is in: resume the coroutine unless we are still inside the
 * Lua call that started it (then op_begin returns the results directly).
 * Nothing may touch c after the resume: the reconcile may end in it. */
static void finish(lua_ctx *c)
{
    c->done = 1;
    c->waiting = 0;
    if (c->in_lua || c->ended)
        return;
    c->resume(c->resume_ud);
}

static void set_answer(lua_ctx *c, long code, const char *reason, const char *message)
{
    c->code = code;
    snprintf(c->reason, sizeof c->reason, "%s", reason && *reason ? reason : reason_for(code));
    snprintf(c->message, sizeof c->message, "%s", message ? message : "");
}

static void on_kube_done(void *ud, kube_result *res)
{
    lua_ctx *c = ud;
    c->call = NULL;
    c->code = res->http_code;
    snprintf(c->reason, sizeof c->reason, "%s", res->reason);
    snprintf(c->message, sizeof c->message, "%s", res->message);
    kl_buf_reset(&c->rbody);
    if (res->body.len && kl_buf_append(&c->rbody, res->body.data, res->body.len) != 0)
        set_answer(c, 0, "ConnectionError", "out of memory reading the answer");
    finish(c);
}

static void start_call(lua_ctx *c);

/* Discovery answer for one group version: remember every resource in it. */
static void on_discovery(void *ud, kube_result *res)
{
    lua_ctx *c = ud;
    c->call = NULL;
    c->resolving = 0;
    json_doc d = {0};
    kl_err err = {0};
    const char *slash = strchr(c->api_version, '/');
    if (kube_result_ok(res) && json_parse(&d, res->body.data, res->body.len, &err) == 0) {
        int list = json_obj_get(&d, 0, "resources");
        for (int it = json_first(&d, list); it >= 0; it = json_next(&d, it)) {
            char *name = json_str_dup(&d, json_obj_get(&d, it, "name"));
            char *kind = json_str_dup(&d, json_obj_get(&d, it, "kind"));
            int ns_tok = json_obj_get(&d, it, "namespaced");
            if (name && kind && !strchr(name, '/')) {
                char group[256];
                snprintf(group, sizeof group, "%.*s", slash ? (int)(slash - c->api_version) : 0,
                         c->api_version);
                char status_name[300];
                snprintf(status_name, sizeof status_name, "%s/status", name);
                int has_status = 0;
                for (int j = json_first(&d, list); j >= 0; j = json_next(&d, j))
                    has_status |= json_str_eq(&d, json_obj_get(&d, j, "name"), status_name);
                kube_resource r = {group, (char *)(slash ? slash + 1 : c->api_version), name,
                                   kind, ns_tok >= 0 && d.toks[ns_tok].type == JSON_TRUE,
                                   has_status};
                lua_ctx_shared_add_resource(c->s, &r);
            }
            free(name);
            free(kind);
        }
    }
    json_doc_free(&d);
    c->r = shared_find(c->s, c->api_version, c->kind);
    if (!c->r) {
        if (res->http_code == 0) {
            /* no answer: an operational failure, returned as nil, err */
            set_answer(c, 0, res->reason, res->message);
        } else {
            /* the server answered and does not know the kind: misuse, raised */
            c->raise = 1;
            snprintf(c->message, sizeof c->message, "unknown kind %s in apiVersion %s", c->kind,
                     c->api_version);
        }
        finish(c);
        return;
    }
    start_call(c);
}

static void start_resolve(lua_ctx *c)
{
    kl_buf path = KL_BUF_INIT;
    if (strchr(c->api_version, '/'))
        kl_buf_printf(&path, "/apis/%s", c->api_version);
    else
        kl_buf_printf(&path, "/api/%s", c->api_version);
    c->resolving = 1;
    c->call = kube_request(c->s->kc, "GET", path.data ? path.data : "/api", NULL, NULL, 0,
                           on_discovery, c);
    kl_buf_free(&path);
    if (!c->call) {
        c->resolving = 0;
        set_answer(c, 0, "ConnectionError", "cannot start a discovery request");
        finish(c);
    }
}

static void start_call(lua_ctx *c)
{
    lua_ctx_shared *s = c->s;
    const kube_resource *r = c->r;
    const char *ns = r->namespaced ? (c->req_ns[0] ? c->req_ns : c->ns) : NULL;
    const char *name = c->req_name[0] ? c->req_name : NULL;
    kube_write_opts wo = {c->field_manager[0] ? c->field_manager : "klua", c->force, c->dry_run,
                          c->subresource[0] ? c->subresource : NULL};
    const char *body = c->body.data ? c->body.data : "";
    switch (c->verb) {
    case V_GET:
        c->call = kube_get(s->kc, r, ns, name, NULL, on_kube_done, c);
        break;
    case V_LIST: {
        kube_list_opts lo = {0};
        lo.label_selector = c->selector.len ? c->selector.data : NULL;
        c->call = kube_list(s->kc, r, ns, &lo, on_kube_done, c);
        break;
    }
    case V_CREATE:
        c->call = kube_create(s->kc, r, ns, body, c->body.len, &wo, on_kube_done, c);
        break;
    case V_UPDATE:
        c->call = kube_update(s->kc, r, ns, name, body, c->body.len, &wo, on_kube_done, c);
        break;
    case V_PATCH:
        c->call = kube_patch(s->kc, r, ns, name, c->ptype, body, c->body.len, &wo, on_kube_done, c);
        break;
    case V_DELETE: {
        kube_delete_opts dopt = {c->propagation[0] ? c->propagation : NULL,
                                 c->pre_uid[0] ? c->pre_uid : NULL,
                                 c->pre_rv[0] ? c->pre_rv : NULL, -1};
        c->call = kube_delete(s->kc, r, ns, name, &dopt, on_kube_done, c);
        break;
    }
    default:
        break;
    }
    if (!c->call) {
        set_answer(c, 0, "ConnectionError", "cannot start the API request");
        finish(c);
    }
}

static const kube_resource *resolve_now(lua_ctx *c, const store **st)
{
    const kube_resource *r = NULL;
    if (st)
        *st = NULL;
    if (c->cache.lookup) {
        const store *found = c->cache.lookup(c->cache.ud, c->api_version, c->kind, &r);
        if (found && st)
            *st = found;
        if (r)
            return r;
    }
    return shared_find(c->s, c->api_version, c->kind);
}

static void start_kube(lua_ctx *c)
{
    if (!c->s->kc) {
        set_answer(c, 0, "ConnectionError", "no API server configured");
        finish(c);
        return;
    }
    c->r = resolve_now(c, NULL);
    if (c->r)
        start_call(c);
    else
        start_resolve(c);
}

/* ---- pushing answers ---- */

static int push_kube_answer(lua_State *L, lua_ctx *c)
{
    int ok = c->code >= 200 && c->code < 300;
    if (c->raise)
        return luaL_error(L, "%s", c->message);
    if (c->verb == V_DELETE && (ok || c->code == 404)) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (!ok) {
        lua_pushnil(L);
        lua_ctx_push_error(L, c->code, c->reason, c->message);
        return 2;
    }
    kl_err err = {0};
    if (lua_json_push(L, c->rbody.data ? c->rbody.data : "{}", c->rbody.data ? c->rbody.len : 2,
                      &err) != 0) {
        lua_pushnil(L);
        lua_ctx_push_error(L, c->code, "InvalidResponse", err.msg);
        return 2;
    }
    kl_buf_free(&c->rbody);
    if (c->verb != V_LIST)
        return 1;
    /* A list: its items, each with the apiVersion and kind lists omit. */
    lua_getfield(L, -1, "items");                        /* [list, items] */
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
    }
    lua_json_mark_array(L, -1);
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        if (lua_istable(L, -1)) {
            lua_pushstring(L, c->api_version);
            lua_setfield(L, -2, "apiVersion");
            lua_pushstring(L, c->kind);
            lua_setfield(L, -2, "kind");
        }
        lua_pop(L, 1);
    }
    lua_remove(L, -2);
    return 1;
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

static int push_results(lua_State *L, lua_ctx *c)
{
    enum verb v = c->verb;
    c->done = 0;
    switch (v) {
    case V_SLEEP: return 0;
    case V_EVENT:
        if (c->code < 200 || c->code >= 300)
            kl_log(KL_LOG_V1, "event not recorded", "controller", c->controller, "reason", c->reason,
                   "message", c->message, NULL);
        return 0;
    case V_HTTP: return push_http_answer(L, c);
    default: return push_kube_answer(L, c);
    }
}

static int op_k(lua_State *L, int status, lua_KContext kctx)
{
    (void)status;
    lua_ctx *c = (lua_ctx *)kctx;
    return push_results(L, c);
}

/* Start the prepared call and wait for it. `what` names the method. */
static int op_begin(lua_State *L, lua_ctx *c, void (*start)(lua_ctx *), const char *what)
{
    if (L != c->co)
        return luaL_error(L, "ctx:%s must be called from the reconcile itself, not from a "
                             "coroutine it created", what);
    if (!lua_isyieldable(L))
        return luaL_error(L, "ctx:%s cannot wait here (inside a metamethod, iterator or sort "
                             "function)", what);
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

static lua_ctx *check_ctx(lua_State *L)
{
    lua_ctx *c = luaL_checkudata(L, 1, CTX_MT);
    if (c->ended)
        luaL_error(L, "this ctx belongs to a reconcile that has ended");
    if (c->waiting)
        luaL_error(L, "ctx is busy with another call");
    reset_request(c);
    return c;
}

static void copy_field(lua_State *L, int t, const char *field, char *out, size_t outsz,
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

/* type = { apiVersion, kind } at arg */
static void read_type(lua_State *L, lua_ctx *c, int arg, const char *what)
{
    luaL_checktype(L, arg, LUA_TTABLE);
    copy_field(L, arg, "apiVersion", c->api_version, sizeof c->api_version, what);
    copy_field(L, arg, "kind", c->kind, sizeof c->kind, what);
    if (!c->api_version[0] || !c->kind[0])
        luaL_error(L, "%s: the type needs apiVersion and kind strings", what);
}

/* obj names its target: apiVersion, kind, metadata.namespace/name. */
static void read_target(lua_State *L, lua_ctx *c, int arg, int need_name, const char *what)
{
    read_type(L, c, arg, what);
    if (lua_getfield(L, arg, "metadata") == LUA_TTABLE) {
        int md = lua_gettop(L);
        copy_field(L, md, "namespace", c->req_ns, sizeof c->req_ns, what);
        copy_field(L, md, "name", c->req_name, sizeof c->req_name, what);
    }
    lua_pop(L, 1);
    if (need_name && !c->req_name[0])
        luaL_error(L, "%s: obj.metadata.name is required", what);
}

static void encode_arg(lua_State *L, lua_ctx *c, int arg, const char *what)
{
    kl_err err = {0};
    kl_buf_reset(&c->body);
    if (lua_json_encode(L, arg, &c->body, &err) != 0)
        luaL_error(L, "%s: %s", what, err.msg);
}

static void read_write_opts(lua_State *L, lua_ctx *c, int arg, const char *what)
{
    if (lua_isnoneornil(L, arg))
        return;
    luaL_checktype(L, arg, LUA_TTABLE);
    copy_field(L, arg, "field_manager", c->field_manager, sizeof c->field_manager, what);
    lua_getfield(L, arg, "force");
    c->force = lua_toboolean(L, -1);
    lua_getfield(L, arg, "dry_run");
    c->dry_run = lua_toboolean(L, -1);
    lua_pop(L, 2);
}

/* ---- methods: cache reads ---- */

/* Decode a cached object (a fresh copy each time) and push it. */
static void push_cached(lua_State *L, const store_obj *o)
{
    kl_err err = {0};
    if (lua_json_push(L, o->json, o->json_len, &err) != 0)
        luaL_error(L, "cached object %s: %s", o->key, err.msg);
}

static int l_get(lua_State *L)
{
    lua_ctx *c = check_ctx(L);
    read_type(L, c, 2, "ctx:get");
    const char *ns = luaL_optstring(L, 3, NULL);
    const char *name = luaL_checkstring(L, 4);
    const store *st = NULL;
    const kube_resource *r = resolve_now(c, &st);
    if (ns && strlen(ns) >= sizeof c->req_ns)
        return luaL_error(L, "ctx:get: namespace too long");
    if (strlen(name) >= sizeof c->req_name)
        return luaL_error(L, "ctx:get: name too long");
    snprintf(c->req_ns, sizeof c->req_ns, "%s", ns ? ns : "");
    snprintf(c->req_name, sizeof c->req_name, "%s", name);
    if (st && r) {
        char key[600];
        if (r->namespaced)
            snprintf(key, sizeof key, "%s/%s", c->req_ns[0] ? c->req_ns : c->ns, name);
        else
            snprintf(key, sizeof key, "%s", name);
        const store_obj *o = store_get(st, key);
        if (!o) {
            lua_pushnil(L);
            return 1;
        }
        push_cached(L, o);
        return 1;
    }
    c->verb = V_GET;
    return op_begin(L, c, start_kube, "get");
}

typedef struct list_walk {
    const char *ns;            /* filter for owner walks, or NULL */
    const label_selector *sel; /* filter for owner walks, or NULL */
    const store_obj **out;     /* NULL on the counting pass */
    size_t n;
} list_walk;

static int list_visit(void *ud, const store_obj *o)
{
    list_walk *w = ud;
    if (w->ns && strcmp(o->ns, w->ns) != 0)
        return 0;
    if (w->sel && !label_selector_matches(w->sel, o->labels, o->nlabels))
        return 0;
    if (w->out)
        w->out[w->n] = o;
    w->n++;
    return 0;
}

/* Two passes (count, then fill a Lua-owned array) so that no C allocation
 * is pending when decoding raises. */
static int walk_store(const store *st, const char *ns, const char *selector, const char *owner,
                      const label_selector *sel, list_walk *w, kl_err *err)
{
    if (owner) {
        w->ns = ns;
        w->sel = sel;
        store_each_owned_by(st, owner, list_visit, w);
        return 0;
    }
    if (selector)
        return store_each_selected(st, ns, selector, list_visit, w, err);
    if (ns)
        store_each_in_namespace(st, ns, list_visit, w);
    else
        store_each(st, list_visit, w);
    return 0;
}

static int l_list(lua_State *L)
{
    lua_ctx *c = check_ctx(L);
    read_type(L, c, 2, "ctx:list");
    char owner[128] = "";
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        copy_field(L, 3, "namespace", c->req_ns, sizeof c->req_ns, "ctx:list");
        copy_field(L, 3, "owner", owner, sizeof owner, "ctx:list");
        if (lua_getfield(L, 3, "selector") == LUA_TSTRING)
            kl_buf_puts(&c->selector, lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    const store *st = NULL;
    const kube_resource *r = resolve_now(c, &st);
    if (!st || !r) {
        if (owner[0])
            return luaL_error(L, "ctx:list: owner filtering needs a watched or owned kind (%s)",
                              c->kind);
        c->verb = V_LIST;
        return op_begin(L, c, start_kube, "list");
    }
    const char *ns = c->req_ns[0] ? c->req_ns : NULL;
    const char *selector = c->selector.len ? c->selector.data : NULL;
    label_selector *sel = NULL;
    kl_err err = {0};
    if (owner[0] && selector && label_selector_parse(selector, &sel, &err) != 0)
        return luaL_error(L, "ctx:list: %s", err.msg);
    list_walk w = {0};
    int rc = walk_store(st, ns, selector, owner[0] ? owner : NULL, sel, &w, &err);
    const store_obj **arr = NULL;
    if (rc == 0 && w.n) {
        arr = lua_newuserdatauv(L, w.n * sizeof *arr, 0); /* [.., tmp] (cannot leak) */
        size_t count = w.n;
        memset(&w, 0, sizeof w);
        w.out = arr;
        walk_store(st, ns, selector, owner[0] ? owner : NULL, sel, &w, &err);
        if (w.n > count)
            w.n = count;
    }
    label_selector_free(sel);
    if (rc != 0)
        return luaL_error(L, "ctx:list: %s", err.msg);
    lua_createtable(L, (int)w.n, 0);                     /* [.., tmp?, list] */
    for (size_t i = 0; i < w.n; i++) {
        push_cached(L, arr[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_json_mark_array(L, -1);
    return 1;
}

/* ---- methods: API writes ---- */

static int l_create(lua_State *L)
{
    lua_ctx *c = check_ctx(L);
    read_target(L, c, 2, 0, "ctx:create");
    read_write_opts(L, c, 3, "ctx:create");
    c->req_name[0] = '\0'; /* POST to the collection */
    encode_arg(L, c, 2, "ctx:create");
    c->verb = V_CREATE;
    return op_begin(L, c, start_kube, "create");
}

static int l_update(lua_State *L)
{
    lua_ctx *c = check_ctx(L);
    read_target(L, c, 2, 1, "ctx:update");
    read_write_opts(L, c, 3, "ctx:update");
    encode_arg(L, c, 2, "ctx:update");
    c->verb = V_UPDATE;
    return op_begin(L, c, start_kube, "update");
}

static int l_patch(lua_State *L)
{
    lua_ctx *c = check_ctx(L);
    read_target(L, c, 2, 1, "ctx:patch");
    luaL_checkany(L, 3);
    read_write_opts(L, c, 4, "ctx:patch");
    if (lua_istable(L, 4)) {
        char type[16] = "";
        copy_field(L, 4, "type", type, sizeof type, "ctx:patch");
        copy_field(L, 4, "subresource", c->subresource, sizeof c->subresource, "ctx:patch");
        if (!type[0] || !strcmp(type, "merge"))
            c->ptype = KUBE_PATCH_MERGE;
        else if (!strcmp(type, "json"))
            c->ptype = KUBE_PATCH_JSON;
        else if (!strcmp(type, "apply"))
            c->ptype = KUBE_PATCH_APPLY;
        else if (!strcmp(type, "strategic"))
            c->ptype = KUBE_PATCH_STRATEGIC;
        else
            return luaL_error(L, "ctx:patch: type must be \"merge\", \"json\", \"apply\" or "
                                 "\"strategic\" (got \"%s\")", type);
    }
    if (lua_type(L, 3) == LUA_TSTRING) {
        size_t n;
        const char *p = lua_tolstring(L, 3, &n);
        kl_buf_append(&c->body, p, n);
    } else {
        luaL_checktype(L, 3, LUA_TTABLE);
        encode_arg(L, c, 3, "ctx:patch");
    }
    c->verb = V_PATCH;
    return op_begin(L, c, start_kube, "patch");
}

static int l_apply(lua_State *L)
{
    lua_ctx *c = check_ctx(L);
    read_target(L, c, 2, 1, "ctx:apply");
    c->force = 1;
    if (lua_istable(L, 3)) {
        copy_field(L, 3, "field_manager", c->field_manager, sizeof c->field_manager, "ctx:apply");
        if (lua_getfield(L, 3, "force") != LUA_TNIL)
            c->force = lua_toboolean(L, -1);
        lua_getfield(L, 3, "dry_run");
        c->dry_run = lua_toboolean(L, -1);
        lua_pop(L, 2);
    }
    encode_arg(L, c, 2, "ctx:apply");
    c->ptype = KUBE_PATCH_APPLY;
    c->verb = V_PATCH;
    return op_begin(L, c, start_kube, "apply");
}

static int l_delete(lua_State *L)
{
    lua_ctx *c = check_ctx(L);
    read_target(L, c, 2, 1, "ctx:delete");
    if (lua_istable(L, 3)) {
        copy_field(L, 3, "propagation", c->propagation, sizeof c->propagation, "ctx:delete");
        copy_field(L, 3, "uid", c->pre_uid, sizeof c->pre_uid, "ctx:delete");
        copy_field(L, 3, "resource_version", c->pre_rv, sizeof c->pre_rv, "ctx:delete");
    }
    c->verb = V_DELETE;
    return op_begin(L, c, start_kube, "delete");
}

/* Status patches go to the status subresource when the resource has one. */
static void start_status(lua_ctx *c)
{
    if (!c->s->kc) {
        start_kube(c);
        return;
    }
    c->r = resolve_now(c, NULL);
    if (c->r && c->r->has_status)
        snprintf(c->subresource, sizeof c->subresource, "status");
    start_kube(c);
}

static int l_patch_status(lua_State *L)
{
    lua_ctx *c = check_ctx(L);
    read_target(L, c, 2, 1, "ctx:patch_status");
    luaL_checktype(L, 3, LUA_TTABLE);
    kl_buf_puts(&c->body, "{\"status\":");
    kl_err err = {0};
    if (lua_json_encode(L, 3, &c->body, &err) != 0)
        return luaL_error(L, "ctx:patch_status: %s", err.msg);
    kl_buf_putc(&c->body, '}');
    c->ptype = KUBE_PATCH_MERGE;
    c->verb = V_PATCH;
    return op_begin(L, c, start_status, "patch_status");
}

/* ---- events ---- */

static void put_field(kl_buf *b, const char *key, const char *value, int comma)
{
    if (comma)
        kl_buf_putc(b, ',');
    json_escape_append(b, key, strlen(key));
    kl_buf_putc(b, ':');
    json_escape_append(b, value ? value : "", value ? strlen(value) : 0);
}

/* The note, cut to NOTE_MAX bytes on a UTF-8 boundary. */
static size_t note_len(const char *note)
{
    size_t n = strlen(note);
    if (n <= NOTE_MAX)
        return n;
    n = NOTE_MAX;
    while (n > 0 && ((unsigned char)note[n] & 0xC0) == 0x80)
        n--;
    return n;
}

static void build_event(kl_buf *b, const lua_ctx_shared *s, const lua_ctx_object_ref *o,
                        const char *type, const char *reason, const char *action, const char *note)
{
    struct timespec ts;
    char when[64], gen[300];
    clock_gettime(CLOCK_REALTIME, &ts);
    kl_rfc3339(&ts, 6, when, sizeof when);
    /* client-go's naming: "<name>.<unix nanoseconds in hex>" (generateName
     * would not validate with a trailing dot). */
    snprintf(gen, sizeof gen, "%.200s.%llx", o->name ? o->name : "object",
             (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec);
    const char *ns = o->ns && *o->ns ? o->ns : "default";
    kl_buf_puts(b, "{\"apiVersion\":\"events.k8s.io/v1\",\"kind\":\"Event\",\"metadata\":{");
    put_field(b, "name", gen, 0);
    put_field(b, "namespace", ns, 1);
    kl_buf_puts(b, "},\"regarding\":{");
    put_field(b, "apiVersion", o->api_version, 0);
    put_field(b, "kind", o->kind, 1);
    put_field(b, "name", o->name, 1);
    if (o->ns && *o->ns)
        put_field(b, "namespace", o->ns, 1);
    if (o->uid && *o->uid)
        put_field(b, "uid", o->uid, 1);
    if (o->rv && *o->rv)
        put_field(b, "resourceVersion", o->rv, 1);
    kl_buf_putc(b, '}');
    put_field(b, "reason", reason, 1);
    kl_buf_puts(b, ",\"note\":");
    json_escape_append(b, note ? note : "", note ? note_len(note) : 0);
    put_field(b, "type", type, 1);
    put_field(b, "action", action, 1);
    put_field(b, "reportingController", "klua.dev/klua", 1);
    put_field(b, "reportingInstance", s->hostname, 1);
    put_field(b, "eventTime", when, 1);
    kl_buf_putc(b, '}');
}

static char events_group[] = "events.k8s.io", events_version[] = "v1", events_name[] = "events",
            events_kind[] = "Event";
static const kube_resource events_res = {events_group, events_version, events_name, events_kind,
                                         1, 0};

static void on_event_posted(void *ud, kube_result *res)
{
    (void)ud;
    if (!kube_result_ok(res)) {
        char code[16];
        snprintf(code, sizeof code, "%ld", res->http_code);
        kl_log(KL_LOG_V1, "event not recorded", "code", code, "reason", res->reason, "message",
               res->message, NULL);
    }
}

void lua_ctx_post_event(lua_ctx_shared *s, const lua_ctx_object_ref *obj, const char *type,
                        const char *reason, const char *action, const char *note)
{
    if (!s->kc)
        return;
    kl_buf b = KL_BUF_INIT;
    build_event(&b, s, obj, type, reason, action, note);
    const char *ns = obj->ns && *obj->ns ? obj->ns : "default";
    if (b.data)
        kube_create(s->kc, &events_res, ns, b.data, b.len, NULL, on_event_posted, NULL);
    kl_buf_free(&b);
}

static void start_event(lua_ctx *c)
{
    if (!c->s->kc) {
        set_answer(c, 0, "ConnectionError", "no API server configured");
        finish(c);
        return;
    }
    c->call = kube_create(c->s->kc, &events_res, c->req_ns, c->body.data, c->body.len, NULL,
                          on_kube_done, c);
    if (!c->call) {
        set_answer(c, 0, "ConnectionError", "cannot start the API request");
        finish(c);
    }
}

static const char *opt_field(lua_State *L, int t, const char *k)
{
    return lua_getfield(L, t, k) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
}

static int l_event(lua_State *L)
{
    lua_ctx *c = check_ctx(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    const char *type = luaL_checkstring(L, 3);
    const char *reason = luaL_checkstring(L, 4);
    const char *note = luaL_optstring(L, 5, "");
    if (strcmp(type, "Normal") != 0 && strcmp(type, "Warning") != 0)
        return luaL_error(L, "ctx:event: type must be \"Normal\" or \"Warning\" (got \"%s\")", type);
    lua_ctx_object_ref o = {0};
    o.api_version = opt_field(L, 2, "apiVersion");
    o.kind = opt_field(L, 2, "kind");
    if (lua_getfield(L, 2, "metadata") == LUA_TTABLE) {
        int md = lua_gettop(L);
        o.ns = opt_field(L, md, "namespace");
        o.name = opt_field(L, md, "name");
        o.uid = opt_field(L, md, "uid");
        o.rv = opt_field(L, md, "resourceVersion");
    }
    if (!o.api_version || !o.kind || !o.name)
        return luaL_error(L, "ctx:event: obj needs apiVersion, kind and metadata.name");
    build_event(&c->body, c->s, &o, type, reason, "Reconcile", note);
    snprintf(c->req_ns, sizeof c->req_ns, "%s", o.ns && *o.ns ? o.ns : "default");
    c->verb = V_EVENT;
    return op_begin(L, c, start_event, "event");
}

/* ---- http ---- */

static void on_http_done(void *ud, http_response *resp)
{
    lua_ctx *c = ud;
    c->hreq = NULL;
    if (resp->curl_code != 0) {
        /* 28 is CURLE_OPERATION_TIMEDOUT */
        set_answer(c, 0, resp->curl_code == 28 ? "Timeout" : "ConnectionError", resp->error);
        finish(c);
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
    finish(c);
}

static void start_http(lua_ctx *c)
{
    if (!c->s->http) {
        set_answer(c, 0, "ConnectionError", "no HTTP client");
        finish(c);
        return;
    }
    http_request_opts o = {0};
    o.method = c->kind[0] ? c->kind : "GET";
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
        set_answer(c, 0, "ConnectionError", err.msg);
        finish(c);
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
    lua_ctx *c = check_ctx(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    copy_field(L, 2, "method", c->kind, sizeof c->kind, "ctx:http"); /* kind holds the method */
    for (char *p = c->kind; *p; p++)
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
    c->verb = V_HTTP;
    return op_begin(L, c, start_http, "http");
}

/* ---- sleep, time, environment ---- */

static void on_sleep_timer(loop *l, void *ud)
{
    (void)l;
    lua_ctx *c = ud;
    c->timer = 0;
    finish(c);
}

static void start_sleep(lua_ctx *c)
{
    c->timer = loop_timer_add(c->s->l, (uint64_t)c->timeout_ms, on_sleep_timer, c);
    if (!c->timer)
        finish(c);
}

static int l_sleep(lua_State *L)
{
    lua_ctx *c = check_ctx(L);
    lua_Number s = luaL_checknumber(L, 2);
    if (!(s >= 0 && s <= 86400))
        return luaL_error(L, "ctx:sleep: seconds must be between 0 and 86400");
    c->timeout_ms = (long)(s * 1000);
    c->verb = V_SLEEP;
    return op_begin(L, c, start_sleep, "sleep");
}

static int l_now(lua_State *L)
{
    const lua_ctx *c = luaL_checkudata(L, 1, CTX_MT);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9 + c->s->now_offset);
    return 1;
}

static int l_getenv(lua_State *L)
{
    luaL_checkudata(L, 1, CTX_MT);
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
    lua_ctx *c = luaL_checkudata(L, 1, CTX_MT);
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

/* ---- the object ---- */

static int ctx_index(lua_State *L)
{
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)  /* a method */
        return 1;
    lua_pop(L, 1);
    lua_getiuservalue(L, 1, 1);                          /* [ud, k, fields] */
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

static int ctx_newindex(lua_State *L)
{
    return luaL_error(L, "ctx is read-only");
}

static int ctx_gc(lua_State *L)
{
    lua_ctx *c = luaL_checkudata(L, 1, CTX_MT);
    lua_ctx_end(c);
    reset_request(c);
    kl_buf_free(&c->body);
    kl_buf_free(&c->selector);
    kl_buf_free(&c->rbody);
    kl_buf_free(&c->rheaders);
    return 0;
}

static int ctx_tostring(lua_State *L)
{
    lua_ctx *c = luaL_checkudata(L, 1, CTX_MT);
    lua_pushfstring(L, "ctx(%s %s%s%s)", c->controller, c->ns, c->ns[0] ? "/" : "", c->name);
    return 1;
}

static const luaL_Reg ctx_methods[] = {
    {"get", l_get},       {"list", l_list},     {"create", l_create},
    {"update", l_update}, {"patch", l_patch},   {"apply", l_apply},
    {"delete", l_delete}, {"patch_status", l_patch_status},
    {"event", l_event},   {"http", l_http},     {"sleep", l_sleep},
    {"now", l_now},       {"getenv", l_getenv}, {"secret", l_secret},
    {NULL, NULL},
};

static const luaL_Reg log_funcs[] = {
    {"info", l_log_info}, {"warn", l_log_warn}, {"error", l_log_error}, {"debug", l_log_debug},
    {NULL, NULL},
};

lua_ctx *lua_ctx_push(lua_State *L, lua_ctx_shared *s, const lua_ctx_cache *cache,
                      const char *controller, const char *ns, const char *name,
                      void (*resume)(void *ud), void *ud)
{
    luaL_checkstack(L, 8, "ctx");
    lua_ctx *c = lua_newuserdatauv(L, sizeof *c, 1);     /* [c] */
    memset(c, 0, sizeof *c);
    c->s = s;
    if (cache)
        c->cache = *cache;
    c->resume = resume;
    c->resume_ud = ud;
    snprintf(c->controller, sizeof c->controller, "%s", controller);
    snprintf(c->ns, sizeof c->ns, "%s", ns ? ns : "");
    snprintf(c->name, sizeof c->name, "%s", name);
    if (luaL_newmetatable(L, CTX_MT)) {                  /* [c, mt] */
        luaL_newlib(L, ctx_methods);
        lua_pushcclosure(L, ctx_index, 1);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, ctx_newindex);
        lua_setfield(L, -2, "__newindex");
        lua_pushcfunction(L, ctx_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, ctx_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, "klua.Context");
        lua_setfield(L, -2, "__metatable");
    }
    lua_setmetatable(L, -2);                             /* [c] */
    lua_createtable(L, 0, 5);                            /* [c, fields] */
    if (c->ns[0])
        lua_pushfstring(L, "%s/%s", c->ns, c->name);
    else
        lua_pushstring(L, c->name);
    lua_setfield(L, -2, "key");
    lua_pushstring(L, c->ns);
    lua_setfield(L, -2, "namespace");
    lua_pushstring(L, c->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, c->controller);
    lua_setfield(L, -2, "controller");
    lua_createtable(L, 0, 4);                            /* [c, fields, log] */
    for (const luaL_Reg *f = log_funcs; f->name; f++) {
        lua_pushvalue(L, -3);   /* the ctx itself: a stored ctx.log keeps it alive */
        lua_pushcclosure(L, f->func, 1);
        lua_setfield(L, -2, f->name);
    }
    lua_setfield(L, -2, "log");
    lua_setiuservalue(L, -2, 1);                         /* [c] */
    return c;
}

void lua_ctx_bind(lua_ctx *c, lua_State *co) { c->co = co; }

void lua_ctx_end(lua_ctx *c)
{
    cancel_pending(c);
    c->ended = 1;
    c->co = NULL;
}

int lua_ctx_waiting(const lua_ctx *c) { return c->waiting; }
