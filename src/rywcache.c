/* rywcache.c - read your own writes (see rywcache.h).
 *
 * Provides: rywcache_record(_obj), rywcache_record_delete, rywcache_lookup,
 * rywcache_each, rywcache_observe, rywcache_forget_store.
 * Uses: store (store_obj_new to decode a write's answer).
 *
 * A list, newest first: it holds the writes whose watch events have not
 * come yet, a handful at a time even under load, so a scan beats a hash.
 */
#include "rywcache.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct ryw_entry {
    struct ryw_entry *next;
    const store *st;          /* compared, never dereferenced */
    char *key;
    char *uid;                /* the deleted object's, or NULL (deletes) */
    store_obj *obj;           /* the written object; NULL = deleted */
    long long at_ms;
} ryw_entry;

static ryw_entry *entries;
static size_t nentries;

/* A write in flight and the versions the watch brought meanwhile. */
struct ryw_pending {
    ryw_pending *next, **prevp;
    const store *st;
    char *key;
    char *seen[RYWCACHE_SEEN_MAX];  /* resourceVersions; "" = a delete */
    int nseen, overflow;
};

static ryw_pending *pendings;

ryw_pending *rywcache_begin(const store *st, const char *key)
{
    if (!key || !*key)
        return NULL;
    ryw_pending *p = calloc(1, sizeof *p);
    if (!p || !(p->key = strdup(key))) {
        free(p);
        return NULL;
    }
    p->st = st;
    p->next = pendings;
    if (pendings)
        pendings->prevp = &p->next;
    p->prevp = &pendings;
    pendings = p;
    return p;
}

void rywcache_abandon(ryw_pending *p)
{
    if (!p)
        return;
    *p->prevp = p->next;
    if (p->next)
        p->next->prevp = p->prevp;
    for (int i = 0; i < p->nseen; i++)
        free(p->seen[i]);
    free(p->key);
    free(p);
}

/* Did the watch bring rv (or, rv NULL, a delete) while p was in flight? 1
 * also when too many events came to tell. */
static int seen(const ryw_pending *p, const char *rv)
{
    if (!p)
        return 0;
    if (p->overflow)
        return 1;
    for (int i = 0; i < p->nseen; i++)
        if (!strcmp(p->seen[i], rv ? rv : ""))
            return 1;
    return 0;
}

