/* lua_decl_cache.h - the `cache` key of a controller declaration.
 *
 * Provides: lua_decl_cache_read(), which reads
 *     cache = { managed_fields = true, keep = { "spec", "metadata.labels" } }
 * (both keys optional) into a store_transform: what the informer keeps of
 * each object of the watched kind. Without the key, metadata.managedFields
 * is dropped and everything else kept.
 * Uses: store_transform, Lua.
 */
#ifndef KLUA_LUA_DECL_CACHE_H
#define KLUA_LUA_DECL_CACHE_H

#include "store_transform.h"

#include <lua.h>

/* Reads field "cache" of the table at index t into *out (cleared first).
 * 0 when absent or valid; -1 with a one-line message in msg otherwise
 * (*out is then cleared). */
int lua_decl_cache_read(lua_State *L, int t, store_transform *out, char *msg, size_t msglen);

#endif
