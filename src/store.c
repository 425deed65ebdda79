/* store.c - the informer cache: objects by key, with indexes.
 *
 * Provides: store_obj_* and store_* (store.h).
 * Uses: json (metadata extraction), labels (selectors), store_arena (where
 * stored objects live), buf, err.
 *
 * Memory is the point of this file's shape (DESIGN.md: "an object in the
 * cache should cost little more than its JSON"):
 *   - a store_obj is ONE block: the struct, its owner uid pointers, its
 *     metadata strings (label pairs one after another, no pointers) and the
 *     JSON bytes follow each other, so store_obj_free is a single free().
 *     The token array used to read the metadata is dropped before returning.
 *   - a stored object is that block copied into the store's arena
 *     (store_arena.h): packed 8-byte aligned, no malloc header, and apart
 *     from the short-lived allocations of the same moment, so no hole is
 *     left between two cached objects. Dead copies (replaced, removed) are
 *     reclaimed by moving the live objects of the sparsest blocks
 *     (compact), which repoints the tables; that is why a pointer into the
 *     store is good only until the store next changes (store.h).
 *   - indexes are built on the first query that needs one (ensure_*).
 *   - the tables are open addressing with linear probing over bare pointers
 *     (8 bytes a slot, no per-entry nodes); deletion shifts entries back
 *     instead of leaving tombstones, so churn does not degrade lookups.
 *   - an index is a map from a name ("default", "app=web", an owner uid) to
 *     a set of object pointers; an index set holds its name inline and is
 *     freed as soon as it becomes empty.
 * Index sets hold object pointers, not key copies: a replace unindexes the old
 * object and indexes the new one, and a move repoints it, so no pointer
 * outlives its object.
 *
 * Iteration visits the live tables: a visit callback must not change the
 * store (no put or remove from inside store_each*). The reflector changes the
 * store between visits, never during one, since everything runs on the loop
 * thread.
 */
#include "store.h"

#include "buf.h"
#include "json.h"
#include "labels.h"
#include "store_arena.h"
#include "util.h"

#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- hashing ---- */

static size_t mix(uint64_t h) { return (size_t)(h ^ (h >> 31)); }

/* "a" or "a=b": the index names, hashed without building the string. */
static size_t hash_pair(const char *a, const char *b)
{
    uint64_t h = kl_fnv1a(a, strlen(a));
    if (b) {
        h = kl_fnv1a_more(h, "=", 1);
        h = kl_fnv1a_more(h, b, strlen(b));
    }
    return mix(h);
}

static size_t hash_ptr(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull;
    return (size_t)(x ^ (x >> 32));
}

/* ---- open addressing tables of pointers ---- */

/* Three kinds of entries share the table code: objects keyed by o->key,
 * index sets keyed by their name, and bare object pointers (set members). */
enum { T_OBJ, T_IDX, T_PTR };

typedef struct table {
    void **slots;   /* NULL = empty; cap is 0 or a power of two */
    size_t cap, len;
} table;

typedef struct idx_key {
    const char *a, *b;  /* the name is a, or "a=b" when b is set */
} idx_key;

typedef struct idx_set {
    size_t hash;
    table members;      /* store_obj pointers (not owned) */
    char name[];        /* "a" or "a=b" */
} idx_set;

static size_t entry_hash(int kind, const void *e)
{
    switch (kind) {
    case T_OBJ: return hash_pair(((const store_obj *)e)->key, NULL);
    case T_IDX: return ((const idx_set *)e)->hash;
    default: return hash_ptr(e);
    }
}

static size_t key_hash(int kind, const void *key)
{
    switch (kind) {
    case T_OBJ: return hash_pair(key, NULL);
    case T_IDX: return hash_pair(((const idx_key *)key)->a, ((const idx_key *)key)->b);
    default: return hash_ptr(key);
    }
}

static int entry_eq(int kind, const void *e, const void *key)
{
    if (kind == T_OBJ)
        return strcmp(((const store_obj *)e)->key, key) == 0;
    if (kind == T_PTR)
        return e == key;
    const char *name = ((const idx_set *)e)->name;
    const idx_key *k = key;
    if (!k->b)
        return strcmp(name, k->a) == 0;
    size_t n = strlen(k->a);
    return strncmp(name, k->a, n) == 0 && name[n] == '=' && strcmp(name + n + 1, k->b) == 0;
}

