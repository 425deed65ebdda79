/* lua_ctx_op.h - the ctx's insides, shared by its parts (lua_ctx_*.c only).
 *
 * Provides: the lua_ctx and lua_ctx_shared structs and the op plumbing.
 * One call at a time can wait per ctx (a coroutine is suspended in at most
 * one call), so the request and its answer live in the lua_ctx itself:
 * lua_ctx_op_begin() runs a start function that begins the I/O; the loop
 * callback stores the answer and calls lua_ctx_finish(); the op's push
 * function turns the answer into Lua values, either at once (the answer
 * came before we yielded) or in the continuation. Also the argument
 * helpers every method uses, and the C memory a ctx holds for its script
 * (charged to the script's memory cap, see lua_host_charge).
 * Uses: lua_ctx.h (public types), discovery, event, rest, http, loop, buf.
 */
#ifndef KLUA_LUA_CTX_OP_H
#define KLUA_LUA_CTX_OP_H

#include "buf.h"
#include "discovery.h"
#include "event.h"
#include "http.h"
#include "loop.h"
#include "lua_ctx.h"
#include "rest.h"

#include <lua.h>

#define LUA_CTX_MT "klua.Context"

typedef struct lua_ctx_secret lua_ctx_secret;

struct lua_ctx_shared {
    loop *l;
    kube_client *kc;
    http_client *http;
    event_recorder *events;
    discovery *disco;         /* kinds to resources (borrowed), or NULL */
    lua_ctx_secret *secrets;  /* lua_ctx_secret.c */
    size_t nsecrets;
    char **env_allow;         /* --allow-env globs; none: the defaults */
    size_t nenv_allow;
    char **env_refused;       /* names already warned about (bounded) */
    size_t nenv_refused;
};

typedef struct lua_ctx lua_ctx;
/* Turns the answer of the call in flight into Lua results (count returned). */
typedef int (*lua_ctx_push_fn)(lua_State *L, lua_ctx *c);
typedef void (*lua_ctx_start_fn)(lua_ctx *c);

struct lua_ctx {
    lua_ctx_shared *s;
    lua_ctx_cache cache;
    void (*resume)(void *ud);
    void *resume_ud;
    lua_State *co;
    lua_State *L;             /* the script's state: C memory is charged to it */
    int ended;
    char controller[64], ns[256], name[256];

    /* the call in flight */
    lua_ctx_push_fn push;     /* NULL: no results */
    int waiting, in_lua, done, raise;
    loop_timer_id timer;
    kube_call *call;
    http_request *hreq;
    discovery_req *dreq;      /* a kind being looked up */
    char api_version[256], kind[128];
    const kube_resource *r;
    int op;                   /* which call, in the area file's own terms */
    char req_ns[256], req_name[256], subresource[32], field_manager[128];
    char propagation[16], pre_uid[128], pre_rv[128];
    int force, dry_run;
    kube_patch_type ptype;
    kl_buf body, selector;
    char method[16];          /* ctx:http */
    char *url, **hdrs;        /* ctx:http: owned until the answer */
    const char *req_body;     /* ctx:http: the script's string, valid during the call */
    size_t req_len;
    size_t req_charged;       /* C memory charged for the request in flight */
    size_t resp_charged;      /* ... for rbody (ctx:http) */
    int too_large;            /* ctx:http: the answer passed the memory cap */
    long timeout_ms;
    int resolving;
    lua_ctx_start_fn after_resolve;

    /* the answer */
    long code;
    char reason[64];
    char message[1024];
    kl_buf rbody;
    kl_buf rheaders;          /* ctx:http: "name\0value\0" ... */
    size_t nrheaders;
};

/* ---- the call in flight (lua_ctx_op.c) ---- */

/* Forget the previous call's request and answer (memory kept). */
void lua_ctx_reset(lua_ctx *c);
/* Cancel what is in flight (no callback follows). */
void lua_ctx_cancel(lua_ctx *c);
/* The answer is in: resume the coroutine unless we are still inside the
 * Lua call that started it. Nothing may touch c after this returns. */
void lua_ctx_finish(lua_ctx *c);
/* C memory held for the script: lua_ctx_charge counts n more bytes in
 * *counter (0, or -1 when they would pass the script's memory cap);
 * lua_ctx_discharge gives back all of *counter. */
int lua_ctx_charge(lua_ctx *c, size_t *counter, size_t n);
void lua_ctx_discharge(lua_ctx *c, size_t *counter);
/* Give back n of the bytes in *counter. */
void lua_ctx_uncharge(lua_ctx *c, size_t *counter, size_t n);
/* Free the buffers of the call's answer and request, giving back their charge. */
void lua_ctx_release(lua_ctx *c);
/* Record a failed answer; reason NULL or "" = the code's usual reason. */
void lua_ctx_set_answer(lua_ctx *c, long code, const char *reason, const char *message);
/* Start the prepared call with start(c) and wait for it; push makes the
 * results. `what` names the method in errors. */
int lua_ctx_op_begin(lua_State *L, lua_ctx *c, lua_ctx_start_fn start, lua_ctx_push_fn push,
                     const char *what);

/* ---- argument helpers ---- */

/* The ctx at argument 1, ready for a new call (raises when it has ended
 * or is busy). */
lua_ctx *lua_ctx_check(lua_State *L);
/* Copy string field `field` of table t into out (raises when too long or
 * not a string; "" when absent). */
void lua_ctx_copy_field(lua_State *L, int t, const char *field, char *out, size_t outsz,
                        const char *what);
/* The usual reason for an HTTP code ("NotFound", ...; 0 = ConnectionError). */
const char *lua_ctx_reason_for(long code);

#endif
