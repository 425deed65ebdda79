/* execcred.h - client-go exec credential plugins (users[].user.exec).
 *
 * Provides: execcred_start(), which runs the configured plugin on the event
 * loop the way kubectl does (KUBERNETES_EXEC_INFO set to an ExecCredential
 * request, interactive false, the configured env added, stdin from
 * /dev/null, stdout and stderr captured) and hands what it printed, parsed,
 * to a callback: a bearer token or a client certificate and key, with an
 * optional expirationTimestamp. The caller (kube.c) caches the result until
 * it expires, shares one run among every request that needs it, and re-runs
 * the plugin after a 401.
 *
 * Nothing blocks: the plugin's stdout and stderr are pipes watched by the
 * loop, its exit is a pidfd watched by the loop (a 20 ms timer polling
 * waitid(WNOHANG) on kernels without pidfd_open; no SIGCHLD handler), and
 * the timeout is a loop timer. The run ends when the plugin exits, even if
 * something it started still holds its stdout; its process group is then
 * killed, so no grandchild is left running. A run that outlives its timeout,
 * or prints more than its output cap on stdout or stderr, is killed at once
 * (group included) and fails.
 * Uses: loop (fd watches, timers), kubeconfig (kube_exec_config), json,
 * buf, err.
 */
#ifndef KLUA_EXECCRED_H
#define KLUA_EXECCRED_H

#include "err.h"
#include "kubeconfig.h"
#include "loop.h"

#include <stddef.h>
#include <stdint.h>

#define EXECCRED_TIMEOUT_MS 10000        /* a plugin that has not answered by then is killed */
#define EXECCRED_MAX_OUTPUT (1u << 20)    /* per stream; an ExecCredential is a few KB */

/* What a plugin returned. Every pointer is owned by the struct
 * (execcred_free). expires_at is Unix seconds; 0 = never expires. */
typedef struct execcred {
    char *token;
    char *cert_pem; size_t cert_len;
    char *key_pem; size_t key_len;
    int64_t expires_at;
} execcred;

/* Cluster facts passed to plugins that ask for them (provideClusterInfo). */
typedef struct execcred_cluster {
    const char *server;
    const char *tls_server_name;   /* or NULL */
    int insecure;
    const char *ca_pem; size_t ca_len; /* CA bundle bytes, or NULL */
} execcred_cluster;

/* One plugin run in flight. */
typedef struct execcred_proc execcred_proc;

/* Called once when the run ends (never from inside execcred_start). rc 0:
 * *cred holds the credential; the callback may take it over (copy the
 * struct, zero *cred); what it leaves is freed after it returns. rc -1:
 * err says why, in one line naming the command: "exec plugin CMD failed:
 * exit status 1: <first stderr lines>", "... failed: no answer within 10 s
 * (killed)", "... printed more than 1048576 bytes on stdout (killed)",
 * "exec plugin CMD returned invalid ExecCredential: ...". The token is never
 * in a message. The proc is freed after the callback returns. */
typedef void (*execcred_done_cb)(void *ud, int rc, execcred *cred, const kl_err *err);

typedef struct execcred_opts {
    uint64_t timeout_ms;   /* 0: EXECCRED_TIMEOUT_MS */
    size_t max_output;     /* 0: EXECCRED_MAX_OUTPUT, for stdout and for stderr */
    int no_pidfd;          /* tests: wait for the exit with the timer, as without pidfd */
} execcred_opts;

/* Start the plugin. cluster and opts may be NULL; cfg and cluster are read
 * during the call only. NULL with err set when it cannot start (no command,
 * not found, spawn or pipe failure): then done is never called; the
 * not-found message carries the install hint. */
execcred_proc *execcred_start(loop *l, const kube_exec_config *cfg,
                              const execcred_cluster *cluster, const execcred_opts *opts,
                              execcred_done_cb done, void *ud, kl_err *err);

/* Stop a run: its process group is killed and reaped, done is not called. */
void execcred_cancel(execcred_proc *p);

/* Parse an ExecCredential document (exposed for unit tests). api_version is
 * the one the kubeconfig asked for; the answer must carry the same. */
int execcred_parse(const char *json, size_t len, const char *api_version, execcred *out,
                   kl_err *err);

/* RFC 3339 ("2024-05-01T12:00:00Z", fractions and offsets allowed) to Unix
 * seconds. 0 or -1. */
int execcred_parse_time(const char *s, int64_t *out);

/* 1 when the credential may still be used at Unix time now (expiry is
 * treated as 10 s early so a request never leaves with a token that dies on
 * the way). */
int execcred_fresh(const execcred *c, int64_t now);

void execcred_free(execcred *c);

#endif