/* Index of the slot holding key, or of the empty slot where it would go. */
static size_t tab_probe(const table *t, int kind, const void *key, size_t h)
{
    size_t mask = t->cap - 1, i = h & mask;
    while (t->slots[i] && !entry_eq(kind, t->slots[i], key))
        i = (i + 1) & mask;
    return i;
}

static void **tab_find(const table *t, int kind, const void *key)
{
    if (!t->len)
        return NULL;
    size_t i = tab_probe(t, kind, key, key_hash(kind, key));
    return t->slots[i] ? &t->slots[i] : NULL;
}

/* e must not be present; room must have been reserved. */
static void tab_insert(table *t, int kind, void *e)
{
    size_t mask = t->cap - 1, i = entry_hash(kind, e) & mask;
    while (t->slots[i])
        i = (i + 1) & mask;
    t->slots[i] = e;
    t->len++;
}

/* Make room for one more entry (load at most 3/4). Slot pointers taken
 * before this call are invalid after it. */
static int tab_reserve(table *t, int kind)
{
    if ((t->len + 1) * 4 <= t->cap * 3)
        return 0;
    size_t cap = t->cap ? t->cap * 2 : 2; /* 2 slots hold one entry */
    table nt = {calloc(cap, sizeof(void *)), cap, 0};
    if (!nt.slots)
        return -1;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i])
            tab_insert(&nt, kind, t->slots[i]);
    free(t->slots);
    *t = nt;
    return 0;
}

/* Backward-shift deletion: later entries of the probe run move up so that
 * every entry stays reachable from its home slot without tombstones. */
static void tab_remove_at(table *t, int kind, size_t i)
{
    size_t mask = t->cap - 1, j = i;
    t->slots[i] = NULL;
    t->len--;
    for (;;) {
        j = (j + 1) & mask;
        if (!t->slots[j])
            break;
        size_t home = entry_hash(kind, t->slots[j]) & mask;
        /* the entry at j may move to i unless its home lies in (i, j] */
        int stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (!stays) {
            t->slots[i] = t->slots[j];
            t->slots[j] = NULL;
            i = j;
        }
    }
}

/* ---- objects ---- */

/* Where an object's block lives (store_obj.held). */
enum {
    HELD_MALLOC,    /* from store_obj_new/_from_doc, or too large for an arena */
    HELD_STORED,    /* in a store's arena, held by the store */
    HELD_DETACHED,  /* in an arena, removed or replaced: its caller owns it */
    HELD_DEAD       /* in an arena, freed */
};

_Static_assert(sizeof(store_obj) <= STORE_ARENA_PIECE_HEADER, "the arena keeps the header readable");

/* The metadata strings of one object while it is being built: unescaped,
 * NUL-terminated, one after another in strs; offs[] says where each starts
 * (S_* first, then label key/value pairs, then owner uids). */
enum { S_NS, S_KEY, S_UID, S_RV, S_FIXED };

typedef struct meta_strs {
    kl_buf strs;
    size_t *offs;
    size_t nlabels, nowners;
    size_t name_off;  /* where the name starts inside the key */
} meta_strs;

/* Append a JSON string token's unescaped text and a NUL at offs[i]; an
 * absent token gives "". */
static int put_str(meta_strs *m, const json_doc *d, int tok, size_t i)
{
    m->offs[i] = m->strs.len;
    if (tok >= 0 && json_str_append(d, tok, &m->strs) != 0)
        return -1;
    return kl_buf_putc(&m->strs, '\0');
}

static int is_type(const json_doc *d, int tok, int type)
{
    return tok >= 0 && d->toks[tok].type == type;
}

static int str_or_absent(const json_doc *d, int tok) { return is_type(d, tok, JSON_STRING) ? tok : -1; }

