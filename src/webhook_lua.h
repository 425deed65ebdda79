/* webhook_lua.h - webhook handlers run in a script's Lua state.
 *
 * Provides: webhook_lua, the webhook_handlers (webhook_review.h) that call
 * a script's validate(ctx, req), mutate(ctx, req) and convert(ctx, obj,
 * to_version). Each call is a task of the script's own lua_host (the state
 * its reconciles run in, so a hot reload swaps the handlers too) under the
 * same instruction budget, memory cap and CPU deadline (--lua-timeout,
 * which klua keeps below the webhook's timeoutSeconds). A handler runs to
 * the end at once: it may read the cache (ctx:get, ctx:list of cached
 * kinds), log, ctx:now, ctx:getenv and ctx:secret, but never write or
 * wait: the ctx it gets allows only those (every other method of the ctx
 * modules' tables is refused: the write verbs raise "webhook handlers
 * cannot write (ctx:patch)", ctx:http and ctx:sleep "cannot wait"), and a
 * read that would wait (a kind outside the cache) fails the handler.
 *
 * req = { uid, operation, object, oldObject, userInfo, dryRun, namespace,
 *         name, kind = { apiVersion, kind }, warnings = {} }
 *   validate returns true, or false and a message (the reason kubectl
 *   shows); strings added to req.warnings reach kubectl as warnings.
 *   mutate changes req.object in place (klua sends the JSON Patch from the
 *   object it received to the one left in req.object); it may return
 *   false and a message to deny.
 *   convert returns the object in to_version ("group/version"); apiVersion
 *   is set to to_version when the handler leaves it out, and must not
 *   name another version.
 * A handler that raises, exceeds a limit or returns something else
 * denies (conversion: fails) with the script's file:line and reason.
 * Uses: webhook_review, webhook_patch, lua_host, lua_ctx, lua_json, log.
 */
#ifndef KLUA_WEBHOOK_LUA_H
#define KLUA_WEBHOOK_LUA_H

#include "lua_ctx.h"
#include "lua_host.h"
#include "webhook_review.h"

/* What a controller name resolves to: its current script and its cache. */
typedef struct webhook_target {
    lua_host *host;
    lua_ctx_cache cache;
} webhook_target;

/* Fill *out for the controller `name`; 0, or -1 when there is none. */
typedef int (*webhook_find_fn)(void *ud, const char *name, webhook_target *out);

/* Every controller that runs, one call of visit each. */
typedef void (*webhook_visit_fn)(void *visit_ud, const char *name, const webhook_target *t);
typedef void (*webhook_each_fn)(void *ud, webhook_visit_fn visit, void *visit_ud);

typedef struct webhook_lua {
    lua_ctx_shared *shared;   /* may be NULL (tests): ctx calls then fail */
    webhook_find_fn find;
    void *find_ud;
} webhook_lua;

/* Handlers whose ud is w (w must outlive them). */
webhook_handlers webhook_lua_handlers(webhook_lua *w);

#endif
