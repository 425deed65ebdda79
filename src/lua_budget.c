/* lua_budget.c - the instruction budget and CPU deadline (see lua_budget.h).
 *
 * A budget kill sets b->killed and the hook then fires on every
 * instruction, raising again each time, so a script's pcall can catch the
 * error but cannot run on: the coroutine unwinds to the host.
 *
 * The deadline is CPU time of this thread, not wall time: on a busy
 * machine a preempted reconcile must not be killed for time it did not
 * use, while an endless loop burns CPU and is cut after run_ms.
 * Uses: lua_host_int, Lua.
 */
#include "lua_budget.h"

#include <stdio.h>

#define HOOK_EVERY 1000          /* instructions between hook calls */
#define CLOCK_EVERY 10           /* hook calls between CPU clock reads */

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_host *h = lua_host_of(L);
    lua_host_budget *b = h->cur;
    if (!b)
        return;
    b->instructions += HOOK_EVERY;
    if (!b->killed) {
        const char *why = NULL;
        char what[160];
        if (b->instructions > h->budget) {
            snprintf(what, sizeof what, "instruction budget exceeded (%llu instructions; "
                     "see --lua-budget)", (unsigned long long)h->budget);
            why = what;
        } else if (++h->hook_calls % CLOCK_EVERY == 0) {
            uint64_t ran = lua_host_cpu_ns() - h->cur_start_ns;
            if (ran > h->run_ms * 1000000ull) {
                snprintf(what, sizeof what, "deadline exceeded (ran %llu ms without waiting; "
                         "see --lua-timeout)", (unsigned long long)(ran / 1000000ull));
                why = what;
            }
        }
        if (!why)
            return;
        b->killed = 1;
        char where[256];
        if (lua_host_where(L, 0, where, sizeof where))
            snprintf(h->kill_msg, sizeof h->kill_msg, "%s: %s", where, why);
        else
            snprintf(h->kill_msg, sizeof h->kill_msg, "%s: %s", h->path ? h->path : "?", why);
        /* From now on fire on every instruction of every thread that runs. */
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    }
    lua_pushstring(L, h->kill_msg);
    lua_error(L);
}

void lua_budget_begin(lua_host *h, lua_State *L, lua_host_budget *b)
{
    h->cur = b;
    h->cur_start_ns = lua_host_cpu_ns();
    h->hook_calls = 0;
    h->enforce = 1;
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, b->killed ? 1 : HOOK_EVERY);
}

void lua_budget_end(lua_host *h, lua_host_budget *b)
{
    b->run_ns += lua_host_cpu_ns() - h->cur_start_ns;
    h->enforce = 0;
    h->cur = NULL;
}

int lua_budget_killed(lua_State *L)
{
    lua_host *h = lua_host_of(L);
    return h->cur && h->cur->killed;
}

int lua_budget_raise(lua_State *L)
{
    lua_pushstring(L, lua_host_of(L)->kill_msg);
    return lua_error(L);
}
