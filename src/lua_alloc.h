/* lua_alloc.h - the allocator behind each script's Lua state (internal).
 *
 * Provides: lua_alloc_fn, a lua_Alloc that counts every byte in the host's
 * mem_used and refuses to grow past mem_limit while script code runs
 * (h->enforce), so a script gets a memory error instead of taking the
 * process down; host bookkeeping runs with enforce off and never fails for
 * the script's usage. lua_host_charge/discharge/mem_room (lua_host.h) are
 * implemented here: C memory held for a script counts in the same total.
 * Byte counts also go to the run's work meter (lua_budget), so C work that
 * allocates as it goes (string.rep, upper, concat, gsub output) counts
 * against the budget and the deadline.
 * Uses: lua_budget, lua_host_int.
 */
#ifndef KLUA_LUA_ALLOC_H
#define KLUA_LUA_ALLOC_H

#include <stddef.h>

/* ud is the lua_host. */
void *lua_alloc_fn(void *ud, void *ptr, size_t osize, size_t nsize);

#endif
