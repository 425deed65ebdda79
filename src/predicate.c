/* predicate.c - event filters and map functions (see predicate.h).
 *
 * Provides: predicate_passes, predicate_map.
 * Uses: lua_host (lua_host_call, tasks, lua_host_resume, lua_host_error),
 * lua_json (lua_json_push), json (structural comparison), store, err.
 *
 * The built-in filters parse both versions once and compare subtrees
 * token by token: scalars by their bytes, arrays element by element,
 * objects member by member whatever their order. A Lua function runs in a
 * task of its own that must finish without waiting.
 */
#include "predicate.h"

#include "json.h"
#include "lua_json.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

/* ---- structural comparison ---- */

static int raw_eq(const json_doc *da, int a, const json_doc *db, int b)
{
    size_t la, lb;
    const char *ra = json_raw(da, a, &la), *rb = json_raw(db, b, &lb);
    return la == lb && memcmp(ra, rb, la) == 0;
}

/* The member of object obj in d whose key has the raw bytes of key tok k
 * in dk, or -1. */
static int member(const json_doc *d, int obj, const json_doc *dk, int k)
{
    for (int key = json_first(d, obj); key >= 0; key = json_next(d, key + 1))
        if (raw_eq(d, key, dk, k))
            return key + 1;
    return -1;
}

static int tok_equal(const json_doc *da, int a, const json_doc *db, int b)
{
    if (a < 0 || b < 0)
        return a < 0 && b < 0;
    const json_tok *ta = &da->toks[a], *tb = &db->toks[b];
    if (ta->type != tb->type || ta->size != tb->size)
        return 0;
    if (ta->type == JSON_ARRAY) {
        for (int x = json_first(da, a), y = json_first(db, b); x >= 0;
             x = json_next(da, x), y = json_next(db, y))
            if (!tok_equal(da, x, db, y))
                return 0;
        return 1;
    }
    if (ta->type == JSON_OBJECT) {
        for (int k = json_first(da, a); k >= 0; k = json_next(da, k + 1))
            if (!tok_equal(da, k + 1, db, member(db, b, da, k)))
                return 0;
        return 1;
    }
    return raw_eq(da, a, db, b);
}

static int path_equal(const json_doc *da, const json_doc *db, const char *path)
{
    return tok_equal(da, json_path(da, 0, path), db, json_path(db, 0, path));
}

static int key_is(const json_doc *d, int k, const char *s)
{
    return json_str_eq(d, k, s);
}

/* Every member of object a (in da) but those skipped equals its namesake
 * in b, and b has no member a lacks (other than skipped ones). */
static int object_equal_except(const json_doc *da, int a, const json_doc *db, int b,
                               const char *const *skip)
{
    if (a < 0 || b < 0)
        return a < 0 && b < 0;
    if (da->toks[a].type != JSON_OBJECT || db->toks[b].type != JSON_OBJECT)
        return tok_equal(da, a, db, b);
    for (int pass = 0; pass < 2; pass++) {
        const json_doc *dx = pass ? db : da, *dy = pass ? da : db;
        int x = pass ? b : a, y = pass ? a : b;
        for (int k = json_first(dx, x); k >= 0; k = json_next(dx, k + 1)) {
            int skipped = 0;
            for (const char *const *s = skip; *s && !skipped; s++)
                skipped = key_is(dx, k, *s);
            if (skipped)
                continue;
            int other = member(dy, y, dx, k);
            if (other < 0 || (!pass && !tok_equal(dx, k + 1, dy, other)))
                return 0;
        }
    }
    return 1;
}

static int changed(const json_doc *da, const json_doc *db)
{
    static const char *const top_skip[] = {"status", "metadata", NULL};
    static const char *const md_skip[] = {"resourceVersion", "managedFields", NULL};
    return !object_equal_except(da, 0, db, 0, top_skip) ||
           !object_equal_except(da, json_obj_get(da, 0, "metadata"), db,
                                json_obj_get(db, 0, "metadata"), md_skip);
}

static int builtin_passes(unsigned bits, const store_obj *old, const store_obj *cur)
{
    if (bits & LUA_PRED_ANY)
        return 1;
    if ((bits & LUA_PRED_GENERATION) &&
        (old->generation != cur->generation || old->deleting != cur->deleting))
        return 1;
    json_doc da = {0}, db = {0};
    int pass = 1;   /* what cannot be compared goes through */
    if (json_parse(&da, old->json, old->json_len, NULL) != 0 ||
        json_parse(&db, cur->json, cur->json_len, NULL) != 0)
        goto out;
    pass = ((bits & LUA_PRED_CHANGED) && changed(&da, &db)) ||
           ((bits & LUA_PRED_GENERATION) &&
            (!path_equal(&da, &db, "metadata.deletionTimestamp") ||
             !path_equal(&da, &db, "metadata.finalizers"))) ||
           ((bits & LUA_PRED_LABELS) && !path_equal(&da, &db, "metadata.labels")) ||
           ((bits & LUA_PRED_ANNOTATIONS) && !path_equal(&da, &db, "metadata.annotations"));
out:
    json_doc_free(&da);
    json_doc_free(&db);
    return pass;
}

/* ---- Lua functions ---- */

