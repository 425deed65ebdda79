/* execcred.h - client-go exec credential plugins (users[].user.exec).
 *
 * Provides: execcred_run(), which runs the configured plugin the way
 * kubectl does (KUBERNETES_EXEC_INFO set to an ExecCredential request, the
 * configured env added, stdin from /dev/null, stdout captured, stderr passed
 * through) and parses what it prints: a bearer token or a client certificate
 * and key, with an optional expirationTimestamp. The caller (kube.c) caches
 * the result until it expires and re-runs the plugin after a 401.
 *
 * The run is synchronous: it blocks the calling thread (the event loop) for
 * as long as the plugin runs, at most EXECCRED_TIMEOUT_MS, after which the
 * plugin is killed. The wait ends when the plugin exits, even if something
 * it started still holds its stdout; its process group is then killed, so
 * no grandchild is left running. That happens once per credential refresh
 * (real plugins: about once an hour, well under a second each); a blocking
 * call keeps the transport simple and no request can go out without a
 * credential anyway. The timeout is kept short because of that block.
 * Uses: kubeconfig (kube_exec_config), json, buf, err.
 */
#ifndef KLUA_EXECCRED_H
#define KLUA_EXECCRED_H

#include "err.h"
#include "kubeconfig.h"

#include <stddef.h>
#include <stdint.h>

#define EXECCRED_TIMEOUT_MS 10000 /* also the longest the event loop can be blocked */

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

/* Run the plugin and parse its answer into *out (caller frees with
 * execcred_free). cluster may be NULL. Errors are one line naming the
 * command: "exec plugin CMD failed: exit status 1: <first stderr line>",
 * "exec plugin CMD returned invalid ExecCredential: ...", or the install
 * hint when CMD is not found. A token with a control character (CR, LF,
 * ...) is refused: "...: status.token contains a line break (CR or LF)". */
int execcred_run(const kube_exec_config *cfg, const execcred_cluster *cluster, execcred *out,
                 kl_err *err);

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