/* Gather the strings of metadata (an object token). -1 = out of memory. */
static int gather(meta_strs *m, const json_doc *d, int meta, int name)
{
    int ns = str_or_absent(d, json_obj_get(d, meta, "namespace"));
    int labels = json_obj_get(d, meta, "labels");
    int owners = json_obj_get(d, meta, "ownerReferences");
    size_t nlabels = is_type(d, labels, JSON_OBJECT) ? d->toks[labels].size : 0;
    size_t nowners = is_type(d, owners, JSON_ARRAY) ? d->toks[owners].size : 0;
    if (!(m->offs = malloc((S_FIXED + 2 * nlabels + nowners) * sizeof *m->offs)))
        return -1;
    if (put_str(m, d, ns, S_NS) < 0)
        return -1;
    /* the key is "ns/name" or "name"; o->name points into it */
    m->offs[S_KEY] = m->strs.len;
    int has_ns = ns >= 0 && d->toks[ns].start != d->toks[ns].end;
    if (has_ns && (json_str_append(d, ns, &m->strs) != 0 || kl_buf_putc(&m->strs, '/') != 0))
        return -1;
    m->name_off = m->strs.len - m->offs[S_KEY];
    if (json_str_append(d, name, &m->strs) != 0 || kl_buf_putc(&m->strs, '\0') != 0)
        return -1;
    if (put_str(m, d, str_or_absent(d, json_obj_get(d, meta, "uid")), S_UID) < 0 ||
        put_str(m, d, str_or_absent(d, json_obj_get(d, meta, "resourceVersion")), S_RV) < 0)
        return -1;
    /* labels: members are (key, value) token pairs; non-string values are
     * not valid labels and are skipped, and so are strings holding a NUL
     * ("\u0000"): the pairs are kept as NUL-terminated strings one after
     * another, which one inside would shift */
    int k = labels + 1;
    for (size_t i = 0; i < nlabels; i++, k = (int)d->toks[k + 1].next) {
        if (!is_type(d, k + 1, JSON_STRING))
            continue;
        size_t at = S_FIXED + 2 * m->nlabels, start = m->strs.len;
        if (put_str(m, d, k, at) < 0 || put_str(m, d, k + 1, at + 1) < 0)
            return -1;
        const char *pair = m->strs.data + start;
        size_t klen = strlen(pair);
        if (start + klen + 1 + strlen(pair + klen + 1) + 1 != m->strs.len) {
            m->strs.len = start; /* a NUL inside: drop the pair */
            m->strs.data[start] = '\0';
            continue;
        }
        m->nlabels++;
    }
    int e = owners + 1;
    for (size_t i = 0; i < nowners; i++, e = (int)d->toks[e].next) {
        int uid = str_or_absent(d, json_obj_get(d, e, "uid"));
        if (uid < 0)
            continue;
        if (put_str(m, d, uid, S_FIXED + 2 * m->nlabels + m->nowners) < 0)
            return -1;
        m->nowners++;
    }
    return 0;
}

/* One block: struct | owner pointers | strings | json NUL. The label
 * pairs are strings one after another, with no pointers of their own.
 * Caller owns the result (store_obj_free). */
static store_obj *assemble(const meta_strs *m, const char *json, size_t len)
{
    size_t nl = m->nlabels, no = m->nowners, nptrs = no;
    size_t head = sizeof(store_obj) + nptrs * sizeof(char *);
    store_obj *o = malloc(head + m->strs.len + len + 1);
    if (!o)
        return NULL;
    char **ptrs = (char **)(o + 1);
    char *sp = (char *)o + head;
    memcpy(sp, m->strs.data, m->strs.len);
    o->json = sp + m->strs.len;
    memcpy(o->json, json, len);
    o->json[len] = '\0';
    o->json_len = (uint32_t)len;
    o->ns = sp + m->offs[S_NS];
    o->key = sp + m->offs[S_KEY];
    o->name = o->key + m->name_off;
    o->uid = sp + m->offs[S_UID];
    o->rv = sp + m->offs[S_RV];
    for (size_t i = 0; i < nptrs; i++)
        ptrs[i] = sp + m->offs[S_FIXED + 2 * nl + i];
    o->labels = nl ? sp + m->offs[S_FIXED] : NULL; /* the pairs follow one another */
    o->nlabels = (uint32_t)nl;
    o->owner_uids = no ? ptrs : NULL;
    o->nowners = (uint32_t)no;
    o->held = HELD_MALLOC;
    o->units = 0;
    return o;
}

