/* lua_ctx.h - the `ctx` object a reconcile receives, and its bindings.
 *
 * Provides: lua_ctx, one per reconcile, pushed to Lua as a userdata whose
 * methods follow lua/types/klua.lua: cache reads (get, list; with
 * { live = true } API reads; reading this process's own writes), API
 * writes (create, update, patch, apply, delete, patch_status),
 * owner_reference, events (asynchronous), tasks (spawn, wait), http,
 * sleep, now, getenv, secret, and ctx.log. A call that waits starts the
 * I/O, records the request in the lua_ctx and yields with a continuation;
 * the completion callback stores the answer in C and asks the owner to
 * resume the coroutine, and the continuation pushes the results (so the
 * same code runs when an answer is immediate). Operational failures return
 * nil, klua.Error; misuse raises.
 * lua_ctx_shared holds what every ctx shares: loop, clients, the discovery
 * service (kinds outside the controller's caches are resolved through it,
 * waiting like any other I/O), secrets, the environment allowlist, the
 * Event recorder.
 * The parts: lua_ctx_op (plumbing), lua_ctx_kube (verbs), lua_ctx_io (I/O,
 * logs), lua_ctx_task (spawn, wait), lua_ctx_discovery (resources); this
 * header is their public face.
 * Uses: discovery, event, rest, kube, http, store, rywcache, loop.
 */
#ifndef KLUA_LUA_CTX_H
#define KLUA_LUA_CTX_H

#include "discovery.h"
#include "err.h"
#include "event.h"
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
/* The discovery service ctx calls resolve kinds through (borrowed; must
 * outlive s). Without one, kinds outside the controller's caches answer
 * nil, err (ConnectionError). */
void lua_ctx_shared_set_discovery(lua_ctx_shared *s, discovery *d);
/* A secret scripts read with ctx:secret(name) (value copied; never
 * logged), replacing one of the same name. */
int lua_ctx_shared_set_secret(lua_ctx_shared *s, const char *name, const char *value);
/* A secret read from a file now and again whenever the file changes
 * (--secret NAME=FILE). Fails when the file cannot be read or is empty;
 * the message names the secret and the file, never the value. */
int lua_ctx_shared_add_secret_file(lua_ctx_shared *s, const char *name, const char *path,
                                   kl_err *err);
/* Copy text to out (NUL-terminated, cut to outsz) with every secret value
 * replaced by "[redacted]": for messages a script's error makes klua write
 * (logs, Events, conditions). */
void lua_ctx_shared_redact(const lua_ctx_shared *s, const char *text, char *out, size_t outsz);
/* Let ctx:getenv read variables whose name matches the glob pattern
 * (fnmatch; --allow-env). Without any, ctx:getenv reads nothing. */
int lua_ctx_shared_allow_env(lua_ctx_shared *s, const char *pattern);

/* What a reconcile did, for klua run --record and klua replay: an API
 * write (create/update/patch/delete; kind and target set) or a ctx:http
 * request (url set, and the answer: resp_*). Strings are valid during the
 * call only; bodies are not NUL-terminated. */
typedef struct lua_ctx_action {
    const char *controller, *ns, *name;      /* the reconcile's key */
    const char *method;
    const char *api_version, *kind, *target_ns, *target_name, *subresource, *content_type;
    const char *url;
    const char *body;
    size_t body_len;
    long code;                               /* 0: no answer */
    const char *resp_body;
    size_t resp_len;
    const char *resp_headers;                /* "name\0value\0" ... */
    size_t nresp_headers;
} lua_ctx_action;
typedef void (*lua_ctx_tap_fn)(void *ud, const lua_ctx_action *a);
void lua_ctx_shared_set_tap(lua_ctx_shared *s, lua_ctx_tap_fn tap, void *ud);

/* klua test: ctx:now() runs this many seconds ahead of the wall clock. */
void lua_ctx_shared_set_now_offset(lua_ctx_shared *s, double seconds);

/* How a controller exposes its informer caches to ctx:get / ctx:list. */
typedef struct lua_ctx_cache {
    /* The store holding apiVersion/kind objects, or NULL if not cached;
     * *res receives the resource (valid while the store lives). */
    const store *(*lookup)(void *ud, const char *api_version, const char *kind,
                           const kube_resource **res);
    /* A write (not a dry run) to a cached kind, made by the ctx for the
     * reconcile of ns/name (ns "" when cluster-scoped), answered object o
     * (borrowed for the call); may be NULL. The controller notes it to
     * know the watch's echo of it (controller_echo.h). */
    void (*wrote)(void *ud, const char *ns, const char *name, const store_obj *o);
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

/* The Event recorder the ctx uses (ctx:event), for the controller's own
 * Events too (owned by s). */
event_recorder *lua_ctx_shared_events(lua_ctx_shared *s);

/* Push a klua.Error table {code, reason, message} (tostring: "reason:
 * message (code)"). May raise (memory). */
void lua_ctx_push_error(lua_State *L, long code, const char *reason, const char *message);

#endif
