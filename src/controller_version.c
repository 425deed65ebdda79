/* controller_version.c - one loaded version of a controller's script (see
 * controller_version.h).
 *
 * Provides: controller_version_new/free.
 * Uses: lua_host (lua_host_call, lua_host_load_internal), luamods
 * (klua.runner's source), err.
 */
#include "controller_version.h"

#include "luamods.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define RUNNER_MODULE "klua.runner"

typedef struct runner_setup {
    controller_version *v;
    const char *finalizer;
} runner_setup;

static int function_line(lua_State *L, int ref)
{
    if (ref == LUA_NOREF)
        return 0;
    lua_Debug ar;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    return lua_getinfo(L, ">S", &ar) ? ar.linedefined : 0;
}

static const struct klua_luamod *runner_module(void)
{
    for (const struct klua_luamod *m = klua_luamods; m->name; m++)
        if (!strcmp(m->name, RUNNER_MODULE))
            return m;
    return NULL;
}

/* Protected: load klua.runner privately and keep runner.new(reconcile,
 * finalize, finalizer) in the registry. */
static int setup_runner(lua_State *L)
{
    runner_setup *s = lua_touserdata(L, 1);
    controller_version *v = s->v;
    const struct klua_luamod *m = runner_module();
    if (!m)
        return luaL_error(L, "%s is not compiled in", RUNNER_MODULE);
    if (lua_host_load_internal(v->h, L, m->src, m->len, m->chunkname) != LUA_OK)
        return lua_error(L);
    lua_call(L, 0, 1);                                   /* [ud, M] */
    if (lua_getfield(L, -1, "new") != LUA_TFUNCTION)     /* [ud, M, new] */
        return luaL_error(L, "%s: no function new", RUNNER_MODULE);
    lua_rawgeti(L, LUA_REGISTRYINDEX, v->decl->reconcile_ref);
    if (v->decl->has_finalize)
        lua_rawgeti(L, LUA_REGISTRYINDEX, v->decl->finalize_ref);
    else
        lua_pushnil(L);
    lua_pushstring(L, s->finalizer);                     /* [ud, M, new, rec, fin, name] */
    lua_call(L, 3, 1);                                   /* [ud, M, runner] */
    v->runner_ref = luaL_ref(L, LUA_REGISTRYINDEX);      /* [ud, M] */
    v->reconcile_line = function_line(L, v->decl->reconcile_ref);
    v->finalize_line = function_line(L, v->decl->finalize_ref);
    return 0;
}

controller_version *controller_version_new(lua_host *h, const char *finalizer, kl_err *err)
{
    controller_version *v = calloc(1, sizeof *v);
    if (!v) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    v->h = h;
    v->decl = lua_host_decl(h);
    v->runner_ref = LUA_NOREF;
    runner_setup rs = {v, finalizer};
    if (lua_host_call(h, setup_runner, &rs, err) != LUA_OK) {
        free(v);
        return NULL;
    }
    return v;
}

void controller_version_free(controller_version *v, int keep_host)
{
    if (!v)
        return;
    if (v->runner_ref != LUA_NOREF)
        luaL_unref(lua_host_state(v->h), LUA_REGISTRYINDEX, v->runner_ref);
    if (!keep_host)
        lua_host_free(v->h);
    free(v);
}