/* Caller owns the result (store_obj_free); every field points into it. */
store_obj *store_obj_from_doc(const json_doc *d, int root, const char *json, size_t len,
                              kl_err *err)
{
    store_obj *o = NULL;
    meta_strs m = {KL_BUF_INIT, NULL, 0, 0, 0};
    int meta = json_obj_get(d, root, "metadata");
    int name = json_obj_get(d, meta, "name");
    if (!is_type(d, meta, JSON_OBJECT)) {
        kl_err_set(err, KL_EINVAL, "cannot cache object: it has no metadata");
        goto out;
    }
    if (!is_type(d, name, JSON_STRING) || d->toks[name].start == d->toks[name].end) {
        kl_err_set(err, KL_EINVAL, "cannot cache object: it has no metadata.name");
        goto out;
    }
    if (len >= UINT32_MAX) {
        kl_err_set(err, KL_EINVAL, "cannot cache object: it is larger than 4 GiB");
        goto out;
    }
    if (gather(&m, d, meta, name) < 0 || !(o = assemble(&m, json, len))) {
        kl_err_set(err, KL_ENOMEM, "cannot cache object: out of memory");
        goto out;
    }
    int64_t gen = 0;
    o->generation = json_get_int64(d, json_obj_get(d, meta, "generation"), &gen) == 0 ? gen : 0;
    int del = json_obj_get(d, meta, "deletionTimestamp");
    o->deleting = del >= 0 && d->toks[del].type != JSON_NULL;
out:
    free(m.offs);
    kl_buf_free(&m.strs);
    return o;
}

/* Caller owns the result (store_obj_free). */
store_obj *store_obj_new(const char *json, size_t len, kl_err *err)
{
    json_doc d = {0};
    store_obj *o = NULL;
    if (json_parse(&d, json, len, err) < 0)
        kl_err_wrap(err, "cannot cache object");
    else
        o = store_obj_from_doc(&d, 0, json, len, err);
    json_doc_free(&d);
    return o;
}

/* Bytes of o's block: the JSON and its NUL come last. */
static size_t obj_size(const store_obj *o)
{
    return (size_t)(o->json + o->json_len + 1 - (const char *)o);
}

void store_obj_free(store_obj *o)
{
    if (!o)
        return;
    if (o->held == HELD_MALLOC) {
        free(o);
        return;
    }
    if (o->held == HELD_DEAD)
        abort(); /* freed twice: as malloc would under ASan, stop here */
    o->held = HELD_DEAD;
    store_arena_release(o, (size_t)o->units * 8);
}

/* One label pair at p: *k and *v; returns where the next pair starts. */
static const char *label_pair(const char *p, const char **k, const char **v)
{
    *k = p;
    *v = p + strlen(p) + 1;
    return *v + strlen(*v) + 1;
}

const char *store_obj_label(const store_obj *o, const char *key)
{
    const char *p = o->labels, *k, *v;
    for (size_t i = 0; i < o->nlabels; i++) {
        p = label_pair(p, &k, &v);
        if (strcmp(k, key) == 0)
            return v;
    }
    return NULL;
}

/* ---- indexes ---- */

/* Indexes are built on first use: a store nobody queries by namespace,
 * label or owner pays nothing for them (most controllers only get by key),
 * and one that is queried keeps them up to date from then on. */
struct store {
    table objs;      /* store_obj (owned) by key */
    table by_ns;     /* idx_set (owned) by namespace, once ns_built */
    table by_label;  /* idx_set (owned) by "key=value", for the keys in label_keys */
    table by_owner;  /* idx_set (owned) by owner uid, once owner_built */
    char **label_keys; /* the label keys indexed (owned) */
    size_t nlabel_keys;
    int ns_built, owner_built;
    size_t obj_bytes;  /* of the objects held */
    store_arena *arena;
};

/* Caller owns the result (store_free). */
store *store_new(void)
{
    store *s = calloc(1, sizeof(store));
    if (s && !(s->arena = store_arena_new())) {
        free(s);
        s = NULL;
    }
    return s;
}

static void free_index(table *t)
{
    for (size_t i = 0; i < t->cap; i++) {
        idx_set *set = t->slots[i];
        if (set) {
            free(set->members.slots);
            free(set);
        }
    }
    free(t->slots);
    *t = (table){NULL, 0, 0};
}

static void drop_label_index(store *s)
{
    free_index(&s->by_label);
    for (size_t i = 0; i < s->nlabel_keys; i++)
        free(s->label_keys[i]);
    free(s->label_keys);
    s->label_keys = NULL;
    s->nlabel_keys = 0;
}