static void note(const store *st, const char *key, const store_obj *cur)
{
    for (ryw_pending *p = pendings; p; p = p->next) {
        if (p->st != st || strcmp(p->key, key) != 0 || p->overflow)
            continue;
        if (p->nseen == RYWCACHE_SEEN_MAX || !(p->seen[p->nseen] = strdup(cur && cur->rv ? cur->rv : "")))
            p->overflow = 1;
        else
            p->nseen++;
    }
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void entry_free(ryw_entry *e)
{
    store_obj_free(e->obj);
    free(e->key);
    free(e->uid);
    free(e);
    nentries--;
}

/* Unlink and free *pp; pp then points at the next entry. */
static void drop(ryw_entry **pp)
{
    ryw_entry *e = *pp;
    *pp = e->next;
    entry_free(e);
}

/* Drop expired entries, and the oldest past the cap. */
static void expire(void)
{
    long long cutoff = now_ms() - RYWCACHE_MAX_AGE_MS;
    size_t i = 0;
    for (ryw_entry **pp = &entries; *pp;) {
        if ((*pp)->at_ms < cutoff || i >= RYWCACHE_MAX_ENTRIES)
            drop(pp);
        else {
            pp = &(*pp)->next;
            i++;
        }
    }
}

static ryw_entry **find(const store *st, const char *key)
{
    for (ryw_entry **pp = &entries; *pp; pp = &(*pp)->next)
        if ((*pp)->st == st && !strcmp((*pp)->key, key))
            return pp;
    return NULL;
}

/* Replace any entry for (st, key) with e (takes e). */
static void put(ryw_entry *e)
{
    ryw_entry **old = find(e->st, e->key);
    if (old)
        drop(old);
    e->at_ms = now_ms();
    e->next = entries;
    entries = e;
    nentries++;
    if (nentries > RYWCACHE_MAX_ENTRIES)
        expire();
}

int rywcache_record(const store *st, ryw_pending *p, const char *json, size_t len)
{
    kl_err err = {0};
    return rywcache_record_obj(st, p, store_obj_new(json, len, &err));
}

int rywcache_record_obj(const store *st, ryw_pending *p, store_obj *o)
{
    int first = o && o->rv && seen(p, o->rv);
    rywcache_abandon(p);
    if (!o)
        return -1;
    const store_obj *cur = store_get(st, o->key);
    if (first || (cur && cur->rv && o->rv && !strcmp(cur->rv, o->rv))) {
        /* the watch was first: the store has it already, or newer */
        ryw_entry **old = find(st, o->key);
        if (old)
            drop(old);
        store_obj_free(o);
        return 0;
    }
    ryw_entry *e = calloc(1, sizeof *e);
    if (!e || !(e->key = strdup(o->key))) {
        free(e);
        store_obj_free(o);
        return -1;
    }
    e->st = st;
    e->obj = o;
    put(e);
    return 0;
}

int rywcache_record_delete(const store *st, ryw_pending *p, const char *key, const char *uid)
{
    int first = seen(p, NULL);
    rywcache_abandon(p);
    const store_obj *cur = store_get(st, key);
    ryw_entry **old = find(st, key);
    if (!cur || first) {          /* the watch was first (or it was never cached) */
        if (old)
            drop(old);
        return 0;
    }
    ryw_entry *e = calloc(1, sizeof *e);
    if (!e || !(e->key = strdup(key)) ||
        !(e->uid = strdup(uid && *uid ? uid : (cur->uid ? cur->uid : "")))) {
        if (e)
            free(e->key);
        free(e);
        return -1;
    }
    e->st = st;
    put(e);
    return 0;
}

int rywcache_lookup(const store *st, const char *key, const store_obj **obj)
{
    if (!entries)
        return 0;
    ryw_entry **pp = find(st, key);
    if (!pp)
        return 0;
    if ((*pp)->at_ms < now_ms() - RYWCACHE_MAX_AGE_MS) {
        drop(pp);
        return 0;
    }
    *obj = (*pp)->obj;
    return 1;
}

void rywcache_each(const store *st, int (*cb)(void *ud, const store_obj *o), void *ud)
{
    for (ryw_entry *e = entries; e; e = e->next)
        if (e->st == st && e->obj && cb(ud, e->obj))
            return;
}

/* Whether cur (NULL: removed) supersedes what e recorded. */
static int superseded(const ryw_entry *e, const store_obj *cur)
{
    if (!cur)
        return 1;                 /* removed after our write, or our delete arrived */
    const char *uid = e->obj ? e->obj->uid : e->uid;
    if (uid && *uid && cur->uid && strcmp(uid, cur->uid) != 0)
        return 1;                 /* another object under the same name */
    return e->obj && e->obj->rv && cur->rv && !strcmp(e->obj->rv, cur->rv);
}

void rywcache_observe(const store *st, const char *key, const store_obj *cur)
{
    if (pendings)
        note(st, key, cur);
    if (!entries)
        return;
    ryw_entry **pp = find(st, key);
    if (pp && superseded(*pp, cur))
        drop(pp);
}

void rywcache_forget_store(const store *st)
{
    for (ryw_pending *p = pendings; p; p = p->next)
        if (p->st == st)
            p->st = NULL;         /* answers for it go nowhere */
    for (ryw_entry **pp = &entries; *pp;) {
        if ((*pp)->st == st)
            drop(pp);
        else
            pp = &(*pp)->next;
    }
}

size_t rywcache_len(void) { return nentries; }
