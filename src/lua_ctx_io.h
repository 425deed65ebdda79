/* lua_ctx_io.h - the ctx's I/O methods and ctx.log.
 *
 * Provides: the methods http, sleep, now, getenv and secret as a luaL_Reg
 * table for the Context metatable, and the ctx.log functions (info, warn,
 * error, debug; each a closure over its ctx as upvalue 1).
 * Uses: lua_ctx_op (plumbing), http, loop, log.
 */
#ifndef KLUA_LUA_CTX_IO_H
#define KLUA_LUA_CTX_IO_H

#include <lauxlib.h>

extern const luaL_Reg lua_ctx_io_methods[];
extern const luaL_Reg lua_ctx_log_funcs[];

#endif
