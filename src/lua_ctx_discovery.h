/* lua_ctx_discovery.h - how the ctx finds the REST resource of a kind.
 *
 * Provides: resolution of c->api_version/c->kind to a kube_resource: from
 * the controller's informer caches first (watched and owned kinds), then
 * from the process's one discovery service (its cache at once, else an
 * asynchronous lookup that the call waits for like any other I/O).
 * Uses: lua_ctx_op (the call in flight), discovery.
 */
#ifndef KLUA_LUA_CTX_DISCOVERY_H
#define KLUA_LUA_CTX_DISCOVERY_H

#include "lua_ctx_op.h"

/* Without waiting: the resource, or NULL when discovery has to be asked.
 * *st (may be NULL) receives the informer's store when the kind is cached. */
const kube_resource *lua_ctx_resolve_now(lua_ctx *c, const store **st);
/* Ask discovery, then set c->r and call then(c). A kind the server does
 * not serve raises in the script; no answer returns nil, err (both through
 * lua_ctx_finish). lua_ctx_cancel drops a lookup in flight. */
void lua_ctx_resolve(lua_ctx *c, lua_ctx_start_fn then);

#endif