void store_free(store *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->objs.cap; i++)
        store_obj_free(s->objs.slots[i]);
    free(s->objs.slots);
    free_index(&s->by_ns);
    drop_label_index(s);
    free_index(&s->by_owner);
    store_arena_free(s->arena);
    free(s);
}

static idx_set *index_find(const table *map, const char *a, const char *b)
{
    idx_key k = {a, b};
    void **slot = tab_find(map, T_IDX, &k);
    return slot ? *slot : NULL;
}

/* Add o to the set named a (or a=b). Idempotent. */
static int index_add(table *map, const char *a, const char *b, store_obj *o)
{
    idx_set *set = index_find(map, a, b);
    if (!set) {
        size_t na = strlen(a), nb = b ? strlen(b) + 1 : 0;
        if (tab_reserve(map, T_IDX) < 0 || !(set = calloc(1, sizeof *set + na + nb + 1)))
            return -1;
        memcpy(set->name, a, na);
        if (b) {
            set->name[na] = '=';
            memcpy(set->name + na + 1, b, nb - 1);
        }
        set->name[na + nb] = '\0';
        set->hash = hash_pair(a, b);
        tab_insert(map, T_IDX, set);
    }
    if (tab_find(&set->members, T_PTR, o))
        return 0;
    if (tab_reserve(&set->members, T_PTR) < 0)
        return -1; /* an empty new set is removed by the caller's unindex */
    tab_insert(&set->members, T_PTR, o);
    return 0;
}

/* Remove o from the set; a set left empty is freed. Never allocates. */
static void index_del(table *map, const char *a, const char *b, const store_obj *o)
{
    idx_key k = {a, b};
    void **slot = tab_find(map, T_IDX, &k);
    if (!slot)
        return;
    idx_set *set = *slot;
    void **m = tab_find(&set->members, T_PTR, o);
    if (m)
        tab_remove_at(&set->members, T_PTR, (size_t)(m - set->members.slots));
    if (set->members.len == 0) {
        tab_remove_at(map, T_IDX, (size_t)(slot - map->slots));
        free(set->members.slots);
        free(set);
    }
}

static int label_indexed(const store *s, const char *key)
{
    for (size_t i = 0; i < s->nlabel_keys; i++)
        if (strcmp(s->label_keys[i], key) == 0)
            return 1;
    return 0;
}

static void unindex_obj(store *s, const store_obj *o)
{
    if (s->ns_built)
        index_del(&s->by_ns, o->ns, NULL, o);
    const char *p = o->labels, *k, *v;
    for (size_t i = 0; s->nlabel_keys && i < o->nlabels; i++) {
        p = label_pair(p, &k, &v);
        if (label_indexed(s, k))
            index_del(&s->by_label, k, v, o);
    }
    for (size_t i = 0; s->owner_built && i < o->nowners; i++)
        index_del(&s->by_owner, o->owner_uids[i], NULL, o);
}

/* All or nothing: on failure o is in no index. */
static int index_obj(store *s, store_obj *o)
{
    int rc = s->ns_built ? index_add(&s->by_ns, o->ns, NULL, o) : 0;
    const char *p = o->labels, *k, *v;
    for (size_t i = 0; rc == 0 && s->nlabel_keys && i < o->nlabels; i++) {
        p = label_pair(p, &k, &v);
        if (label_indexed(s, k))
            rc = index_add(&s->by_label, k, v, o);
    }
    for (size_t i = 0; rc == 0 && s->owner_built && i < o->nowners; i++)
        rc = index_add(&s->by_owner, o->owner_uids[i], NULL, o);
    if (rc < 0)
        unindex_obj(s, o);
    return rc;
}

/* Build an index on first use. -1 (out of memory): the index stays unbuilt
 * and the caller scans instead. */
static int ensure_ns_index(store *s)
{
    for (size_t i = 0; !s->ns_built && i < s->objs.cap; i++)
        if (s->objs.slots[i] && index_add(&s->by_ns, ((store_obj *)s->objs.slots[i])->ns, NULL,
                                          s->objs.slots[i]) < 0) {
            free_index(&s->by_ns);
            return -1;
        }
    s->ns_built = 1;
    return 0;
}

