/* lua_require.c - `require` for scripts (see lua_require.h).
 * Uses: lua_sandbox, lua_deps, lua_json, luamods, lua_host_int, Lua.
 */
#include "lua_require.h"

#include "lua_deps.h"
#include "lua_host_int.h"
#include "lua_json.h"
#include "lua_sandbox.h"
#include "luamods.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

static char loaded_key;          /* registry: modules loaded by require */

static int valid_module_name(const char *s)
{
    if (!*s || *s == '.')
        return 0;
    for (const char *p = s; *p; p++) {
        if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.'))
            return 0;
        if (*p == '.' && (p[1] == '.' || p[1] == '\0'))
            return 0;
    }
    return 1;
}

/* Find a module's source: lib/ first, then klua's embedded modules.
 * Pushes the loaded chunk (with its own environment) and its file name,
 * or raises. */
static void load_module(lua_State *L, lua_host *h, const char *name)
{
    char rel[512], path[1024];
    size_t n = strlen(name);
    if (n >= sizeof rel)
        luaL_error(L, "module name '%s' is too long", name);
    for (size_t i = 0; i <= n; i++)
        rel[i] = name[i] == '.' ? '/' : name[i];
    const char *forms[] = {"%s/%s.lua", "%s/%s/init.lua"};
    for (size_t i = 0; i < 2 && h->libdir; i++) {
        snprintf(path, sizeof path, forms[i], h->libdir, rel);
        char *src = NULL;
        size_t len = 0;
        kl_err err = {0};
        if (lua_deps_read(path, &src, &len, &err) != 0) {
            if (err.code == KL_EIO && access(path, F_OK) != 0)
                continue;
            luaL_error(L, "cannot read module '%s': %s", name, err.msg);
        }
        if (lua_deps_add(h, path, src, len) != 0) {
            free(src);
            luaL_error(L, "cannot load module '%s': out of memory", name);
        }
        lua_pushfstring(L, "@%s", path);                 /* [chunkname] */
        int st = luaL_loadbufferx(L, src, len, lua_tostring(L, -1), "t");
        free(src);
        if (st != LUA_OK)
            lua_error(L);
        lua_remove(L, -2);                               /* [chunk] */
        lua_sandbox_set_private_env(L);
        lua_pushstring(L, path);                         /* [chunk, path] */
        return;
    }
    for (const struct klua_luamod *m = klua_luamods; m->name; m++) {
        if (strcmp(m->name, name) != 0)
            continue;
        if (luaL_loadbufferx(L, m->src, m->len, m->chunkname, "t") != LUA_OK)
            lua_error(L);
        lua_sandbox_set_private_env(L);
        lua_pushstring(L, m->chunkname + 1);
        return;
    }
    luaL_error(L, "module '%s' not found (looked in %s/%s.lua, %s/%s/init.lua and klua's modules)",
               name, h->libdir ? h->libdir : "lib", rel, h->libdir ? h->libdir : "lib", rel);
}

static int host_require(lua_State *L)
{
    lua_host *h = lua_host_of(L);
    const char *name = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    if (!valid_module_name(name))
        return luaL_error(L, "require: invalid module name '%s'", name);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &loaded_key);      /* [name, loaded] */
    lua_pushvalue(L, 1);
    int t = lua_rawget(L, 2);                            /* [name, loaded, mod] */
    if (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, -1) == &loaded_key)
        return luaL_error(L, "require: module '%s' requires itself (a loop)", name);
    if (t != LUA_TNIL)
        return 1;
    lua_pop(L, 1);
    if (strcmp(name, "klua.json") == 0) {
        luaopen_klua_json(L);                            /* [name, loaded, mod] */
    } else {
        load_module(L, h, name);                         /* [name, loaded, chunk, path] */
        lua_pushvalue(L, 1);
        lua_pushlightuserdata(L, &loaded_key);           /* "loading" mark */
        lua_rawset(L, 2);
        lua_pushvalue(L, 1);
        lua_insert(L, -2);                               /* [name, loaded, chunk, name, path] */
        int st = lua_pcall(L, 2, 1, 0);                  /* [name, loaded, mod|err] */
        if (st != LUA_OK) {
            lua_pushvalue(L, 1);
            lua_pushnil(L);
            lua_rawset(L, 2);
            return lua_error(L);
        }
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushboolean(L, 1);
        }
    }
    lua_pushvalue(L, 1);
    lua_pushvalue(L, -2);
    lua_rawset(L, 2);                                    /* loaded[name] = mod */
    return 1;
}

int lua_require_open(lua_State *L)
{
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &loaded_key);
    lua_pushcfunction(L, host_require);
    lua_setglobal(L, "require");
    return 0;
}
