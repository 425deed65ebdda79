/* lua_ctx_kube.c - the ctx's Kubernetes methods (see lua_ctx_kube.h).
 *
 * Provides: lua_ctx_kube_methods.
 * Uses: lua_ctx_op (the call in flight, argument helpers), lua_ctx_discovery
 * (resources), event (ctx:event), rest/kube (API calls), store/labels
 * (cache reads), lua_json (objects in and out).
 *
 * Reads of a watched or owned kind come from the informer's store, each a
 * fresh decoded copy; other reads and every write go to the API server.
 */
#include "lua_ctx_kube.h"

#include "event.h"
#include "labels.h"
#include "log.h"
#include "lua_ctx_discovery.h"
#include "lua_ctx_op.h"
#include "lua_ctx_secret.h"
#include "lua_json.h"
#include "rywcache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ctx:event's reason and note are cut here before building (the note is
 * cut again to 1 KB by event_build). ctx:event does not wait. */
#define EVENT_TEXT_MAX 4096

enum kube_op { OP_NONE, OP_GET, OP_LIST, OP_CREATE, OP_UPDATE, OP_PATCH, OP_DELETE };

/* ---- the API call ---- */

/* Tell the tap (klua run --record, klua replay) about a write. */
static void tap_write(lua_ctx *c)
{
    static const char *const methods[] = {"", "GET", "GET", "POST", "PUT", "PATCH", "DELETE"};
    const kube_resource *r = c->r;
    char av[256];
    snprintf(av, sizeof av, "%s%s%s", r->group, *r->group ? "/" : "", r->version);
    lua_ctx_action a = {0};
    a.controller = c->controller;
    a.ns = c->ns;
    a.name = c->name;
    a.method = methods[c->op];
    a.api_version = av;
    a.kind = r->kind;
    a.target_ns = r->namespaced ? (c->req_ns[0] ? c->req_ns : c->ns) : "";
    a.target_name = c->req_name;
    a.subresource = c->subresource;
    a.content_type = c->op == OP_PATCH ? kube_patch_content_type(c->ptype) : "application/json";
    a.body = c->op == OP_DELETE ? "" : (c->body.data ? c->body.data : "");
    a.body_len = c->op == OP_DELETE ? 0 : c->body.len;
    a.code = c->code;
    a.resp_body = c->rbody.data;
    a.resp_len = c->rbody.len;
    c->s->tap(c->s->tap_ud, &a);
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
        lua_ctx_set_answer(c, 0, "ConnectionError", "out of memory reading the answer");
    if (c->s->tap && c->op >= OP_CREATE && c->op <= OP_DELETE)
        tap_write(c);
    lua_ctx_finish(c);
}