static int ensure_owner_index(store *s)
{
    for (size_t i = 0; !s->owner_built && i < s->objs.cap; i++) {
        store_obj *o = s->objs.slots[i];
        for (size_t j = 0; o && j < o->nowners; j++)
            if (index_add(&s->by_owner, o->owner_uids[j], NULL, o) < 0) {
                free_index(&s->by_owner);
                return -1;
            }
    }
    s->owner_built = 1;
    return 0;
}

static int ensure_label_index(store *s, const char *key)
{
    if (label_indexed(s, key))
        return 0;
    char **keys = realloc(s->label_keys, (s->nlabel_keys + 1) * sizeof *keys);
    if (!keys)
        return -1;
    s->label_keys = keys;
    if (!(keys[s->nlabel_keys] = strdup(key)))
        return -1;
    s->nlabel_keys++;
    for (size_t i = 0; i < s->objs.cap; i++) {
        store_obj *o = s->objs.slots[i];
        const char *p = o ? o->labels : NULL, *k, *v;
        for (size_t j = 0; o && j < o->nlabels; j++)
            if ((p = label_pair(p, &k, &v)) && strcmp(k, key) == 0 &&
                index_add(&s->by_label, key, v, o) < 0) {
                drop_label_index(s); /* every key: simpler than undoing one */
                return -1;
            }
    }
    return 0;
}

/* What malloc really holds for a request of n bytes (glibc: an 8-byte
 * header, 16-byte granules, 32 bytes at least). */
static size_t chunk(size_t n)
{
    size_t c = (n + 8 + 15) & ~(size_t)15;
    return c < 32 ? 32 : c;
}

static size_t obj_bytes(const store_obj *o)
{
    return o->held == HELD_MALLOC ? chunk(malloc_usable_size((void *)o)) : (size_t)o->units * 8;
}

/* to is a byte copy of from: make its pointers point into itself. */
static void rebase(const store_obj *from, store_obj *to)
{
#define REBASE(p) ((char *)to + ((const char *)(p) - (const char *)from))
    to->key = REBASE(from->key);
    to->ns = REBASE(from->ns);
    to->name = REBASE(from->name);
    to->uid = REBASE(from->uid);
    to->rv = REBASE(from->rv);
    to->json = REBASE(from->json);
    if (from->labels)
        to->labels = REBASE(from->labels);
    if (from->owner_uids) {
        to->owner_uids = (char **)REBASE(from->owner_uids);
        for (size_t i = 0; i < from->nowners; i++)
            to->owner_uids[i] = REBASE(from->owner_uids[i]);
    }
#undef REBASE
}

/* A copy of o in the arena (held: HELD_STORED), or NULL (too large, or
 * memory is short: the caller keeps o where it is). */
static store_obj *arena_copy(store *s, const store_obj *o)
{
    size_t n = obj_size(o);
    store_obj *c = store_arena_alloc(s->arena, n);
    if (!c)
        return NULL;
    memcpy(c, o, n);
    rebase(o, c);
    c->held = HELD_STORED;
    c->units = (uint16_t)((n + 7) / 8);
    return c;
}

/* In the set named a (or a=b), replace member from by to. Never allocates:
 * the member table loses one entry before it gains one. */
static void swap_member(table *map, const char *a, const char *b, const store_obj *from,
                        store_obj *to)
{
    idx_set *set = index_find(map, a, b);
    void **e = set ? tab_find(&set->members, T_PTR, from) : NULL;
    if (e) {
        tab_remove_at(&set->members, T_PTR, (size_t)(e - set->members.slots));
        tab_insert(&set->members, T_PTR, to);
    }
}

/* Point every table entry naming from at to, its copy (same key, labels
 * and owners). */
static void repoint(store *s, const store_obj *from, store_obj *to)
{
    void **slot = tab_find(&s->objs, T_OBJ, from->key);
    if (slot)
        *slot = to;
    if (s->ns_built)
        swap_member(&s->by_ns, to->ns, NULL, from, to);
    const char *p = to->labels, *k, *v;
    for (size_t i = 0; s->nlabel_keys && i < to->nlabels; i++) {
        p = label_pair(p, &k, &v);
        if (label_indexed(s, k))
            swap_member(&s->by_label, k, v, from, to);
    }
    for (size_t i = 0; s->owner_built && i < to->nowners; i++)
        swap_member(&s->by_owner, to->owner_uids[i], NULL, from, to);
}

