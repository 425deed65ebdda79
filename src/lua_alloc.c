/* lua_alloc.c - the memory cap (see lua_alloc.h).
 * Uses: lua_budget, lua_host_int.
 */
#include "lua_alloc.h"

#include "lua_budget.h"
#include "lua_host_int.h"

#include <stdlib.h>

/* Fails only when growing past the cap while script code runs; when ptr is
 * NULL, osize is a type tag, not a size. */
void *lua_alloc_fn(void *ud, void *ptr, size_t osize, size_t nsize)
{
    lua_host *h = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        h->mem_used -= old;
        return NULL;
    }
    if (nsize > old && h->enforce) {
        if (h->mem_used - old + nsize > h->mem_limit) {
            /* Lua runs a full collection and tries again: work too */
            lua_budget_alloc(h, h->mem_used);
            return NULL;
        }
        lua_budget_alloc(h, nsize - old);
    }
    void *p = realloc(ptr, nsize);
    if (!p)
        return NULL;
    h->mem_used = h->mem_used - old + nsize;
    return p;
}

int lua_host_charge(lua_State *L, size_t n)
{
    lua_host *h = lua_host_of(L);
    if (n > h->mem_limit || h->mem_used > h->mem_limit - n)
        return -1;
    h->mem_used += n;
    return 0;
}

void lua_host_discharge(lua_State *L, size_t n)
{
    lua_host *h = lua_host_of(L);
    h->mem_used -= n;
}

size_t lua_host_mem_room(lua_State *L)
{
    lua_host *h = lua_host_of(L);
    return h->mem_used >= h->mem_limit ? 0 : h->mem_limit - h->mem_used;
}

int lua_host_is_host(lua_State *L)
{
    void *ud = NULL;
    return lua_getallocf(L, &ud) == lua_alloc_fn;
}
