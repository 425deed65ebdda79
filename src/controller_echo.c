/* controller_echo.c - a controller's own writes (see controller_echo.h).
 *
 * Provides: controller_echo_new/free/wrote/is/clear/len.
 * Uses: util (FNV-1a).
 *
 * A chained hash on (uid, rv) for lookups and a FIFO list in write order
 * for expiry: writes come in time order, so the oldest entry is always at
 * the head and expiry is a pop.
 */
#include "controller_echo.h"

#include "util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct echo_entry {
    struct echo_entry *chain;      /* same bucket */
    struct echo_entry *older_next; /* FIFO: the next younger entry */
    uint64_t hash;
    long long at_ms;
    char *key, *uid, *rv;          /* one allocation, key first */
} echo_entry;

struct controller_echo {
    echo_entry **buckets;
    size_t nbuckets;               /* a power of two */
    size_t len;
    echo_entry *oldest, *youngest;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t hash_of(const char *uid, const char *rv)
{
    uint64_t h = kl_fnv1a(uid, strlen(uid) + 1);  /* the NUL separates the two */
    return kl_fnv1a_more(h, rv, strlen(rv));
}

controller_echo *controller_echo_new(void)
{
    controller_echo *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->nbuckets = 64;
    if (!(e->buckets = calloc(e->nbuckets, sizeof *e->buckets))) {
        free(e);
        return NULL;
    }
    return e;
}

void controller_echo_free(controller_echo *e)
{
    if (!e)
        return;
    for (echo_entry *x = e->oldest, *next; x; x = next) {
        next = x->older_next;
        free(x);
    }
    free(e->buckets);
    free(e);
}

/* Unlink and free the oldest entry. */
static void pop_oldest(controller_echo *e)
{
    echo_entry *x = e->oldest;
    echo_entry **pp = &e->buckets[x->hash & (e->nbuckets - 1)];
    while (*pp != x)
        pp = &(*pp)->chain;
    *pp = x->chain;
    e->oldest = x->older_next;
    if (!e->oldest)
        e->youngest = NULL;
    e->len--;
    free(x);
}

static void expire(controller_echo *e, long long now)
{
    while (e->oldest &&
           (e->oldest->at_ms < now - CONTROLLER_ECHO_MAX_AGE_MS || e->len > CONTROLLER_ECHO_MAX))
        pop_oldest(e);
}

/* Double the buckets; on failure keep the old ones (longer chains). */
static void grow(controller_echo *e)
{
    size_t n = e->nbuckets * 2;
    echo_entry **b = calloc(n, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < e->nbuckets; i++) {
        for (echo_entry *x = e->buckets[i], *next; x; x = next) {
            next = x->chain;
            x->chain = b[x->hash & (n - 1)];
            b[x->hash & (n - 1)] = x;
        }
    }
    free(e->buckets);
    e->buckets = b;
    e->nbuckets = n;
}

static echo_entry *find(const controller_echo *e, uint64_t h, const char *key, const char *uid,
                        const char *rv)
{
    for (echo_entry *x = e->buckets[h & (e->nbuckets - 1)]; x; x = x->chain)
        if (x->hash == h && !strcmp(x->uid, uid) && !strcmp(x->rv, rv) && !strcmp(x->key, key))
            return x;
    return NULL;
}

int controller_echo_wrote(controller_echo *e, const char *key, const char *uid, const char *rv)
{
    if (!e || !key || !uid || !*uid || !rv || !*rv)
        return -1;
    long long now = now_ms();
    expire(e, now);
    uint64_t h = hash_of(uid, rv);
    if (find(e, h, key, uid, rv))
        return 0;
    size_t lk = strlen(key) + 1, lu = strlen(uid) + 1, lr = strlen(rv) + 1;
    echo_entry *x = malloc(sizeof *x + lk + lu + lr);
    if (!x)
        return -1;
    x->key = (char *)(x + 1);
    x->uid = x->key + lk;
    x->rv = x->uid + lu;
    memcpy(x->key, key, lk);
    memcpy(x->uid, uid, lu);
    memcpy(x->rv, rv, lr);
    x->hash = h;
    x->at_ms = now;
    x->older_next = NULL;
    if (e->len >= e->nbuckets)
        grow(e);
    echo_entry **b = &e->buckets[h & (e->nbuckets - 1)];
    x->chain = *b;
    *b = x;
    if (e->youngest)
        e->youngest->older_next = x;
    else
        e->oldest = x;
    e->youngest = x;
    e->len++;
    expire(e, now);            /* the cap */
    return 0;
}

int controller_echo_is(controller_echo *e, const char *key, const char *uid, const char *rv)
{
    if (!e || !e->len || !key || !uid || !*uid || !rv || !*rv)
        return 0;
    expire(e, now_ms());
    return find(e, hash_of(uid, rv), key, uid, rv) != NULL;
}

void controller_echo_clear(controller_echo *e)
{
    while (e && e->oldest)
        pop_oldest(e);
}

size_t controller_echo_len(const controller_echo *e) { return e ? e->len : 0; }
