/* lua_ctx_discovery.h - how the ctx finds the REST resource of a kind.
 *
 * Provides: the shared ctx's cache of resolved resources (filled at
 * start-up by the controllers, then lazily) and an asynchronous lookup of
 * one group version for a kind not in it.
 * Uses: lua_ctx_op (the call in flight), rest/kube, json.
 */
#ifndef KLUA_LUA_CTX_DISCOVERY_H
#define KLUA_LUA_CTX_DISCOVERY_H

#include "lua_ctx_op.h"

/* The resolved resource for apiVersion/kind, or NULL. */
const kube_resource *lua_ctx_resource_find(lua_ctx_shared *s, const char *api_version,
                                           const char *kind);
void lua_ctx_resources_free(lua_ctx_shared *s);

/* Resolve c->api_version/c->kind: the watched caches first, then the
 * shared cache. *st receives the informer's store when the kind is cached. */
const kube_resource *lua_ctx_resolve_now(lua_ctx *c, const store **st);
/* Ask the API server for c->api_version's resources, then set c->r and
 * call then(c); a kind the server does not know raises in the script, no
 * answer returns nil, err (both through lua_ctx_finish). */
void lua_ctx_resolve(lua_ctx *c, lua_ctx_start_fn then);

#endif
