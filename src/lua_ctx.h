/* lua_ctx.h - the `ctx` object a reconcile receives, and its bindings.
 *
 * Provides: lua_ctx, one per reconcile, pushed to Lua as a userdata whose
 * methods follow lua/types/klua.lua: cache reads (get, list), API writes
 * (create, update, patch, apply, delete, patch_status), events, http,
 * sleep, now, getenv, secret, and ctx.log. A call that waits starts the
 * I/O, records the request in the lua_ctx and yields with a continuation;
 * the completion callback stores the answer in C and asks the owner to
 * resume the coroutine, and the continuation pushes the results (so the
 * same code runs when an answer is immediate). Operational failures return
 * nil, klua.Error; misuse raises.
 * lua_ctx_shared holds what every ctx shares: loop, clients, a cache of
 * resolved resources (filled at start-up from discovery, then lazily and
 * asynchronously for other kinds), secrets, the host name for events.
 * Uses: rest, kube, http, store, labels, loop, lua_json, log, json, buf.
 */
#ifndef KLUA_LUA_CTX_H
#define KLUA_LUA_CTX_H

#include "err.h"
#include "http.h"
#include "loop.h"
#include "rest.h"
#include "store.h"

#include <lua.h>

typedef struct lua_ctx_shared lua_ctx_shared;
typedef struct lua_ctx lua_ctx;

/* kc and http may be NULL (tests, `klua check`): calls needing them then
 * return nil, err (ConnectionError). */
lua_ctx_shared *lua_ctx_shared_new(loop *l, kube_client *kc, http_client *http, kl_err *err);
void lua_ctx_shared_free(lua_ctx_shared *s);
/* Remember a resolved resource (copied), so ctx calls on it need no discovery. */
int lua_ctx_shared_add_resource(lua_ctx_shared *s, const kube_resource *r);
/* A secret scripts read with ctx:secret(name) (value copied; never logged). */
int lua_ctx_shared_set_secret(lua_ctx_shared *s, const char *name, const char *value);

/* klua test: ctx:now() runs this many seconds ahead of the wall clock. */
void lua_ctx_shared_set_now_offset(lua_ctx_shared *s, double seconds);

/* How a controller exposes its informer caches to ctx:get / ctx:list. */
typedef struct lua_ctx_cache {
    /* The store holding apiVersion/kind objects, or NULL if not cached;
     * *res receives the resource (valid while the store lives). */
    const store *(*lookup)(void *ud, const char *api_version, const char *kind,
                           const kube_resource **res);
    void *ud;
} lua_ctx_cache;

/* Push a new ctx (a userdata) onto L for the reconcile of key ns/name.
 * May raise (memory): call protected. `resume(ud)` is called from a loop
 * callback when a waiting call has its answer; the owner then resumes the
 * coroutine with lua_resume(co, .., 0, ..). The userdata owns the lua_ctx. */
lua_ctx *lua_ctx_push(lua_State *L, lua_ctx_shared *s, const lua_ctx_cache *cache,
                      const char *controller, const char *ns, const char *name,
                      void (*resume)(void *ud), void *ud);
/* The coroutine allowed to wait (the reconcile's thread). */
void lua_ctx_bind(lua_ctx *c, lua_State *co);
/* The reconcile is over: cancel what is in flight; later calls raise. */
void lua_ctx_end(lua_ctx *c);
int lua_ctx_waiting(const lua_ctx *c);   /* a call is in flight */

/* An object an Event is about. */
typedef struct lua_ctx_object_ref {
    const char *api_version, *kind, *ns, *name, *uid, *rv;
} lua_ctx_object_ref;

/* Post an events.k8s.io/v1 Event, fire and forget (failures are logged at
 * debug level). note is truncated to 1 KB. */
void lua_ctx_post_event(lua_ctx_shared *s, const lua_ctx_object_ref *obj, const char *type,
                        const char *reason, const char *action, const char *note);

/* Push a klua.Error table {code, reason, message} (tostring: "reason:
 * message (code)"). May raise (memory). */
void lua_ctx_push_error(lua_State *L, long code, const char *reason, const char *message);

#endif
