/* lua_host_int.c - helpers shared by the lua_* host modules (see
 * lua_host_int.h).
 * Uses: log, Lua.
 */
#include "lua_host_int.h"

#include "log.h"

#include <stdio.h>
#include <time.h>

uint64_t lua_host_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* "file:line" of the innermost Lua function on L's stack at or above
 * level, or 0 when there is none. */
int lua_host_where(lua_State *L, int level, char *out, size_t outsz)
{
    lua_Debug ar;
    for (int i = level; i < level + 64 && lua_getstack(L, i, &ar); i++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
            snprintf(out, outsz, "%s:%d", ar.short_src, ar.currentline);
            return 1;
        }
    }
    return 0;
}

void lua_host_warning(lua_host *h, const char *where, const char *msg)
{
    if (h->on_warn)
        h->on_warn(h->warn_ud, where, msg);
    else
        kl_log(KL_LOG_WARN, "script warning", "at", where, "msg", msg, NULL);
}
