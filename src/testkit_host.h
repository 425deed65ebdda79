/* testkit_host.h - the C functions klua.testkit and klua.replay call.
 *
 * Provides: kt_push_host, which pushes `host`, a table of functions each
 * holding the kt_run as an upvalue: start / stop (a test's runtime, with
 * its namespace under --cluster), request / resolve (the API, discovery),
 * run / advance (drive until idle, move the clock), secret, getenv /
 * setenv, emit (a watch stream's chunk), now / clock / set_now / elapsed_ms,
 * token, yaml, set_handlers (the fake server's Lua answers), set_tap (each
 * write and ctx:http call, for replay), delete_namespace.
 * Uses: testkit (kt_run and its runtime), fakeapi, discovery, kube,
 * lua_ctx, tool_lua, util.
 */
#ifndef KLUA_TESTKIT_HOST_H
#define KLUA_TESTKIT_HOST_H

#include "testkit.h"

#include <lua.h>

void kt_push_host(lua_State *L, kt_run *r);

#endif
