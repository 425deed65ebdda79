/* tool_lua.h - a plain Lua state for klua's own command-line tools.
 *
 * Provides: tool_lua_new() (a stock Lua 5.4 state with the standard
 * library, where `require "klua.X"` finds klua's embedded modules), and
 * converters from parsed documents to Lua values: tool_lua_push_json (a
 * json.h document) and tool_lua_push_yaml_file (every document of a YAML or
 * JSON file, as an array). Tools such as `klua types` and `klua init` run
 * trusted code of klua's own here, outside the script sandbox (lua_host).
 * And tool_lua_write_files, which writes a table of generated files.
 * Uses: luamods, json, buf, err, libyaml, Lua 5.4.
 */
#ifndef KLUA_TOOL_LUA_H
#define KLUA_TOOL_LUA_H

#include "err.h"
#include "json.h"

#include <lua.h>

/* A new state, or NULL with err set. The caller closes it with lua_close. */
lua_State *tool_lua_new(kl_err *err);

/* Push the value of token tok of d (objects as tables, arrays as
 * sequences, null as nil inside objects and false... in arrays). Raises on
 * memory failure: call it under lua_pcall or accept the panic. */
void tool_lua_push_json(lua_State *L, const json_doc *d, int tok);

/* Push an array of the documents in the YAML (or JSON) file path; plain
 * scalars are typed as YAML 1.2's core schema does (null, booleans,
 * integers, floats, else strings). Returns 0, or -1 with err set
 * ("path:line: ...") and nothing pushed. A file past TOOL_YAML_MAX_BYTES is
 * refused before it is read, and one that expands (aliases of aliases)
 * past TOOL_YAML_MAX_VALUES values in all before it is pushed whole. */
#define TOOL_YAML_MAX_BYTES (64 * 1024 * 1024)
#define TOOL_YAML_MAX_VALUES 4000000
int tool_lua_push_yaml_file(lua_State *L, const char *path, kl_err *err);

/* Call module.fn(args...) with nargs arguments on the stack, protected,
 * leaving nres results. Returns 0, or -1 with err set to the Lua error. */
int tool_lua_call(lua_State *L, const char *module, const char *fn, int nargs, int nres,
                  kl_err *err);

/* Write every path -> text pair of the table at the top of L (popped)
 * under dir, in path order, each through a temporary file renamed into
 * place; paths are relative ("crds/x.yaml", no ".." part) and their
 * folders are created. With no_clobber, a path that exists already is an
 * error and nothing is written. Sets *nfiles. Returns 0, or -1 with err set
 * (files written before a failure stay). */
int tool_lua_write_files(lua_State *L, const char *dir, int no_clobber, int *nfiles,
                         kl_err *err);

#endif
