/* lua_ctx_discovery.c - kinds to resources for the ctx (see
 * lua_ctx_discovery.h).
 *
 * Provides: lua_ctx_resolve_now, lua_ctx_resolve.
 * Uses: discovery (the one cache and its asynchronous lookups), lua_ctx_op.
 */
#include "lua_ctx_discovery.h"

#include <stdio.h>

const kube_resource *lua_ctx_resolve_now(lua_ctx *c, const store **st)
{
    const kube_resource *r = NULL;
    if (st)
        *st = NULL;
    if (c->cache.lookup) {
        const store *found = c->cache.lookup(c->cache.ud, c->api_version, c->kind, &r);
        if (found && st)
            *st = found;
        if (r)
            return r;
    }
    return c->s->disco ? discovery_find(c->s->disco, c->api_version, c->kind) : NULL;
}

static void on_resolved(void *ud, const kube_resource *r, const kl_err *err)
{
    lua_ctx *c = ud;
    c->dreq = NULL;
    c->resolving = 0;
    lua_ctx_start_fn then = c->after_resolve;
    c->after_resolve = NULL;
    if (r) {
        c->r = r;
        then(c);
        return;
    }
    if (err->code == KL_EINVAL) {
        /* the server answered and does not serve the kind: misuse, raised */
        c->raise = 1;
        snprintf(c->message, sizeof c->message, "%s", err->msg);
    } else {
        /* no usable answer: an operational failure, returned as nil, err */
        lua_ctx_set_answer(c, 0, err->code == KL_EIO ? "ConnectionError" : "InternalError",
                           err->msg);
    }
    lua_ctx_finish(c);
}

void lua_ctx_resolve(lua_ctx *c, lua_ctx_start_fn then)
{
    if (!c->s->disco) {
        lua_ctx_set_answer(c, 0, "ConnectionError", "no API server configured");
        lua_ctx_finish(c);
        return;
    }
    c->resolving = 1;
    c->after_resolve = then;
    c->dreq = discovery_lookup(c->s->disco, c->api_version, c->kind, on_resolved, c);
    if (!c->dreq) {
        c->resolving = 0;
        c->after_resolve = NULL;
        lua_ctx_set_answer(c, 0, "ConnectionError", "out of memory starting a discovery lookup");
        lua_ctx_finish(c);
    }
}