/* Give the arena's dead space back: when more than a quarter of what it
 * handed out is dead (and at least two blocks' worth), move the objects of
 * the sparsest blocks to the block being filled, which frees those blocks,
 * until an eighth is dead or the sparsest block is more than half live
 * (moving it would cost more than it frees: the arena then holds at most
 * about twice its live bytes). Each byte moved frees at least as many, so
 * the copying is paid for by the updates that made the dead space. A block
 * also holding a removed object its caller still owns stays until that
 * object is freed. Runs at the start of put and remove, when no pointer
 * into the store is held (store.h). */
static void compact(store *s)
{
    store_arena *a = s->arena;
    size_t used = store_arena_used(a), dead = used - store_arena_live(a);
    if (dead < 2 * STORE_ARENA_BLOCK || dead * 4 < used)
        return;
    store_arena_block *pinned_blocks[8]; /* emptied but for objects a caller holds */
    size_t npinned = 0;
    while (dead * 8 > used) {
        char *p, *end;
        store_arena_block *b = store_arena_sparsest(a, pinned_blocks, npinned, &p, &end);
        if (!b)
            return;
        size_t left = store_arena_block_live(b);
        if (left * 2 > (size_t)(end - p))
            return; /* the sparsest is half full: moving it would cost more than it frees */
        int pinned = 0;
        while (left && p < end) {
            store_obj *o = (store_obj *)p;
            size_t n = (size_t)o->units * 8;
            p += n;
            if (o->held == HELD_DETACHED) {
                pinned = 1;
                left -= n;
            } else if (o->held == HELD_STORED) {
                store_obj *c = arena_copy(s, o);
                if (!c)
                    return; /* memory is short: keep what is where it is */
                repoint(s, o, c);
                left -= n;
                store_obj_free(o); /* the last one unmaps b: p is not read again */
            }
        }
        if (pinned) {
            if (npinned == sizeof pinned_blocks / sizeof pinned_blocks[0])
                return;
            pinned_blocks[npinned++] = b;
        }
        used = store_arena_used(a);
        dead = used - store_arena_live(a);
    }
}

const store_obj *store_put(store *s, store_obj *o, store_obj **old)
{
    if (old)
        *old = NULL;
    compact(s);
    /* the copy in the arena is what the store keeps; an object too large
     * for it (or when memory is short) stays where it is */
    store_obj *in = arena_copy(s, o);
    store_obj *keep = in ? in : o;
    void **slot = tab_find(&s->objs, T_OBJ, keep->key);
    if ((!slot && tab_reserve(&s->objs, T_OBJ) < 0) || index_obj(s, keep) < 0) {
        store_obj_free(in);
        return NULL;
    }
    if (in)
        store_obj_free(o);
    else if (o->held == HELD_DETACHED)
        o->held = HELD_STORED;
    if (slot) {
        store_obj *prev = *slot;
        unindex_obj(s, prev);
        *slot = keep;
        s->obj_bytes -= obj_bytes(prev);
        if (prev->held == HELD_STORED)
            prev->held = HELD_DETACHED;
        if (old)
            *old = prev;
        else
            store_obj_free(prev);
    } else {
        tab_insert(&s->objs, T_OBJ, keep);
    }
    s->obj_bytes += obj_bytes(keep);
    return keep;
}

/* Caller owns the result. */
store_obj *store_remove(store *s, const char *key)
{
    compact(s);
    void **slot = tab_find(&s->objs, T_OBJ, key);
    if (!slot)
        return NULL;
    store_obj *o = *slot;
    unindex_obj(s, o);
    tab_remove_at(&s->objs, T_OBJ, (size_t)(slot - s->objs.slots));
    s->obj_bytes -= obj_bytes(o);
    if (o->held == HELD_STORED)
        o->held = HELD_DETACHED;
    return o;
}

const store_obj *store_get(const store *s, const char *key)
{
    void **slot = tab_find(&s->objs, T_OBJ, key);
    return slot ? *slot : NULL;
}

size_t store_len(const store *s) { return s->objs.len; }