static void start_call(lua_ctx *c)
{
    lua_ctx_shared *s = c->s;
    const kube_resource *r = c->r;
    /* get and writes default to the reconciled object's namespace; a list
     * without one spans all namespaces, as a cached list does. */
    const char *ns = !r->namespaced ? NULL
                     : c->req_ns[0] ? c->req_ns
                     : c->op == OP_LIST ? NULL : c->ns;
    const char *name = c->req_name[0] ? c->req_name : NULL;
    kube_write_opts wo = {c->field_manager[0] ? c->field_manager : "klua", c->force, c->dry_run,
                          c->subresource[0] ? c->subresource : NULL};
    const char *body = c->body.data ? c->body.data : "";
    const store *st = NULL;
    if (c->op >= OP_CREATE && !c->dry_run && c->req_name[0] &&
        lua_ctx_resolve_now(c, &st) && st) {
        char key[STORE_KEY_MAX];        /* note what the watch brings meanwhile */
        store_key(key, sizeof key, ns, c->req_name);
        c->ryw = rywcache_begin(st, key);
    }
    switch (c->op) {
    case OP_GET:
        c->call = kube_get(s->kc, r, ns, name, NULL, on_kube_done, c);
        break;
    case OP_LIST: {
        kube_list_opts lo = {0};
        lo.label_selector = c->selector.len ? c->selector.data : NULL;
        c->call = kube_list(s->kc, r, ns, &lo, on_kube_done, c);
        break;
    }
    case OP_CREATE:
        c->call = kube_create(s->kc, r, ns, body, c->body.len, &wo, on_kube_done, c);
        break;
    case OP_UPDATE:
        c->call = kube_update(s->kc, r, ns, name, body, c->body.len, &wo, on_kube_done, c);
        break;
    case OP_PATCH:
        c->call = kube_patch(s->kc, r, ns, name, c->ptype, body, c->body.len, &wo, on_kube_done, c);
        break;
    case OP_DELETE: {
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
        lua_ctx_set_answer(c, 0, "ConnectionError", "cannot start the API request");
        lua_ctx_finish(c);
    }
}

static void start_kube(lua_ctx *c)
{
    if (!c->s->kc) {
        lua_ctx_set_answer(c, 0, "ConnectionError", "no API server configured");
        lua_ctx_finish(c);
        return;
    }
    c->r = lua_ctx_resolve_now(c, NULL);
    if (c->r)
        start_call(c);
    else
        lua_ctx_resolve(c, start_call);
}

/* ---- pushing answers ---- */

/* A write returned: its answer overlays the cache for this process's reads
 * until the watch brings it (rywcache.h). Kinds without a cache need none. */
static void remember_write(lua_ctx *c, int ok)
{
    struct ryw_pending *p = c->ryw;
    c->ryw = NULL;
    const store *st = NULL;
    const kube_resource *r = NULL;
    if (c->op >= OP_CREATE && !c->dry_run)
        r = lua_ctx_resolve_now(c, &st);
    if (!st || !r || !(ok || (c->op == OP_DELETE && c->code == 404))) {
        rywcache_abandon(p);
        return;
    }
    /* The answer, decoded once: for the overlay and the controller's echo
     * book. A delete answers the object only while it is still there
     * (finalizers or a grace period); else the absence is recorded. */
    store_obj *o = NULL;
    kl_err err = {0};
    if (ok && c->rbody.len)
        o = store_obj_new(c->rbody.data, c->rbody.len, &err);
    int rc;
    if (c->op == OP_DELETE && !(o && o->deleting)) {
        char key[STORE_KEY_MAX];
        store_key(key, sizeof key, !r->namespaced ? NULL : c->req_ns[0] ? c->req_ns : c->ns,
                  c->req_name);
        rc = rywcache_record_delete(st, p, key, o ? o->uid : NULL);
        store_obj_free(o);
    } else if (o) {
        if (c->cache.wrote)
            c->cache.wrote(c->cache.ud, c->ns, c->name, o);
        rc = rywcache_record_obj(st, p, o);
    } else {
        rywcache_abandon(p);
        rc = c->rbody.len ? -1 : 0;   /* an answer that did not decode */
    }
    if (rc != 0)
        kl_log(KL_LOG_V1, "write not remembered for cached reads", "controller", c->controller,
               "kind", c->kind, "name", c->req_name, NULL);
}

static int push_kube_answer(lua_State *L, lua_ctx *c)
{
    int ok = c->code >= 200 && c->code < 300;
    if (c->raise)
        return luaL_error(L, "%s", c->message);
    remember_write(c, ok);
    if (c->op == OP_DELETE && (ok || c->code == 404)) {
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
    if (c->op != OP_LIST)
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


/* type = { apiVersion, kind } at arg */
static void read_type(lua_State *L, lua_ctx *c, int arg, const char *what)
{
    luaL_checktype(L, arg, LUA_TTABLE);
    lua_ctx_copy_field(L, arg, "apiVersion", c->api_version, sizeof c->api_version, what);
    lua_ctx_copy_field(L, arg, "kind", c->kind, sizeof c->kind, what);
    if (!c->api_version[0] || !c->kind[0])
        luaL_error(L, "%s: the type needs apiVersion and kind strings", what);
}

/* obj names its target: apiVersion, kind, metadata.namespace/name. */
static void read_target(lua_State *L, lua_ctx *c, int arg, int need_name, const char *what)
{
    read_type(L, c, arg, what);
    if (lua_getfield(L, arg, "metadata") == LUA_TTABLE) {
        int md = lua_gettop(L);
        lua_ctx_copy_field(L, md, "namespace", c->req_ns, sizeof c->req_ns, what);
        lua_ctx_copy_field(L, md, "name", c->req_name, sizeof c->req_name, what);
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
    lua_ctx_copy_field(L, arg, "field_manager", c->field_manager, sizeof c->field_manager, what);
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

/* opts.live at arg: 1 when the read must bypass the cache. */
static int read_live(lua_State *L, int arg, const char *what)
{
    if (lua_isnoneornil(L, arg))
        return 0;
    if (!lua_istable(L, arg))
        luaL_error(L, "%s: opts must be a table", what);
    int live = lua_getfield(L, arg, "live") != LUA_TNIL && lua_toboolean(L, -1);
    lua_pop(L, 1);
    return live;
}

static int l_get(lua_State *L)
{
    lua_ctx *c = lua_ctx_check(L);
    read_type(L, c, 2, "ctx:get");
    const char *ns = luaL_optstring(L, 3, NULL);
    const char *name = luaL_checkstring(L, 4);
    int live = read_live(L, 5, "ctx:get");
    const store *st = NULL;
    const kube_resource *r = lua_ctx_resolve_now(c, &st);
    if (ns && strlen(ns) >= sizeof c->req_ns)
        return luaL_error(L, "ctx:get: namespace too long");
    if (strlen(name) >= sizeof c->req_name)
        return luaL_error(L, "ctx:get: name too long");
    snprintf(c->req_ns, sizeof c->req_ns, "%s", ns ? ns : "");
    snprintf(c->req_name, sizeof c->req_name, "%s", name);
    if (st && r && !live) {
        char key[STORE_KEY_MAX];
        store_key(key, sizeof key, !r->namespaced ? NULL : c->req_ns[0] ? c->req_ns : c->ns,
                  name);
        const store_obj *o = NULL;
        if (!rywcache_lookup(st, key, &o))    /* our own write first */
            o = store_get(st, key);
        if (!o) {
            /* the same answer a live GET gives */
            char msg[700];
            snprintf(msg, sizeof msg, "%s \"%s\" not found", r->resource, name);
            lua_pushnil(L);
            lua_ctx_push_error(L, 404, "NotFound", msg);
            return 2;
        }
        push_cached(L, o);
        return 1;
    }
    c->op = OP_GET;
    return lua_ctx_op_begin(L, c, start_kube, push_kube_answer, "get");
}

typedef struct list_walk {
    const store *st;
    const char *ns;            /* NULL = every namespace */
    const label_selector *sel; /* NULL = every object */
    const char *owner;         /* an owner uid, or NULL */
    const store_obj **out;     /* NULL on the counting pass */
    size_t n;
} list_walk;

static int walk_matches(const list_walk *w, const store_obj *o)
{
    if (w->ns && strcmp(o->ns, w->ns) != 0)
        return 0;
    if (w->sel && !label_selector_matches(w->sel, o->labels, o->nlabels))
        return 0;
    if (w->owner) {
        for (size_t i = 0; i < o->nowners; i++)
            if (!strcmp(o->owner_uids[i], w->owner))
                return 1;
        return 0;
    }
    return 1;
}

static void walk_emit(list_walk *w, const store_obj *o)
{
    if (w->out)
        w->out[w->n] = o;
    w->n++;
}

/* A cached object, or what this process wrote over it (rywcache). */
static int list_visit(void *ud, const store_obj *o)
{
    list_walk *w = ud;
    const store_obj *mine = NULL;
    if (!rywcache_lookup(w->st, o->key, &mine))
        mine = o;
    else if (!mine || !walk_matches(w, mine))
        return 0;                /* deleted by us, or no longer selected */
    if (walk_matches(w, o))
        walk_emit(w, mine);
    return 0;
}

/* Objects this process wrote that the store has not (or not as selected). */
static int overlay_visit(void *ud, const store_obj *mine)
{
    list_walk *w = ud;
    const store_obj *cached = store_get(w->st, mine->key);
    if (walk_matches(w, mine) && !(cached && walk_matches(w, cached)))
        walk_emit(w, mine);
    return 0;
}

/* Two passes (count, then fill a Lua-owned array) so that no C allocation
 * is pending when decoding raises. */
static void walk_store(list_walk *w, const char *selector)
{
    kl_err err = {0};
    if (w->owner)
        store_each_owned_by(w->st, w->owner, list_visit, w);
    else if (selector)           /* the label index; parsed already, so it cannot fail */
        (void)store_each_selected(w->st, w->ns, selector, list_visit, w, &err);
    else if (w->ns)
        store_each_in_namespace(w->st, w->ns, list_visit, w);
    else
        store_each(w->st, list_visit, w);
    rywcache_each(w->st, overlay_visit, w);
}

static int l_list(lua_State *L)
{
    lua_ctx *c = lua_ctx_check(L);
    read_type(L, c, 2, "ctx:list");
    char owner[128] = "";
    int live = read_live(L, 3, "ctx:list");
    if (!lua_isnoneornil(L, 3)) {
        lua_ctx_copy_field(L, 3, "namespace", c->req_ns, sizeof c->req_ns, "ctx:list");
        lua_ctx_copy_field(L, 3, "owner", owner, sizeof owner, "ctx:list");
        if (lua_getfield(L, 3, "selector") == LUA_TSTRING &&
            kl_buf_puts(&c->selector, lua_tostring(L, -1)) != 0)
            return luaL_error(L, "ctx:list: out of memory");
        lua_pop(L, 1);
    }
    const store *st = NULL;
    const kube_resource *r = lua_ctx_resolve_now(c, &st);
    if (!st || !r || live) {
        if (owner[0] && live)
            return luaL_error(L, "ctx:list: owner filtering reads the cache (not with live)");
        if (owner[0])
            return luaL_error(L, "ctx:list: owner filtering needs a watched or owned kind (%s)",
                              c->kind);
        c->op = OP_LIST;
        return lua_ctx_op_begin(L, c, start_kube, push_kube_answer, "list");
    }
    const char *selector = c->selector.len ? c->selector.data : NULL;
    label_selector *sel = NULL;
    kl_err err = {0};
    if (selector && label_selector_parse(selector, &sel, &err) != 0) {
        lua_pushnil(L);          /* what the API server answers a bad selector */
        lua_ctx_push_error(L, 400, "BadRequest", err.msg);
        return 2;
    }
    list_walk w = {st, c->req_ns[0] ? c->req_ns : NULL, sel, owner[0] ? owner : NULL, NULL, 0};
    walk_store(&w, selector);
    const store_obj **arr = NULL;
    if (w.n) {
        size_t count = w.n;
        /* [.., tmp]: Lua-owned, so a raise cannot leak it; sel is freed first */
        arr = lua_newuserdatauv(L, count * sizeof *arr, 0);
        w.out = arr;
        w.n = 0;
        walk_store(&w, selector);
        if (w.n > count)
            w.n = count;
    }
    label_selector_free(sel);
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
    lua_ctx *c = lua_ctx_check(L);
    read_target(L, c, 2, 0, "ctx:create");
    read_write_opts(L, c, 3, "ctx:create");
    /* POST to the collection; req_name (when not generateName) keys rywcache */
    encode_arg(L, c, 2, "ctx:create");
    c->op = OP_CREATE;
    return lua_ctx_op_begin(L, c, start_kube, push_kube_answer, "create");
}

static int l_update(lua_State *L)
{
    lua_ctx *c = lua_ctx_check(L);
    read_target(L, c, 2, 1, "ctx:update");
    read_write_opts(L, c, 3, "ctx:update");
    encode_arg(L, c, 2, "ctx:update");
    c->op = OP_UPDATE;
    return lua_ctx_op_begin(L, c, start_kube, push_kube_answer, "update");
}

static int l_patch(lua_State *L)
{
    lua_ctx *c = lua_ctx_check(L);
    read_target(L, c, 2, 1, "ctx:patch");
    luaL_checkany(L, 3);
    read_write_opts(L, c, 4, "ctx:patch");
    if (lua_istable(L, 4)) {
        char type[16] = "";
        lua_ctx_copy_field(L, 4, "type", type, sizeof type, "ctx:patch");
        lua_ctx_copy_field(L, 4, "subresource", c->subresource, sizeof c->subresource, "ctx:patch");
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
        if (kl_buf_append(&c->body, p, n) != 0)
            return luaL_error(L, "ctx:patch: out of memory");
    } else {
        luaL_checktype(L, 3, LUA_TTABLE);
        encode_arg(L, c, 3, "ctx:patch");
    }
    c->op = OP_PATCH;
    return lua_ctx_op_begin(L, c, start_kube, push_kube_answer, "patch");
}

static int l_apply(lua_State *L)
{
    lua_ctx *c = lua_ctx_check(L);
    read_target(L, c, 2, 1, "ctx:apply");
    c->force = 1;
    if (lua_istable(L, 3)) {
        lua_ctx_copy_field(L, 3, "field_manager", c->field_manager, sizeof c->field_manager, "ctx:apply");
        if (lua_getfield(L, 3, "force") != LUA_TNIL)
            c->force = lua_toboolean(L, -1);
        lua_getfield(L, 3, "dry_run");
        c->dry_run = lua_toboolean(L, -1);
        lua_pop(L, 2);
    }
    encode_arg(L, c, 2, "ctx:apply");
    c->ptype = KUBE_PATCH_APPLY;
    c->op = OP_PATCH;
    return lua_ctx_op_begin(L, c, start_kube, push_kube_answer, "apply");
}

static int l_delete(lua_State *L)
{
    lua_ctx *c = lua_ctx_check(L);
    read_target(L, c, 2, 1, "ctx:delete");
    if (lua_istable(L, 3)) {
        lua_ctx_copy_field(L, 3, "propagation", c->propagation, sizeof c->propagation, "ctx:delete");
        lua_ctx_copy_field(L, 3, "uid", c->pre_uid, sizeof c->pre_uid, "ctx:delete");
        lua_ctx_copy_field(L, 3, "resource_version", c->pre_rv, sizeof c->pre_rv, "ctx:delete");
    }
    c->op = OP_DELETE;
    return lua_ctx_op_begin(L, c, start_kube, push_kube_answer, "delete");
}

/* Status patches go to the status subresource when the resource has one. */
static void start_status(lua_ctx *c)
{
    if (!c->s->kc) {
        start_kube(c);
        return;
    }
    c->r = lua_ctx_resolve_now(c, NULL);
    if (c->r && c->r->has_status)
        snprintf(c->subresource, sizeof c->subresource, "status");
    start_kube(c);
}

static int l_patch_status(lua_State *L)
{
    lua_ctx *c = lua_ctx_check(L);
    read_target(L, c, 2, 1, "ctx:patch_status");
    luaL_checktype(L, 3, LUA_TTABLE);
    if (kl_buf_puts(&c->body, "{\"status\":") != 0)
        return luaL_error(L, "ctx:patch_status: out of memory");
    kl_err err = {0};
    if (lua_json_encode(L, 3, &c->body, &err) != 0)
        return luaL_error(L, "ctx:patch_status: %s", err.msg);
    if (kl_buf_putc(&c->body, '}') != 0)
        return luaL_error(L, "ctx:patch_status: out of memory");
    c->ptype = KUBE_PATCH_MERGE;
    c->op = OP_PATCH;
    return lua_ctx_op_begin(L, c, start_status, push_kube_answer, "patch_status");
}

/* ---- events ---- */

static const char *opt_field(lua_State *L, int t, const char *k)
{
    return lua_getfield(L, t, k) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
}

static int l_event(lua_State *L)
{
    lua_ctx *c = lua_ctx_check(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    const char *type = luaL_checkstring(L, 3);
    const char *reason = luaL_checkstring(L, 4);
    size_t note_len = 0;
    const char *note = luaL_optlstring(L, 5, "", &note_len);
    if (strcmp(type, "Normal") != 0 && strcmp(type, "Warning") != 0)
        return luaL_error(L, "ctx:event: type must be \"Normal\" or \"Warning\" (got \"%s\")", type);
    event_object o = {0};
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
    /* An Event is public: no secret value goes into it */
    reason = lua_ctx_push_redacted(L, c->s, reason, strlen(reason), EVENT_TEXT_MAX);
    note = lua_ctx_push_redacted(L, c->s, note, note_len, EVENT_TEXT_MAX);
    o.controller = c->controller;
    /* asynchronous: repeats become the first Event's series (event.h) */
    event_post(c->s->events, &o, type, reason, "Reconcile", note);
    return 0;
}

/* ---- owner references ---- */

/* A controller ownerReference to obj (controller-runtime's
 * SetControllerReference): put it in a child's metadata.ownerReferences so
 * that the child is garbage-collected with obj and `owns` maps it back. */
static int l_owner_reference(lua_State *L)
{
    luaL_checkudata(L, 1, LUA_CTX_MT);
    luaL_checktype(L, 2, LUA_TTABLE);
    static const char *const top[] = {"apiVersion", "kind"};
    static const char *const md[] = {"name", "uid"};
    lua_createtable(L, 0, 6);                            /* [.., ref] */
    for (int i = 0; i < 2; i++) {
        if (lua_getfield(L, 2, top[i]) != LUA_TSTRING)
            return luaL_error(L, "ctx:owner_reference: obj.%s must be a string", top[i]);
        lua_setfield(L, -2, top[i]);
    }
    if (lua_getfield(L, 2, "metadata") != LUA_TTABLE)   /* [.., ref, md] */
        return luaL_error(L, "ctx:owner_reference: obj.metadata must be a table");
    for (int i = 0; i < 2; i++) {
        if (lua_getfield(L, -1, md[i]) != LUA_TSTRING)
            return luaL_error(L, "ctx:owner_reference: obj.metadata.%s must be a string "
                                 "(an object read from the API server has both)", md[i]);
        lua_setfield(L, -3, md[i]);
    }
    lua_pop(L, 1);                                       /* [.., ref] */
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "controller");
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "blockOwnerDeletion");
    return 1;
}

const luaL_Reg lua_ctx_kube_methods[] = {
    {"owner_reference", l_owner_reference},
    {"get", l_get},       {"list", l_list},     {"create", l_create},
    {"update", l_update}, {"patch", l_patch},   {"apply", l_apply},
    {"delete", l_delete}, {"patch_status", l_patch_status},
    {"event", l_event},   {NULL, NULL},
};
