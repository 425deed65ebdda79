/* lua_ctx_kube.h - the ctx's Kubernetes methods.
 *
 * Provides: the methods get, list (cache reads, or API reads for kinds not
 * cached), create, update, patch, apply, delete, patch_status and event,
 * as a luaL_Reg table for the Context metatable.
 * Uses: lua_ctx_op (plumbing), lua_ctx_discovery (resources), event,
 * rest/kube, store/labels (cache reads), lua_json.
 */
#ifndef KLUA_LUA_CTX_KUBE_H
#define KLUA_LUA_CTX_KUBE_H

#include <lauxlib.h>

extern const luaL_Reg lua_ctx_kube_methods[];

#endif
