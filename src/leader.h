/* leader.h - leader election on a coordination.k8s.io/v1 Lease, the way
 * client-go's leaderelection package does it.
 *
 * Provides: leader_elector. Every retry period it reads the Lease and tries
 * to acquire it: when it is absent (create), held by us, released (empty
 * holderIdentity) or expired. Expiry is judged by our own clock, never the
 * server's: we record when we last saw the holder's record change, and the
 * lease has expired when leaseDurationSeconds have passed since then
 * without a change. Writes are updates carrying the resourceVersion we
 * read, so of two candidates only one wins (the other gets 409 Conflict
 * and stays a candidate). While leading it renews every retry period; if
 * no renewal has succeeded for the renew deadline, leadership is lost
 * (on_stopped). leader_release hands the lease back on shutdown
 * (holderIdentity "", leaseDurationSeconds 1), as client-go's
 * ReleaseOnCancel does, so a standby takes over at once.
 * Everything runs on the loop; no call blocks it. The Lease resource is
 * the built-in coordination.k8s.io/v1 leases (namespaced), as client-go's
 * resourcelock knows it: no discovery is needed.
 * The pure parts (validation, the Lease's record, the expiry rule, time
 * format) are exposed for unit tests (spec/c/test_leader.c).
 * Uses: rest, kube, json, loop, log, buf, err.
 */
#ifndef KLUA_LEADER_H
#define KLUA_LEADER_H

#include "buf.h"
#include "err.h"
#include "kube.h"
#include "loop.h"
#include "rest.h"

#include <stddef.h>
#include <stdint.h>

/* client-go's defaults (controller-runtime uses the same). */
#define LEADER_LEASE_MS 15000
#define LEADER_RENEW_MS 10000
#define LEADER_RETRY_MS 2000

typedef struct leader_config {
    const char *ns;          /* the Lease's namespace (copied) */
    const char *name;        /* the Lease's name (copied) */
    const char *identity;    /* what we write as holderIdentity (copied) */
    long lease_ms, renew_ms, retry_ms;   /* 0 = the defaults above */
    /* Called on the loop when we become the leader, and when leadership is
     * lost (renewals failed for the renew deadline; the elector stops). */
    void (*on_started)(void *ud);
    void (*on_stopped)(void *ud);
    void *ud;
} leader_config;

typedef struct leader_elector leader_elector;

/* Validates the durations. The elector keeps kc borrowed; it must outlive
 * it. */
leader_elector *leader_new(loop *l, kube_client *kc, const leader_config *cfg, kl_err *err);
/* Begin trying to acquire (at once, then every retry period). */
void leader_start(leader_elector *e);
int leader_is_leader(const leader_elector *e);
/* Stop trying and renewing; if we lead, write the released record first.
 * done(ud) is called exactly once on the loop (at once when there is
 * nothing to release), after at most about 5 s. */
void leader_release(leader_elector *e, void (*done)(void *ud), void *ud);
/* Cancels what is in flight; no callback afterwards. NULL is fine. */
void leader_free(leader_elector *e);

/* "POD_NAME_<16 hex>", or "<hostname>_<16 hex>" without $POD_NAME: unique
 * per process, so a restarted pod is a new candidate. Caller frees. */
char *leader_identity_new(void);

/* ---- pure parts, for unit tests ---- */

/* lease > renew > 1.2 x retry, each at least 1 ms. err names the flags
 * (--leader-lease-duration, --leader-renew-deadline, --leader-retry-period). */
int leader_validate(long lease_ms, long renew_ms, long retry_ms, kl_err *err);

/* The Lease's spec, as client-go's LeaderElectionRecord. Strings are
 * owned (leader_record_free); absent fields are NULL / 0. */
typedef struct leader_record {
    char *holder;            /* holderIdentity; NULL or "" = nobody */
    long lease_seconds;      /* leaseDurationSeconds */
    char *acquire_time;      /* acquireTime (RFC 3339 micro) */
    char *renew_time;        /* renewTime */
    long transitions;        /* leaseTransitions */
} leader_record;

void leader_record_free(leader_record *r);
int leader_record_equal(const leader_record *a, const leader_record *b);
/* Parse a Lease object: its spec into *rec, its raw metadata object into
 * *metadata (appended; it carries resourceVersion for the next update). */
int leader_lease_parse(const char *json, size_t len, leader_record *rec, kl_buf *metadata,
                       kl_err *err);
/* A Lease object for create (metadata NULL or "": name and ns are used) or
 * update (metadata: the raw metadata object read before). */
int leader_lease_json(const char *metadata, const char *ns, const char *name,
                      const leader_record *rec, kl_buf *out);
/* 1 when someone else holds the lease and it has not expired: cur names a
 * holder other than identity, and fewer than cur->lease_seconds have passed
 * between observed_ms (when we last saw the record change) and now_ms. */
int leader_held_by_other(const leader_record *cur, const char *identity, uint64_t observed_ms,
                         uint64_t now_ms);
/* unix_us as "2006-01-02T15:04:05.000000Z" (UTC). out has room for 32. */
void leader_format_time(int64_t unix_us, char out[32]);

#endif
