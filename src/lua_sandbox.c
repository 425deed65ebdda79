/* lua_sandbox.c - the safe standard library, read-only library views and
 * module environments (see lua_sandbox.h).
 * Uses: lua_guard, lua_host_int, log, Lua.
 */
#include "lua_sandbox.h"

#include "log.h"
#include "lua_guard.h"
#include "lua_host_int.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

static char base_key;            /* registry: the pristine globals (modules' __index) */
static char readonly_key;        /* registry: weak set of read-only library views */

static int host_print(lua_State *L)
{
    lua_host *h = lua_host_of(L);
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        luaL_tolstring(L, i, NULL);
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    kl_log(KL_LOG_INFO, "print", "script", h->path ? h->path : "?", "msg", lua_tostring(L, -1),
           NULL);
    return 0;
}

/* warn(msg1, ...): Lua's warn, reported with the caller's file:line.
 * Control messages ("@on", "@off") are accepted and ignored. */
static int host_warn(lua_State *L)
{
    lua_host *h = lua_host_of(L);
    int n = lua_gettop(L);
    luaL_checkstring(L, 1);
    for (int i = 2; i <= n; i++)
        luaL_checkstring(L, i);
    if (n == 1 && lua_tostring(L, 1)[0] == '@')
        return 0;
    lua_concat(L, n);
    char where[256];
    if (!lua_host_where(L, 1, where, sizeof where))
        snprintf(where, sizeof where, "%s", h->path ? h->path : "?");
    lua_host_warning(h, where, lua_tostring(L, -1));
    return 0;
}

static int is_readonly(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE)
        return 0;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &readonly_key);
    lua_pushvalue(L, idx);
    int ro = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 2);
    return ro;
}

static int safe_rawset(lua_State *L)
{
    if (is_readonly(L, 1))
        return luaL_error(L, "rawset: klua's library tables are read-only");
    return lua_guard_call_original(L);
}

static int ro_newindex(lua_State *L)
{
    return luaL_error(L, "%s is read-only in klua (klua's modules use it too); keep your own "
                         "functions in a local table", lua_tostring(L, lua_upvalueindex(1)));
}

/* The iterator of pairs() over a view: walks the library table (upvalue)
 * without handing it out. */
static int ro_next(lua_State *L)
{
    lua_settop(L, 2);
    if (lua_next(L, lua_upvalueindex(1)))
        return 2;
    lua_pushnil(L);
    return 1;
}

static int ro_pairs(lua_State *L)
{
    lua_getmetatable(L, 1);                              /* [view, mt] */
    lua_getfield(L, -1, "__index");                      /* [view, mt, lib] */
    lua_pushcclosure(L, ro_next, 1);                     /* [view, mt, next] */
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* Replace the table at the top with an empty view of it: reads go to the
 * table, writes raise, the metatable is hidden. Registers the view in the
 * read-only set (rawset refuses it). */
static void make_readonly(lua_State *L, const char *name)
{
    /* [lib] */
    lua_newtable(L);                                     /* [lib, view] */
    lua_createtable(L, 0, 4);                            /* [lib, view, mt] */
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "__index");
    lua_pushstring(L, name);
    lua_pushcclosure(L, ro_newindex, 1);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, ro_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);                             /* [lib, view] */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &readonly_key);    /* [lib, view, set] */
    lua_pushvalue(L, -2);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    lua_remove(L, -2);                                   /* [view] */
}

/* Push a fresh environment for a module or klua's own code: its own
 * globals, falling back to the pristine ones (which it cannot change). */
static void push_private_env(lua_State *L)
{
    lua_createtable(L, 0, 2);                            /* [env] */
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "_G");
    lua_createtable(L, 0, 2);                            /* [env, mt] */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &base_key);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);                             /* [env] */
}

/* Give the function at the top (a main chunk) a private environment. */
void lua_sandbox_set_private_env(lua_State *L)
{
    push_private_env(L);
    if (!lua_setupvalue(L, -2, 1))                       /* _ENV is a main chunk's upvalue 1 */
        lua_pop(L, 1);
}

int lua_host_load_internal(lua_host *h, lua_State *L, const char *src, size_t len,
                           const char *chunkname)
{
    (void)h;
    int st = luaL_loadbufferx(L, src, len, chunkname, "t");
    if (st == LUA_OK)
        lua_sandbox_set_private_env(L);
    return st;
}

int lua_sandbox_open(lua_State *L)
{
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},       {LUA_COLIBNAME, luaopen_coroutine},
        {LUA_TABLIBNAME, luaopen_table}, {LUA_STRLIBNAME, luaopen_string},
        {LUA_MATHLIBNAME, luaopen_math}, {LUA_UTF8LIBNAME, luaopen_utf8},
        {NULL, NULL},
    };
    for (const luaL_Reg *l = libs; l->func; l++) {
        luaL_requiref(L, l->name, l->func, 1);
        lua_pop(L, 1);
    }
    /* os: only the clock functions. */
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);      /* [os] */
    lua_createtable(L, 0, 4);                            /* [os, safe] */
    static const char *const os_keep[] = {"time", "clock", "date", "difftime", NULL};
    for (const char *const *k = os_keep; *k; k++) {
        lua_getfield(L, -2, *k);
        lua_setfield(L, -2, *k);
    }
    lua_setglobal(L, LUA_OSLIBNAME);
    lua_pop(L, 1);

    lua_pushnil(L);
    lua_setglobal(L, "dofile");
    lua_pushnil(L);
    lua_setglobal(L, "loadfile");
    lua_guard_wrap_global(L, "rawset", safe_rawset);
    lua_pushcfunction(L, host_print);
    lua_setglobal(L, "print");
    lua_pushcfunction(L, host_warn);
    lua_setglobal(L, "warn");
    lua_guard_install(L);
    /* getmetatable("") returns false: the string metatable stays as is. */
    lua_pushliteral(L, "");
    if (lua_getmetatable(L, -1)) {                       /* ["", mt] */
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 0;
}

int lua_sandbox_seal(lua_State *L)
{
    /* Library tables become read-only views. */
    lua_newtable(L);                                     /* [set] */
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &readonly_key);
    static const char *const ro_libs[] = {LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME,
                                          LUA_UTF8LIBNAME, LUA_COLIBNAME, LUA_OSLIBNAME, NULL};
    for (const char *const *n = ro_libs; *n; n++) {
        lua_getglobal(L, *n);
        make_readonly(L, *n);
        lua_setglobal(L, *n);
    }

    /* The pristine globals, for modules and klua's own code: a copy, so that
     * the script reassigning its globals does not reach them. */
    lua_newtable(L);                                     /* [base] */
    lua_pushglobaltable(L);                              /* [base, G] */
    lua_pushnil(L);
    while (lua_next(L, -2)) {                            /* [base, G, k, v] */
        lua_pushvalue(L, -2);
        lua_insert(L, -2);                               /* [base, G, k, k, v] */
        lua_rawset(L, -5);
    }
    lua_pop(L, 1);                                       /* [base] */
    lua_pushnil(L);
    lua_setfield(L, -2, "_G");
    make_readonly(L, "_G");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &base_key);
    return 0;
}
