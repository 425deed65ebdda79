/* lua_json.h - the klua.json Lua module and its C helpers.
 *
 * Provides: luaopen_klua_json(), the module scripts get with
 * `require "klua.json"`: encode, decode, null, empty_array, array(t).
 * And C helpers the host uses to hand objects to Lua (lua_json_push) and to
 * turn Lua tables into request bodies (lua_json_encode).
 *
 * Why not lua-cjson: the Debian lua-cjson (2.1.0) decodes every number as a
 * float (5 -> 5.0, so tostring gives "5.0" and URLs break), encodes integers
 * above 10^14 lossily, and cannot tell [] from {} (an update would send
 * "finalizers": {} and be rejected). So this codec sits on json.h's
 * tokenizer: integers stay integers, decoded arrays carry a marker
 * metatable so [] round-trips, object members that are null are dropped
 * (Kubernetes treats null as absent; scripts can test fields with `if`),
 * and null inside arrays is klua.json.null. Nesting is bounded by
 * JSON_MAX_DEPTH both ways (deeper is an error, not a crash).
 * Uses: json, buf, err, Lua.
 */
#ifndef KLUA_LUA_JSON_H
#define KLUA_LUA_JSON_H

#include "buf.h"
#include "err.h"

#include <lua.h>
#include <stddef.h>

int luaopen_klua_json(lua_State *L);

/* Decode one JSON text and push the value. Returns 0, or -1 with err set
 * and nothing pushed. May raise a Lua memory error: call it where a Lua
 * error is acceptable (inside a C function called from Lua, or under
 * lua_pcall); nothing leaks if it does. */
int lua_json_push(lua_State *L, const char *s, size_t len, kl_err *err);

/* Encode the value at idx, appending to out. Returns 0, or -1 with err set
 * (a function value, a cycle, non-string keys, NaN...). Does not raise. */
int lua_json_encode(lua_State *L, int idx, kl_buf *out, kl_err *err);

/* Mark the table at idx as a JSON array (so an empty one encodes as []). */
void lua_json_mark_array(lua_State *L, int idx);

#endif
