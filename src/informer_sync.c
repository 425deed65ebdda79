/* informer_sync.c - the end of a LIST or streaming list.
 *
 * Provides: (informer_int.h) the keyset a relist fills with the keys it
 * has seen; at the end of a sync, the objects of a relist that vanished
 * while nothing watched become deletes, the failure run and /healthz are
 * reset, and the synced listeners hear of the first sync.
 * Uses: informer_int, store, health, log.
 */
#include "informer_int.h"

#include "health.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t hash_str(const char *s)
{
    return (size_t)kl_fnv1a(s, strlen(s));
}

void informer_keyset_clear(keyset *ks)
{
    for (size_t i = 0; i < ks->cap; i++)
        free(ks->slots[i]);
    free(ks->slots);
    memset(ks, 0, sizeof *ks);
}

int informer_keyset_add(keyset *ks, const char *key)
{
    if ((ks->len + 1) * 2 > ks->cap) {
        size_t ncap = ks->cap ? ks->cap * 2 : 1024;
        char **ns = calloc(ncap, sizeof *ns);
        if (!ns)
            return -1;
        for (size_t i = 0; i < ks->cap; i++) {
            if (!ks->slots[i])
                continue;
            size_t j = hash_str(ks->slots[i]) & (ncap - 1);
            while (ns[j])
                j = (j + 1) & (ncap - 1);
            ns[j] = ks->slots[i];
        }
        free(ks->slots);
        ks->slots = ns;
        ks->cap = ncap;
    }
    size_t j = hash_str(key) & (ks->cap - 1);
    while (ks->slots[j]) {
        if (!strcmp(ks->slots[j], key))
            return 0;
        j = (j + 1) & (ks->cap - 1);
    }
    if (!(ks->slots[j] = strdup(key)))
        return -1;
    ks->len++;
    return 0;
}

static int keyset_has(const keyset *ks, const char *key)
{
    if (!ks->cap)
        return 0;
    size_t j = hash_str(key) & (ks->cap - 1);
    while (ks->slots[j]) {
        if (!strcmp(ks->slots[j], key))
            return 1;
        j = (j + 1) & (ks->cap - 1);
    }
    return 0;
}

struct vanished {
    informer *inf;
    char **keys;
    size_t n, cap;
};

static int collect_vanished(void *ud, const store_obj *o)
{
    struct vanished *v = ud;
    if (keyset_has(&v->inf->seen, o->key))
        return 0;
    if (v->n == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 16;
        char **nk = realloc(v->keys, ncap * sizeof *nk);
        if (!nk)
            return 1;
        v->keys = nk;
        v->cap = ncap;
    }
    if (!(v->keys[v->n] = strdup(o->key)))
        return 1;
    v->n++;
    return 0;
}

/* Unlinks the listeners removed while they were being called. */
void informer_prune_listeners(informer *inf)
{
    synced_listener **pp = &inf->listeners;
    while (*pp) {
        synced_listener *l = *pp;
        if (l->cb) {
            pp = &l->next;
        } else {
            *pp = l->next;
            free(l);
        }
    }
}

static void fire_synced_listeners(informer *inf)
{
    inf->firing_listeners = 1;
    for (synced_listener *l = inf->listeners; l; l = l->next)
        if (l->cb)
            l->cb(l->ud, inf);
    inf->firing_listeners = 0;
    informer_prune_listeners(inf);
}

/* The first LIST (or streaming list) is in the store: vanished objects of a
 * relist become deletes, the synced listeners hear of it. */
void informer_finish_sync(informer *inf)
{
    if (inf->relisting) {
        /* Objects missing from the new list vanished while we were not
         * watching: their final state is unknown, the last cached one is
         * what handlers get. Collect first: the store must not change
         * while it is being visited. */
        struct vanished v = {inf, NULL, 0, 0};
        store_each(inf->store, collect_vanished, &v);
        for (size_t i = 0; i < v.n; i++) {
            kl_log(KL_LOG_V1, "object vanished during relist", "resource", inf->res.resource, "key",
                   v.keys[i], NULL);
            informer_apply_delete(inf, v.keys[i], NULL);
            free(v.keys[i]);
        }
        free(v.keys);
        informer_note_size(inf);
    }
    informer_keyset_clear(&inf->seen);
    inf->relisting = 0;
    inf->failure_reported = 0;
    health_informer_ok(inf);
    int first = !inf->synced;
    inf->synced = 1;
    if (first) {
        char n[32];
        snprintf(n, sizeof n, "%zu", store_len(inf->store));
        kl_log(KL_LOG_V1, "cache synced", "resource", inf->res.resource, "objects", n, NULL);
        fire_synced_listeners(inf);
    }
}
