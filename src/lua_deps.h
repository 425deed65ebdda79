/* lua_deps.h - the files a script's code came from (internal).
 *
 * Provides: lua_deps_read() (a script or module file, whole, up to
 * LUA_DEPS_MAX_SOURCE bytes) and lua_deps_add() (remember a file and a
 * hash of its bytes in the host). The public side (lua_host_deps,
 * lua_host_deps_changed, lua_host_file_hash, lua_host_deps_copy/free in
 * lua_host.h) is implemented here too: hot reload uses it to tell which
 * scripts a change affects.
 * Uses: lua_host_int, util (kl_read_file, kl_fnv1a), buf, err.
 */
#ifndef KLUA_LUA_DEPS_H
#define KLUA_LUA_DEPS_H

#include "err.h"
#include "lua_host_int.h"

#include <stddef.h>

#define LUA_DEPS_MAX_SOURCE (8u << 20)   /* largest script or module file */

/* The file at path, whole (caller frees *out). */
int lua_deps_read(const char *path, char **out, size_t *len, kl_err *err);

/* Remember that the script's code came from path (bytes src). Returns -1
 * when out of memory. */
int lua_deps_add(lua_host *h, const char *path, const char *src, size_t len);

#endif
