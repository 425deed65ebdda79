/* lua_budget.c - the instruction budget and CPU deadline (see lua_budget.h).
 *
 * One meter per run counts work: Lua instructions (the count hook), work
 * the guarded C functions declare (lua_budget_charge), and bytes the
 * allocator hands out (lua_budget_alloc). The same units go to the
 * instruction budget, and whenever CLOCK_UNITS of them have gone by since
 * the last look, the thread's CPU clock is read against the deadline. So a
 * loop of C calls the hook never sees (a pattern search, a sort, a copy)
 * is cut after the deadline plus about one call, not after 10,000 of them.
 *
 * A kill sets b->killed and is for the whole run, not for the coroutine
 * where it fired: from then on the hook of any thread of the run that
 * executes an instruction raises the kill message, and sets that thread's
 * hook to fire on every instruction, so a pcall, an xpcall handler, a
 * __close handler or a metamethod that catches the error cannot run on;
 * guarded C functions and coroutine switches raise it too, and the
 * allocator refuses to grow anything. Coroutines inherit their creator's
 * hook (Lua copies it), and the guarded resume gives the hook to a thread
 * made outside any run.
 *
 * The deadline is CPU time of this thread, not wall time: on a busy
 * machine a preempted reconcile must not be killed for time it did not
 * use, while an endless loop burns CPU and is cut after run_ms.
 * Uses: lua_host_int, Lua.
 */
#include "lua_budget.h"

#include <stdio.h>

#define HOOK_EVERY 1000          /* instructions between hook calls */
#define CLOCK_UNITS 10000        /* work units between CPU clock reads */
#define ALLOC_BYTES_PER_UNIT 16  /* a byte handed out costs 1/16 instruction */

static void budget_hook(lua_State *L, lua_Debug *ar);

/* Put the place where L runs in front of the kill's reason, once. */
static void place_kill(lua_host *h, lua_State *L)
{
    char where[256];
    if (!h->kill_unplaced)
        return;
    if (L && lua_host_where(L, 0, where, sizeof where)) {
        snprintf(h->kill_msg, sizeof h->kill_msg, "%s: %s", where, h->kill_why);
        h->kill_unplaced = 0;
    } else {
        snprintf(h->kill_msg, sizeof h->kill_msg, "%s: %s", h->path ? h->path : "?",
                 h->kill_why);
    }
}

/* Kill the run: b->killed, and "where: why" in h->kill_msg. L is the
 * thread that runs, or NULL from the allocator, which must not walk a
 * stack that may be moving: then the place is filled in by the hook at the
 * next instruction (until then it is the script's path). */
static void kill_run(lua_host *h, lua_State *L, const char *why)
{
    h->cur->killed = 1;
    snprintf(h->kill_why, sizeof h->kill_why, "%s", why);
    /* the thread that runs stops at its next instruction (lua_sethook may
     * be called anywhere, even from the allocator) */
    if (h->running)
        lua_sethook(h->running, budget_hook, LUA_MASKCOUNT, 1);
    h->kill_unplaced = 1;
    place_kill(h, L);
}

/* Add units of work to the running task's meter; kill the run when it is
 * over its budget or, on a clock read, over its deadline. Returns 1 when
 * the run is killed (now or before). */
static int meter(lua_host *h, lua_State *L, uint64_t units)
{
    lua_host_budget *b = h->cur;
    b->instructions += units;
    h->unclocked += units;
    if (b->killed)
        return 1;
    char why[160];
    if (b->instructions > h->budget) {
        snprintf(why, sizeof why, "instruction budget exceeded (%llu instructions; "
                 "see --lua-budget)", (unsigned long long)h->budget);
        kill_run(h, L, why);
    } else if (h->unclocked >= CLOCK_UNITS) {
        h->unclocked = 0;
        uint64_t ran = lua_host_cpu_ns() - h->cur_start_ns;
        if (ran > h->run_ms * 1000000ull) {
            snprintf(why, sizeof why, "deadline exceeded (ran %llu ms without waiting; "
                     "see --lua-timeout)", (unsigned long long)(ran / 1000000ull));
            kill_run(h, L, why);
        }
    }
    return b->killed;
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_host *h = lua_host_of(L);
    if (!h->cur)
        return;
    h->running = L;
    /* a thread already set to every instruction counts one per call */
    if (!meter(h, L, (uint64_t)lua_gethookcount(L)))
        return;
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    place_kill(h, L);
    lua_pushstring(L, h->kill_msg);
    lua_error(L);
}

void lua_budget_begin(lua_host *h, lua_State *L, lua_host_budget *b)
{
    h->cur = b;
    h->cur_start_ns = lua_host_cpu_ns();
    h->unclocked = 0;
    h->running = L;
    h->kill_unplaced = 0;
    h->enforce = 1;
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, b->killed ? 1 : HOOK_EVERY);
}

void lua_budget_end(lua_host *h, lua_host_budget *b)
{
    b->run_ns += lua_host_cpu_ns() - h->cur_start_ns;
    h->enforce = 0;
    h->cur = NULL;
    h->running = NULL;
}

int lua_budget_killed(lua_State *L)
{
    lua_host *h = lua_host_of(L);
    return h->cur && h->cur->killed;
}

int lua_budget_raise(lua_State *L)
{
    lua_host *h = lua_host_of(L);
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    place_kill(h, L);
    lua_pushstring(L, h->kill_msg);
    return lua_error(L);
}

void lua_budget_charge(lua_State *L, uint64_t units)
{
    lua_host *h = lua_host_of(L);
    if (h->cur && meter(h, L, units))
        lua_budget_raise(L);
}

int lua_budget_alloc(lua_host *h, size_t bytes)
{
    if (!h->cur)
        return 0;
    return meter(h, NULL, bytes / ALLOC_BYTES_PER_UNIT);
}

void lua_budget_inherit(lua_State *L, lua_State *co)
{
    lua_host *h = lua_host_of(L);
    if (!h->cur)
        return;
    if (h->cur->killed)
        lua_sethook(co, budget_hook, LUA_MASKCOUNT, 1);
    else if (lua_gethook(co) != budget_hook)
        lua_sethook(co, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
}

int lua_budget_tainted(lua_State *co)
{
    return lua_gethook(co) == budget_hook && lua_gethookcount(co) == 1;
}

lua_State *lua_budget_switch(lua_State *L, lua_State *co)
{
    lua_host *h = lua_host_of(L);
    lua_State *prev = h->running;
    if (h->cur)
        h->running = co;
    return prev;
}