typedef struct call {
    int fn_ref;
    const store_obj *args[2];
    int nargs;
    lua_State *co;
    int co_ref;
} call;

/* Protected: a task holding fn and its arguments. */
static int setup_call(lua_State *L)
{
    call *c = lua_touserdata(L, 1);
    c->co = lua_newthread(L);                              /* [ud, co] */
    c->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);            /* [ud] */
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->fn_ref);          /* [ud, fn] */
    for (int i = 0; i < c->nargs; i++) {
        kl_err e = {0};
        if (lua_json_push(L, c->args[i]->json, c->args[i]->json_len, &e) != 0)
            return luaL_error(L, "cached object %s: %s", c->args[i]->key, e.msg);
    }                                                      /* [ud, fn, args...] */
    lua_xmove(L, c->co, c->nargs + 1);                     /* co: [fn, args...] */
    return 0;
}

/* Run the call to its end; on LUA_OK its *nres results are on c->co. */
static int run_call(lua_host *h, call *c, const char *what, int *nres, kl_err *err)
{
    c->co = NULL;
    c->co_ref = LUA_NOREF;
    if (lua_host_call(h, setup_call, c, err) != LUA_OK) {
        if (c->co_ref != LUA_NOREF)
            lua_host_task_release(h, c->co, c->co_ref);
        c->co_ref = LUA_NOREF;
        return kl_err_wrap(err, "%s: %s", lua_host_path(h), what);
    }
    lua_host_budget b = {0};
    int st = lua_host_resume(h, c->co, c->nargs, nres, &b);
    if (st == LUA_OK)
        return 0;
    if (st == LUA_YIELD)
        return kl_err_set(err, KL_EINVAL, "%s: %s waited (it must return at once: no ctx calls, "
                                          "no coroutine.yield)", lua_host_path(h), what);
    char msg[512];
    lua_host_error(h, c->co, st, &b, msg, sizeof msg);
    return kl_err_set(err, KL_EINVAL, "%s: %s", what, msg);
}

static void end_call(lua_host *h, call *c)
{
    if (c->co_ref != LUA_NOREF)
        lua_host_task_release(h, c->co, c->co_ref);
}

static int lua_passes(lua_host *h, int fn_ref, const store_obj *old, const store_obj *cur,
                      kl_err *err)
{
    call c = {fn_ref, {old, cur}, 2, NULL, LUA_NOREF};
    int nres = 0, pass = 1;
    if (run_call(h, &c, "predicate", &nres, err) == 0) {
        int t = lua_gettop(c.co) - nres + 1;
        if (nres >= 1 && lua_type(c.co, t) == LUA_TBOOLEAN)
            pass = lua_toboolean(c.co, t);
        else
            kl_err_set(err, KL_EINVAL, "%s: predicate returned %s, not a boolean",
                       lua_host_path(h), nres ? luaL_typename(c.co, t) : "nothing");
    }
    end_call(h, &c);
    return pass;
}

int predicate_passes(lua_host *h, const lua_predicate *p, const store_obj *old,
                     const store_obj *cur, kl_err *err)
{
    if (!old || !cur)
        return 1;
    if (p->fn_ref != LUA_NOREF && p->fn_ref != LUA_REFNIL)
        return lua_passes(h, p->fn_ref, old, cur, err);
    return builtin_passes(p->bits, old, cur);
}

int predicate_map(lua_host *h, int map_ref, const store_obj *obj,
                  void (*emit)(void *ud, const char *key), void *ud, kl_err *err)
{
    call c = {map_ref, {obj, NULL}, 1, NULL, LUA_NOREF};
    int nres = 0, n = -1;
    if (run_call(h, &c, "map", &nres, err) != 0)
        goto out;
    lua_State *co = c.co;
    int t = lua_gettop(co) - nres + 1;
    if (nres >= 1 && lua_isnil(co, t)) {
        n = 0;   /* nil: no keys */
        goto out;
    }
    if (nres < 1 || lua_type(co, t) != LUA_TTABLE) {
        kl_err_set(err, KL_EINVAL, "%s: map returned %s, not a list of keys (\"ns/name\")",
                   lua_host_path(h), nres ? luaL_typename(co, t) : "nothing");
        goto out;
    }
    size_t len = lua_rawlen(co, t);
    if (len > PREDICATE_MAP_MAX) {
        kl_err_set(err, KL_EINVAL, "%s: map returned %zu keys (at most %d)", lua_host_path(h),
                   len, PREDICATE_MAP_MAX);
        goto out;
    }
    for (size_t i = 1; i <= len; i++) {
        int ty = lua_rawgeti(co, t, (lua_Integer)i);
        lua_pop(co, 1);
        if (ty != LUA_TSTRING) {
            kl_err_set(err, KL_EINVAL, "%s: map returned a list whose item %zu is a %s, not a "
                                       "key (\"ns/name\")", lua_host_path(h), i,
                       lua_typename(co, ty));
            goto out;
        }
    }
    for (size_t i = 1; i <= len; i++) {
        lua_rawgeti(co, t, (lua_Integer)i);
        const char *k = lua_tostring(co, -1);
        if (k && *k)
            emit(ud, k);
        lua_pop(co, 1);
    }
    n = (int)len;
out:
    end_call(h, &c);
    return n;
}
