/* lua_json_standalone.c - what klua.json needs from the host when it is
 * loaded as a plain Lua module (build/lua/klua/json.so) outside bin/klua:
 * by the busted specs, and by anyone who wants the production codec in a
 * stock lua5.4.
 *
 * Provides: lua_host_is_host, lua_host_work, lua_host_charge,
 * lua_host_discharge, lua_host_mem_room with the signatures of lua_host.h.
 * Outside klua no state is a host's: there is no script memory cap or
 * budget, so every charge succeeds, work is not counted and the room is
 * unbounded; the interpreter's own
 * allocator still fails as usual. Linked only into the module, never into
 * bin/klua (which has the real ones in src/lua_host.c).
 * Uses: lua_host.h (declarations only).
 */
#include "lua_host.h"

#include <stdint.h>

int lua_host_charge(lua_State *L, size_t n)
{
    (void)L;
    (void)n;
    return 0;
}

void lua_host_discharge(lua_State *L, size_t n)
{
    (void)L;
    (void)n;
}

size_t lua_host_mem_room(lua_State *L)
{
    (void)L;
    return SIZE_MAX;
}

int lua_host_is_host(lua_State *L)
{
    (void)L;
    return 0;
}

void lua_host_work(lua_State *L, uint64_t units)
{
    (void)L;
    (void)units;
}
