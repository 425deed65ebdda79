/* store_transform.c - what the cache keeps of each object.
 *
 * Provides: store_transform_* (store_transform.h).
 * Uses: json (tokens and raw spans), buf, err.
 *
 * The object is written member by member from the tokens json_parse already
 * made: a kept member is one span of the original text (key, colon, value),
 * so a transform costs a walk over the members of the levels it looks into
 * (the top level, metadata, and the objects on a keep path) plus one copy of
 * the kept bytes. Paths compare with the raw (still escaped) key text.
 */
#include "store_transform.h"

#include <stdlib.h>
#include <string.h>

#define MANAGED "metadata.managedFields"

/* What klua reads of every object (keys, indexes, finalizers, writes). */
static const char *const required[] = {
    "apiVersion",          "kind",
    "metadata.name",       "metadata.namespace",
    "metadata.uid",        "metadata.resourceVersion",
    "metadata.generation", "metadata.deletionTimestamp",
    "metadata.finalizers", "metadata.ownerReferences",
    "metadata.labels",     NULL,
};

void store_transform_clear(store_transform *t)
{
    for (size_t i = 0; i < t->nkeep; i++)
        free(t->keep[i]);
    free(t->keep);
    t->keep = NULL;
    t->nkeep = 0;
    t->managed_fields = 0;
}

int store_transform_keep(store_transform *t, const char *path, kl_err *err)
{
    size_t n = strlen(path);
    if (n == 0 || n >= STORE_TRANSFORM_MAX_PATH)
        return kl_err_set(err, KL_EINVAL, "a keep path must be 1 to %d characters",
                          STORE_TRANSFORM_MAX_PATH - 1);
    if (path[0] == '.' || path[n - 1] == '.' || strstr(path, ".."))
        return kl_err_set(err, KL_EINVAL, "keep path \"%s\" has an empty segment", path);
    char **nk = realloc(t->keep, (t->nkeep + 1) * sizeof *nk);
    if (!nk)
        return kl_err_set(err, KL_ENOMEM, "out of memory");
    t->keep = nk;
    if (!(nk[t->nkeep] = strdup(path)))
        return kl_err_set(err, KL_ENOMEM, "out of memory");
    t->nkeep++;
    return 0;
}

int store_transform_copy(store_transform *dst, const store_transform *src)
{
    store_transform c = {src->managed_fields, NULL, 0};
    kl_err err;
    for (size_t i = 0; i < src->nkeep; i++)
        if (store_transform_keep(&c, src->keep[i], &err) != 0) {
            store_transform_clear(&c);
            *dst = (store_transform)STORE_TRANSFORM_DEFAULT;
            return -1;
        }
    *dst = c;
    return 0;
}

static int has_path(const store_transform *t, const char *p)
{
    for (size_t i = 0; i < t->nkeep; i++)
        if (!strcmp(t->keep[i], p))
            return 1;
    return 0;
}

/* Same managedFields choice and the same set of paths, in any order. */
int store_transform_same(const store_transform *a, const store_transform *b)
{
    if (!a->managed_fields != !b->managed_fields || !a->keep != !b->keep)
        return 0;
    for (size_t i = 0; i < a->nkeep; i++)
        if (!has_path(b, a->keep[i]))
            return 0;
    for (size_t i = 0; i < b->nkeep; i++)
        if (!has_path(a, b->keep[i]))
            return 0;
    return 1;
}

/* ---- applying ---- */

enum { M_NONE, M_DESCEND, M_WHOLE }; /* ordered: the strongest match wins */

/* p against full[0..n): the same path, or a path below it. */
static int match_one(const char *p, const char *full, size_t n)
{
    if (strncmp(p, full, n) != 0)
        return M_NONE;
    return p[n] == '\0' ? M_WHOLE : p[n] == '.' ? M_DESCEND : M_NONE;
}

static int match(const store_transform *t, const char *full, size_t n)
{
    int m = M_NONE, r;
    for (const char *const *p = required; *p && m != M_WHOLE; p++)
        if ((r = match_one(*p, full, n)) > m)
            m = r;
    for (size_t i = 0; i < t->nkeep && m != M_WHOLE; i++)
        if ((r = match_one(t->keep[i], full, n)) > m)
            m = r;
    return m;
}

typedef struct emitter {
    const store_transform *t;
    const json_doc *d;
    kl_buf *out;
    char path[STORE_TRANSFORM_MAX_PATH];
} emitter;

static int emit_obj(emitter *e, int obj, size_t plen, int all);

/* One member, key token k (its value is k + 1), whose dotted path is
 * e->path[0..n). Returns 1 when written, 0 when left out. */
