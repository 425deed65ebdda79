/* webhook_patch.c - the JSON Patch between two JSON documents (see
 * webhook_patch.h). Objects are compared through their members sorted by
 * unescaped key, so a large object costs n log n, not n squared.
 * Uses: json, buf, err.
 */
#include "webhook_patch.h"

#include "json.h"

#include <stdlib.h>
#include <string.h>

typedef struct member {
    char *key;      /* unescaped, owned */
    size_t len;
    int val;        /* value token */
} member;

typedef struct differ {
    const json_doc *a, *b;
    kl_buf *out;
    kl_buf path;    /* the JSON Pointer of the value being compared */
    size_t nops;
    int oom;
} differ;

int webhook_patch_escape(kl_buf *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '~')
            kl_buf_append(out, "~0", 2);
        else if (s[i] == '/')
            kl_buf_append(out, "~1", 2);
        else
            kl_buf_putc(out, s[i]);
    }
    return kl_buf_failed(out) ? -1 : 0;
}

static int cmp_member(const void *x, const void *y)
{
    const member *p = x, *q = y;
    size_t n = p->len < q->len ? p->len : q->len;
    int c = memcmp(p->key, q->key, n);
    if (c)
        return c;
    return p->len < q->len ? -1 : p->len > q->len;
}

static void free_members(member *m, size_t n)
{
    for (size_t i = 0; m && i < n; i++)
        free(m[i].key);
    free(m);
}

/* The members of object tok, sorted by key. NULL with *n 0 for {}; NULL
 * with *n nonzero when out of memory. */
static member *sorted_members(const json_doc *d, int obj, size_t *n)
{
    *n = d->toks[obj].size;
    if (*n == 0)
        return NULL;
    member *m = calloc(*n, sizeof *m);
    if (!m)
        return NULL;
    int k = json_first(d, obj);
    for (size_t i = 0; i < *n; i++) {
        kl_buf kb = KL_BUF_INIT;
        json_str_append(d, k, &kb);
        kl_buf_putc(&kb, '\0');
        m[i].len = kb.len ? kb.len - 1 : 0;
        m[i].key = kl_buf_take(&kb);
        m[i].val = k + 1;
        if (!m[i].key) {
            free_members(m, i);
            return NULL;
        }
        k = json_next(d, k + 1);
    }
    qsort(m, *n, sizeof *m, cmp_member);
    return m;
}

static int number_eq(const json_doc *a, int ta, const json_doc *b, int tb)
{
    size_t la, lb;
    const char *ra = json_raw(a, ta, &la), *rb = json_raw(b, tb, &lb);
    if (la == lb && memcmp(ra, rb, la) == 0)
        return 1;
    char sa[64], sb[64];
    if (la >= sizeof sa || lb >= sizeof sb)
        return 0;
    memcpy(sa, ra, la);
    sa[la] = '\0';
    memcpy(sb, rb, lb);
    sb[lb] = '\0';
    return strtod(sa, NULL) == strtod(sb, NULL);
}

static int string_eq(const json_doc *a, int ta, const json_doc *b, int tb, int *oom)
{
    if (!a->toks[ta].escaped && !b->toks[tb].escaped) {
        size_t la, lb;
        const char *ra = json_raw(a, ta, &la), *rb = json_raw(b, tb, &lb);
        return la == lb && memcmp(ra, rb, la) == 0;
    }
    kl_buf x = KL_BUF_INIT, y = KL_BUF_INIT;
    json_str_append(a, ta, &x);
    json_str_append(b, tb, &y);
    int eq = x.len == y.len && (x.len == 0 || memcmp(x.data, y.data, x.len) == 0);
    if (kl_buf_failed(&x) || kl_buf_failed(&y)) {
        *oom = 1;
        eq = 0;
    }
    kl_buf_free(&x);
    kl_buf_free(&y);
    return eq;
}

static int values_eq(differ *df, const json_doc *a, int ta, const json_doc *b, int tb);

static int objects_eq(differ *df, const json_doc *a, int ta, const json_doc *b, int tb)
{
    if (a->toks[ta].size != b->toks[tb].size)
        return 0;
    size_t na, nb;
    member *ma = sorted_members(a, ta, &na), *mb = sorted_members(b, tb, &nb);
    int eq = 1;
    if ((na && !ma) || (nb && !mb)) {
        df->oom = 1;
        eq = 0;
    }
    for (size_t i = 0; eq && i < na; i++)
        eq = cmp_member(&ma[i], &mb[i]) == 0 && values_eq(df, a, ma[i].val, b, mb[i].val);
    free_members(ma, na);
    free_members(mb, nb);
    return eq;
}

