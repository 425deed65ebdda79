/* discovery.h - one asynchronous discovery service with one cache.
 *
 * Provides: discovery, which maps apiVersion + kind (or + resource name,
 * e.g. "configmaps") to a kube_resource: its plural name, scope and whether
 * it has a status subresource. Group versions are read from the server on
 * demand (GET /api/V or /apis/G/V: one APIResourceList each) and cached;
 * subresources ("x/status") are joined to their resource through an index,
 * and lookups go through hash indexes by kind and by name.
 *
 * Nothing here blocks the loop:
 *   - discovery_find / discovery_find_resource answer from the cache only;
 *   - discovery_lookup answers from the cache or fetches the group version
 *     on the loop, and calls back. Every lookup of one group version waiting
 *     at the same time shares one fetch.
 * Refresh: a kind missing from a cached group version (a CRD installed
 * later) fetches that group version again, but at most once per
 * opts.refresh_ms (default DISCOVERY_REFRESH_MS) per group version: a
 * lookup that comes sooner waits for that later fetch. A lookup is answered
 * by the first fetch that completes after it was made, or by the cache;
 * never by a refresh loop. A group version the server does not serve (404)
 * is cached as empty, under the same rule; a fetch that fails (no answer,
 * or an error other than 404) is not cached: its waiters get the error and
 * the next lookup tries again (rate bounded as above).
 *
 * Records are stable: a kube_resource handed out stays valid, unchanged,
 * until discovery_free (a refresh that changes a resource adds a new record
 * and the indexes point at it; the old one is kept).
 * Uses: kube (transport), rest (kube_resource), json, loop (timers), util
 * (hashing), buf, err.
 */
#ifndef KLUA_DISCOVERY_H
#define KLUA_DISCOVERY_H

#include "err.h"
#include "kube.h"
#include "rest.h"

#include <stdint.h>

#define DISCOVERY_REFRESH_MS 500

typedef struct discovery discovery;
typedef struct discovery_req discovery_req;

typedef struct discovery_opts {
    uint64_t refresh_ms;   /* least time between two fetches of one group version;
                              0 = DISCOVERY_REFRESH_MS */
} discovery_opts;

/* c is borrowed and must outlive the discovery; o may be NULL. */
discovery *discovery_new(kube_client *c, const discovery_opts *o, kl_err *err);
/* Drops lookups still waiting (no callbacks) and frees every record. Not
 * from inside a discovery callback. */
void discovery_free(discovery *d);

/* The cache only, no I/O: the resource, or NULL when the group version has
 * not been fetched or does not hold it. */
const kube_resource *discovery_find(discovery *d, const char *api_version, const char *kind);
const kube_resource *discovery_find_resource(discovery *d, const char *api_version,
                                             const char *resource);

/* r: the resource (valid until discovery_free), or NULL and err says why:
 *   KL_EINVAL  an invalid apiVersion, or the server does not serve that
 *              kind: "no resource for kind K in AV (is the CRD installed?)";
 *   KL_EIO     no answer from the server (err names the URL);
 *   KL_EAPI    the server answered with another error, or not JSON. */
typedef void (*discovery_cb)(void *ud, const kube_resource *r, const kl_err *err);

/* Look up api_version + kind. cb is called exactly once, always from a loop
 * callback (never from inside this call), unless the request is cancelled
 * first. Returns NULL when out of memory (then cb is never called). */
discovery_req *discovery_lookup(discovery *d, const char *api_version, const char *kind,
                                discovery_cb cb, void *ud);
/* The same, for a controller that waits for its kinds as informers wait
 * for the server: a failure that says the server is not there yet (no
 * answer, 429, 5xx: an API server starting or restarting) does not answer
 * the lookup; it is retried with client-go's reflector backoff (800 ms
 * doubling to 30 s, jittered), logged once per group version until an
 * answer comes. A definite answer (the resource, not served, another
 * error) is delivered as by discovery_lookup. */
discovery_req *discovery_lookup_patient(discovery *d, const char *api_version, const char *kind,
                                        discovery_cb cb, void *ud);
/* No callback afterwards; r is freed. Not after its callback has run. */
void discovery_cancel(discovery_req *r);

/* Counters for tests and /metrics. */
typedef struct discovery_stats {
    unsigned long fetches;    /* group version documents requested */
    unsigned long hits;       /* lookups answered from the cache */
    unsigned long waits;      /* lookups that waited for a fetch */
} discovery_stats;
discovery_stats discovery_get_stats(const discovery *d);

#endif
