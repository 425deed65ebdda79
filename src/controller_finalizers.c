/* controller_finalizers.c - the finalizers this process manages (see
 * controller_finalizers.h).
 *
 * Provides: controller_finalizers_new/free/declare/undeclare/stale/scan.
 * Uses: store, json, log.
 *
 * A short list: one entry per (name, API group, kind) ever declared or
 * found orphaned. A kind is matched by group, not version, as owner
 * references are: the same objects are served under every version.
 */
#include "controller_finalizers.h"

#include "json.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KLUA_PREFIX "klua.dev/"

typedef struct fin_entry {
    char *name, *group, *kind;
    unsigned declared;          /* running versions declaring it */
    int remove;                 /* take it off deleting objects when not declared */
    struct fin_entry *next;
} fin_entry;

/* An orphan name already reported. */
typedef struct reported {
    char *name;
    struct reported *next;
} reported;

struct controller_finalizers {
    fin_entry *entries;
    reported *reported;
    int remove_orphans;
};

controller_finalizers *controller_finalizers_new(int remove_orphans)
{
    controller_finalizers *f = calloc(1, sizeof *f);
    if (f)
        f->remove_orphans = remove_orphans;
    return f;
}

void controller_finalizers_free(controller_finalizers *f)
{
    if (!f)
        return;
    while (f->entries) {
        fin_entry *e = f->entries;
        f->entries = e->next;
        free(e->name);
        free(e->group);
        free(e->kind);
        free(e);
    }
    while (f->reported) {
        reported *r = f->reported;
        f->reported = r->next;
        free(r->name);
        free(r);
    }
    free(f);
}

/* The group of an apiVersion ("" for the core group), into out. */
static const char *group_of(const char *api_version, char *out, size_t outsz)
{
    const char *slash = strchr(api_version, '/');
    snprintf(out, outsz, "%.*s", slash ? (int)(slash - api_version) : 0, api_version);
    return out;
}

static fin_entry *find(const controller_finalizers *f, const char *name, const char *group,
                       const char *kind)
{
    for (fin_entry *e = f->entries; e; e = e->next)
        if (!strcmp(e->name, name) && !strcmp(e->group, group) && !strcmp(e->kind, kind))
            return e;
    return NULL;
}

static fin_entry *get(controller_finalizers *f, const char *name, const char *api_version,
                      const char *kind)
{
    char group[256];
    group_of(api_version, group, sizeof group);
    fin_entry *e = find(f, name, group, kind);
    if (e)
        return e;
    if (!(e = calloc(1, sizeof *e)))
        return NULL;
    if (!(e->name = strdup(name)) || !(e->group = strdup(group)) || !(e->kind = strdup(kind))) {
        free(e->name);
        free(e->group);
        free(e);
        return NULL;
    }
    e->next = f->entries;
    f->entries = e;
    return e;
}

int controller_finalizers_declare(controller_finalizers *f, const char *name,
                                  const char *api_version, const char *kind)
{
    fin_entry *e = get(f, name, api_version, kind);
    if (!e)
        return -1;
    e->declared++;
    e->remove = 1;   /* this process may have put it on objects from now on */
    return 0;
}

void controller_finalizers_undeclare(controller_finalizers *f, const char *name,
                                     const char *api_version, const char *kind)
{
    char group[256];
    fin_entry *e = find(f, name, group_of(api_version, group, sizeof group), kind);
    if (e && e->declared)
        e->declared--;
}

/* Declared by a running version for any kind. */
static int declared_anywhere(const controller_finalizers *f, const char *name)
{
    for (fin_entry *e = f->entries; e; e = e->next)
        if (e->declared && !strcmp(e->name, name))
            return 1;
    return 0;
}

size_t controller_finalizers_stale(const controller_finalizers *f, const char *api_version,
                                   const char *kind, const char **out, size_t max)
{
    char group[256];
    group_of(api_version, group, sizeof group);
    size_t n = 0;
    for (fin_entry *e = f->entries; e && n < max; e = e->next)
        if (e->remove && !e->declared && !strcmp(e->group, group) && !strcmp(e->kind, kind) &&
            !declared_anywhere(f, e->name))
            out[n++] = e->name;
    return n;
}

/* ---- the start-up scan ---- */

typedef struct orphan {
    char *name;
    size_t objects;
    char *example;              /* one object's key */
} orphan;

typedef struct scan {
    controller_finalizers *f;
    orphan *v;
    size_t n;
    int failed;
} scan;

static int was_reported(const controller_finalizers *f, const char *name)
{
    for (reported *r = f->reported; r; r = r->next)
        if (!strcmp(r->name, name))
            return 1;
    return 0;
}

static void count_orphan(scan *s, const char *name, const char *key)
{
    for (size_t i = 0; i < s->n; i++) {
        if (!strcmp(s->v[i].name, name)) {
            s->v[i].objects++;
            return;
        }
    }
    orphan *nv = realloc(s->v, (s->n + 1) * sizeof *nv);
    if (!nv) {
        s->failed = 1;
        return;
    }
    s->v = nv;
    orphan *o = &s->v[s->n];
    o->objects = 1;
    o->name = strdup(name);
    o->example = strdup(key);
    if (!o->name || !o->example) {
        free(o->name);
        free(o->example);
        s->failed = 1;
        return;
    }
    s->n++;
}

static int scan_obj(void *ud, const store_obj *o)
{
    scan *s = ud;
    /* Most objects carry no klua finalizer: skip them without a parse. The
     * opening quote is part of the probe: without it every object of a
     * group ending in klua.dev ("apiVersion":"bench.klua.dev/v1") matched,
     * and the first sync parsed each one again (10k Widgets: 9-35 ms). */
    if (!memmem(o->json, o->json_len, "\"" KLUA_PREFIX, sizeof KLUA_PREFIX))
        return 0;
    json_doc d = {0};
    if (json_parse(&d, o->json, o->json_len, NULL) == 0) {
        int fins = json_path(&d, 0, "metadata.finalizers");
        for (int t = json_first(&d, fins); t >= 0; t = json_next(&d, t)) {
            char *name = json_str_dup(&d, t);
            if (name && !strncmp(name, KLUA_PREFIX, sizeof KLUA_PREFIX - 1) &&
                !declared_anywhere(s->f, name) && !was_reported(s->f, name))
                count_orphan(s, name, o->key);
            free(name);
        }
    }
    json_doc_free(&d);
    return s->failed;
}

void controller_finalizers_scan(controller_finalizers *f, const store *st,
                                const char *api_version, const char *kind)
{
    scan s = {f, NULL, 0, 0};
    store_each(st, scan_obj, &s);
    for (size_t i = 0; i < s.n; i++) {
        orphan *o = &s.v[i];
        reported *r = calloc(1, sizeof *r);
        if (r && (r->name = strdup(o->name))) {
            r->next = f->reported;
            f->reported = r;
        } else {
            free(r);
        }
        char objects[32];
        snprintf(objects, sizeof objects, "%zu", o->objects);
        fin_entry *e = f->remove_orphans ? get(f, o->name, api_version, kind) : NULL;
        if (e)
            e->remove = 1;
        kl_log(KL_LOG_WARN,
               e ? "finalizer no script declares: removing it from objects being deleted "
                   "(--remove-orphan-finalizers)"
                 : "finalizer no script declares: objects carrying it cannot be deleted until "
                   "it is removed (klua run --remove-orphan-finalizers removes it)",
               "finalizer", o->name, "kind", kind, "apiVersion", api_version, "objects", objects,
               "example", o->example, NULL);
        free(o->name);
        free(o->example);
    }
    free(s.v);
}