static int emit_member(emitter *e, int k, size_t n, int all, int first)
{
    const json_doc *d = e->d;
    int v = k + 1;
    int strip = !e->t->managed_fields;
    int m = all ? M_WHOLE : match(e->t, e->path, n);
    if (m == M_NONE || (strip && n == sizeof MANAGED - 1 && !memcmp(e->path, MANAGED, n)))
        return 0;
    /* a kept object on the way to managedFields is walked to drop it */
    int walk = d->toks[v].type == JSON_OBJECT &&
               (m == M_DESCEND || (strip && match_one(MANAGED, e->path, n) == M_DESCEND));
    size_t klen, vlen;
    const char *kraw = json_raw(d, k, &klen);
    const char *vraw = json_raw(d, v, &vlen);
    if (!first)
        kl_buf_putc(e->out, ',');
    if (!walk)
        return kl_buf_append(e->out, kraw, (size_t)(vraw + vlen - kraw)), 1;
    kl_buf_append(e->out, kraw, klen);
    kl_buf_putc(e->out, ':');
    emit_obj(e, v, n, m == M_WHOLE);
    return 1;
}

/* The object token obj whose path is e->path[0..plen); all: keep every
 * member (but managedFields when stripping). */
static int emit_obj(emitter *e, int obj, size_t plen, int all)
{
    const json_doc *d = e->d;
    int first = 1;
    kl_buf_putc(e->out, '{');
    for (int k = json_first(d, obj); k >= 0; k = json_next(d, k + 1)) {
        const json_tok *kt = &d->toks[k];
        size_t kn = kt->end - kt->start, n = plen + (plen ? 1 : 0) + kn;
        if (n >= sizeof e->path) { /* deeper than any keep path: only "all" keeps it */
            if (all) {
                size_t klen, vlen;
                const char *kraw = json_raw(d, k, &klen), *vraw = json_raw(d, k + 1, &vlen);
                if (!first)
                    kl_buf_putc(e->out, ',');
                kl_buf_append(e->out, kraw, (size_t)(vraw + vlen - kraw));
                first = 0;
            }
            continue;
        }
        if (plen)
            e->path[plen] = '.';
        memcpy(e->path + plen + (plen ? 1 : 0), d->src + kt->start, kn);
        e->path[n] = '\0';
        if (emit_member(e, k, n, all, first))
            first = 0;
    }
    return kl_buf_putc(e->out, '}');
}

/* A whole object needs no walk unless managedFields must go. */
int store_transform_apply(const store_transform *t, const json_doc *d, int root,
                          const char *api_version, const char *kind, kl_buf *out)
{
    static const store_transform dflt = STORE_TRANSFORM_DEFAULT;
    if (!t)
        t = &dflt;
    if (root < 0 || (uint32_t)root >= d->ntoks || d->toks[root].type != JSON_OBJECT)
        return -1;
    int need_av = api_version && json_obj_get(d, root, "apiVersion") < 0;
    int need_kind = kind && json_obj_get(d, root, "kind") < 0;
    int meta = json_obj_get(d, root, "metadata");
    int plain = !t->keep && (t->managed_fields || meta < 0 ||
                             json_obj_get(d, meta, "managedFields") < 0);
    size_t rlen;
    const char *raw = json_raw(d, root, &rlen);
    if (plain && !need_av && !need_kind)
        return kl_buf_append(out, raw, rlen);
    size_t start = out->len;
    emitter e = {t, d, out, ""};
    emit_obj(&e, root, 0, !t->keep);
    if (need_av || need_kind) {
        /* splice "apiVersion":..,"kind":.. in after the '{' just written */
        kl_buf pre = KL_BUF_INIT;
        if (need_av) {
            kl_buf_puts(&pre, "\"apiVersion\":");
            json_escape_append(&pre, api_version, strlen(api_version));
        }
        if (need_kind) {
            kl_buf_puts(&pre, need_av ? ",\"kind\":" : "\"kind\":");
            json_escape_append(&pre, kind, strlen(kind));
        }
        int empty = out->len - start == 2; /* "{}" */
        if (!empty)
            kl_buf_putc(&pre, ',');
        if (!kl_buf_failed(out) && !kl_buf_failed(&pre) && kl_buf_reserve(out, pre.len) == 0) {
            memmove(out->data + start + 1 + pre.len, out->data + start + 1, out->len - start - 1);
            memcpy(out->data + start + 1, pre.data, pre.len);
            out->len += pre.len;
            out->data[out->len] = '\0';
        } else {
            kl_buf_free(&pre);
            return -1;
        }
        kl_buf_free(&pre);
    }
    return kl_buf_failed(out) ? -1 : 0;
}