static int values_eq(differ *df, const json_doc *a, int ta, const json_doc *b, int tb)
{
    int ty = a->toks[ta].type;
    if (ty != b->toks[tb].type)
        return 0;
    switch (ty) {
    case JSON_NUMBER:
        return number_eq(a, ta, b, tb);
    case JSON_STRING:
        return string_eq(a, ta, b, tb, &df->oom);
    case JSON_ARRAY: {
        if (a->toks[ta].size != b->toks[tb].size)
            return 0;
        int ea = json_first(a, ta), eb = json_first(b, tb);
        for (; ea >= 0 && eb >= 0; ea = json_next(a, ea), eb = json_next(b, eb))
            if (!values_eq(df, a, ea, b, eb))
                return 0;
        return 1;
    }
    case JSON_OBJECT:
        return objects_eq(df, a, ta, b, tb);
    default:
        return 1;   /* null, true, false: the type says it all */
    }
}

/* One operation at the current path (plus the key, when key is not NULL). */
static void emit(differ *df, const char *op, const char *key, size_t klen, const json_doc *d,
                 int tok)
{
    kl_buf *o = df->out;
    kl_buf_puts(o, df->nops ? ",{\"op\":\"" : "{\"op\":\"");
    kl_buf_puts(o, op);
    kl_buf_puts(o, "\",\"path\":");
    kl_buf p = KL_BUF_INIT;
    kl_buf_append(&p, df->path.data ? df->path.data : "", df->path.len);
    if (key) {
        kl_buf_putc(&p, '/');
        webhook_patch_escape(&p, key, klen);
    }
    if (kl_buf_failed(&p))
        df->oom = 1;
    json_escape_append(o, p.data ? p.data : "", p.len);
    kl_buf_free(&p);
    if (d) {
        size_t n;
        const char *raw = json_raw(d, tok, &n);
        kl_buf_puts(o, ",\"value\":");
        kl_buf_append(o, raw, n);
    }
    kl_buf_putc(o, '}');
    df->nops++;
}

static void diff(differ *df, int ta, int tb);

static void diff_objects(differ *df, int ta, int tb)
{
    size_t na, nb;
    member *ma = sorted_members(df->a, ta, &na), *mb = sorted_members(df->b, tb, &nb);
    if ((na && !ma) || (nb && !mb)) {
        df->oom = 1;
        goto out;
    }
    size_t i = 0, j = 0;
    while ((i < na || j < nb) && !df->oom) {
        int c = i == na ? 1 : j == nb ? -1 : cmp_member(&ma[i], &mb[j]);
        if (c < 0) {
            /* null is absent to Kubernetes (and klua.json drops null members) */
            if (df->a->toks[ma[i].val].type != JSON_NULL)
                emit(df, "remove", ma[i].key, ma[i].len, NULL, 0);
            i++;
        } else if (c > 0) {
            emit(df, "add", mb[j].key, mb[j].len, df->b, mb[j].val);
            j++;
        } else {
            size_t saved = df->path.len;
            kl_buf_putc(&df->path, '/');
            webhook_patch_escape(&df->path, ma[i].key, ma[i].len);
            if (kl_buf_failed(&df->path))
                df->oom = 1;
            else
                diff(df, ma[i].val, mb[j].val);
            df->path.len = saved;
            if (df->path.data)
                df->path.data[saved] = '\0';
            i++;
            j++;
        }
    }
out:
    free_members(ma, na);
    free_members(mb, nb);
}

static void diff(differ *df, int ta, int tb)
{
    if (df->a->toks[ta].type == JSON_OBJECT && df->b->toks[tb].type == JSON_OBJECT) {
        diff_objects(df, ta, tb);
        return;
    }
    if (!values_eq(df, df->a, ta, df->b, tb))
        emit(df, "replace", NULL, 0, df->b, tb);
}

int webhook_patch_diff(const char *from, size_t from_len, const char *to, size_t to_len,
                       kl_buf *out, size_t *nops, kl_err *err)
{
    json_doc a = {0}, b = {0};
    differ df = {&a, &b, out, KL_BUF_INIT, 0, 0};
    int rc = -1;
    if (json_parse(&a, from, from_len, err) != 0) {
        kl_err_wrap(err, "from");
        goto out;
    }
    if (json_parse(&b, to, to_len, err) != 0) {
        kl_err_wrap(err, "to");
        goto out;
    }
    kl_buf_putc(out, '[');
    diff(&df, 0, 0);
    kl_buf_putc(out, ']');
    if (df.oom || kl_buf_failed(out)) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        goto out;
    }
    if (nops)
        *nops = df.nops;
    rc = 0;
out:
    kl_buf_free(&df.path);
    json_doc_free(&a);
    json_doc_free(&b);
    return rc;
}
