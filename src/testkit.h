/* testkit.h - the run of `klua test` / `klua replay`: one test's runtime.
 *
 * Provides: kt_run (the state of a whole run: the Lua state of the test
 * kit, the loop, the fake server, the refs of the Lua handlers, and the
 * runtime of the current test), kt_clock (the loop's clock: the monotonic
 * clock plus the offset kt.advance moves), kt_request (a synchronous API
 * request), kt_runtime_start / kt_runtime_free (a fresh runtime built from
 * the scripts as `klua run` builds it: clients, discovery, informers, ctx
 * state, controllers), kt_run_until_idle / kt_advance_by (drive the loop
 * until nothing happens; move the clock), kt_load_config / kt_new_client
 * (a client for the fake API or, with --cluster, the real one).
 * Uses: fakeapi, reload, controller, lua_ctx, informer, discovery, kube,
 * http, kubeconfig, loop, lua_host, buf, err.
 */
#ifndef KLUA_TESTKIT_H
#define KLUA_TESTKIT_H

#include "buf.h"
#include "discovery.h"
#include "err.h"
#include "fakeapi.h"
#include "http.h"
#include "informer.h"
#include "kube.h"
#include "kubeconfig.h"
#include "loop.h"
#include "lua_ctx.h"
#include "lua_host.h"
#include "reload.h"

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#define REQUEST_LIMIT_MS 30000

typedef struct kt_run {
    lua_State *L;
    loop *l;
    fakeapi *fake;
    int cluster;
    const char *scripts, *kubeconfig, *context;
    lua_host_opts limits;
    uint64_t offset;                 /* the loop's clock runs this far ahead of CLOCK_MONOTONIC */
    int ref_api, ref_http, ref_closed, ref_tap;
    char ctype[256];                 /* a stand-in answer's Content-Type */
    /* --cluster: a client for set-up (CRDs, namespaces) */
    http_client *base_http;
    kube_client *base_kc;
    /* the runtime of the current test */
    http_client *http, *script_http;
    kube_client *kc;
    discovery *disco;
    informer_registry *reg;
    lua_ctx_shared *shared;
    reload_set *set;
    int started, start_failed;
    unsigned long events;            /* informer events seen (activity) */
    kl_err start_err;
} kt_run;

/* The monotonic clock plus what kt.advance (and sleeping reconciles) added
 * (a loop clock; ud is the kt_run). */
uint64_t kt_clock(void *ud);

/* Send a request and drive the loop until its answer. Returns the HTTP
 * code (0: no answer, message in out). */
long kt_request(kt_run *r, kube_client *kc, const char *method, const char *path,
                const char *ctype, const char *body, size_t len, kl_buf *out);

/* Drive the loop until idle (see testkit.c); 0, or -1 with err set. */
int kt_run_until_idle(kt_run *r, kl_err *err);

/* Move the clock ms forward, running until idle at each due timer. */
int kt_advance_by(kt_run *r, uint64_t ms, kl_err *err);

/* Build and start the runtime of one test (ns: its namespace, or NULL),
 * then run until idle. kt_runtime_free frees it (safe when not started). */
int kt_runtime_start(kt_run *r, const char *ns, kl_err *err);
void kt_runtime_free(kt_run *r);

/* The REST config of the API: the fake server's, or with --cluster the
 * kubeconfig's. kt_new_client: a client of it over h, not throttled. */
int kt_load_config(kt_run *r, kube_rest_config *cfg, kl_err *err);
kube_client *kt_new_client(kt_run *r, http_client *h, kl_err *err);

#endif