int store_key(char *out, size_t cap, const char *ns, const char *name)
{
    int n = ns && *ns ? snprintf(out, cap, "%s/%s", ns, name) : snprintf(out, cap, "%s", name);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* ---- iteration (callbacks must not change the store) ---- */

/* A query may build the index it needs (ensure_*): the store is const to
 * its readers because what they see never changes, and every store is
 * created non-const by store_new, so the cast below is sound. Building is
 * not a change visible to a visit in progress: nothing is built during one. */
static store *indexing(const store *s) { return (store *)s; }

typedef struct visit {
    const char *ns;              /* NULL = any */
    const label_selector *sel;   /* NULL = any */
    const char *owner;           /* NULL = any (a scan, when the index is unbuilt) */
    store_visit_cb cb;
    void *ud;
} visit;

static int owned_by(const store_obj *o, const char *uid)
{
    for (size_t i = 0; i < o->nowners; i++)
        if (strcmp(o->owner_uids[i], uid) == 0)
            return 1;
    return 0;
}

/* Returns non-zero when the callback asked to stop. */
static int visit_table(const table *t, const visit *v)
{
    for (size_t i = 0; i < t->cap; i++) {
        const store_obj *o = t->slots[i];
        if (!o || (v->ns && strcmp(o->ns, v->ns) != 0) ||
            (v->owner && !owned_by(o, v->owner)) ||
            (v->sel && !label_selector_matches(v->sel, o->labels, o->nlabels)))
            continue;
        if (v->cb(v->ud, o))
            return 1;
    }
    return 0;
}

static void visit_set(const table *map, const char *a, const char *b, const visit *v)
{
    const idx_set *set = index_find(map, a, b);
    if (set)
        visit_table(&set->members, v);
}

void store_each(const store *s, store_visit_cb cb, void *ud)
{
    visit v = {NULL, NULL, NULL, cb, ud};
    visit_table(&s->objs, &v);
}

void store_each_in_namespace(const store *s, const char *ns, store_visit_cb cb, void *ud)
{
    if (!ns) {
        store_each(s, cb, ud);
        return;
    }
    visit v = {NULL, NULL, NULL, cb, ud};
    if (ensure_ns_index(indexing(s)) == 0) {
        visit_set(&s->by_ns, ns, NULL, &v);
    } else {
        v.ns = ns;
        visit_table(&s->objs, &v);
    }
}

int store_each_selected(const store *s, const char *ns, const char *selector, store_visit_cb cb,
                        void *ud, kl_err *err)
{
    label_selector *sel;
    if (label_selector_parse(selector ? selector : "", &sel, err) < 0)
        return -1;
    const char *k, *val;
    visit v = {ns, sel, NULL, cb, ud};
    if (label_selector_first_equality(sel, &k, &val) && ensure_label_index(indexing(s), k) == 0) {
        /* the smallest candidate set: objects carrying k=val */
        visit_set(&s->by_label, k, val, &v);
    } else if (ns && ensure_ns_index(indexing(s)) == 0) {
        v.ns = NULL;
        visit_set(&s->by_ns, ns, NULL, &v);
    } else {
        visit_table(&s->objs, &v);
    }
    label_selector_free(sel);
    return 0;
}

void store_each_owned_by(const store *s, const char *owner_uid, store_visit_cb cb, void *ud)
{
    visit v = {NULL, NULL, NULL, cb, ud};
    if (ensure_owner_index(indexing(s)) == 0) {
        visit_set(&s->by_owner, owner_uid, NULL, &v);
    } else {
        v.owner = owner_uid;
        visit_table(&s->objs, &v);
    }
}

/* ---- memory ---- */

static size_t table_bytes(const table *t) { return t->cap ? chunk(t->cap * sizeof(void *)) : 0; }

static size_t index_bytes(const table *map)
{
    size_t n = table_bytes(map);
    for (size_t i = 0; i < map->cap; i++) {
        const idx_set *set = map->slots[i];
        if (set)
            n += chunk(sizeof *set + strlen(set->name) + 1) + table_bytes(&set->members);
    }
    return n;
}

size_t store_bytes(const store *s)
{
    size_t keys = s->nlabel_keys ? chunk(s->nlabel_keys * sizeof(char *)) : 0;
    for (size_t i = 0; i < s->nlabel_keys; i++)
        keys += chunk(strlen(s->label_keys[i]) + 1);
    /* the arena's dead space and block headers count too */
    size_t slack = store_arena_used(s->arena) - store_arena_live(s->arena);
    return chunk(sizeof *s) + s->obj_bytes + slack + table_bytes(&s->objs) + index_bytes(&s->by_ns) +
           index_bytes(&s->by_label) + index_bytes(&s->by_owner) + keys;
}
