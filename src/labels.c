/* labels.c - Kubernetes label selectors: parsing and matching.
 *
 * Provides: label_selector_parse / _matches / _first_equality (labels.h).
 * The grammar is the one kubectl and the API server accept
 * (k8s.io/apimachinery/pkg/labels): comma-separated terms, all of which must
 * hold:
 *   key=value  key==value  key!=value  key in (a,b)  key notin (a,b)
 *   key        (the label exists)
 *   !key       (the label does not exist)
 * Whitespace is allowed around every token. Keys may carry a DNS prefix
 * ("app.kubernetes.io/name"); values may be empty ("key=", "key in (a,)").
 * As in Kubernetes, != and notin also match objects that lack the key.
 * Errors name the selector and the 0-based byte offset of the problem.
 * Uses: err.
 */
#include "labels.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

enum { OP_EQ, OP_NEQ, OP_IN, OP_NOTIN, OP_EXISTS, OP_NOTEXISTS };

typedef struct label_term {
    int op;
    const char *key;      /* points into sel->arena */
    size_t first_value;   /* index into sel->values */
    size_t nvalues;
} label_term;

/* Everything a selector owns lives in three arrays: terms, values (pointers
 * into the arena) and the arena of NUL-terminated identifiers. */
struct label_selector {
    label_term *terms;
    size_t nterms, terms_cap;
    const char **values;
    size_t nvalues, values_cap;
    char *arena;          /* 2 * strlen(input) + 2 bytes: always room enough */
    size_t arena_len;
};

typedef struct parser {
    const char *src;
    size_t pos, len;
    label_selector *sel;
    kl_err *err;
} parser;

static int fail(parser *p, size_t at, const char *what)
{
    return kl_err_set(p->err, KL_EINVAL, "invalid label selector \"%.200s\": %s at %zu", p->src,
                      what, at);
}

static void skip_ws(parser *p)
{
    while (p->pos < p->len && isspace((unsigned char)p->src[p->pos]))
        p->pos++;
}

/* Characters that end an identifier, as in apimachinery's lexer. */
static int is_special(char c)
{
    return c == '!' || c == '=' || c == '(' || c == ')' || c == ',' || c == '<' || c == '>';
}

/* Scan an identifier at pos (possibly empty). */
static void scan_ident(parser *p, size_t *start, size_t *n)
{
    *start = p->pos;
    while (p->pos < p->len && !isspace((unsigned char)p->src[p->pos]) &&
           !is_special(p->src[p->pos]))
        p->pos++;
    *n = p->pos - *start;
}

static int name_char(char c) { return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.'; }

/* A label value or key name: at most 63 characters, alphanumeric at both ends,
 * [-_.] allowed inside. */
static int valid_name(const char *s, size_t n)
{
    if (n == 0 || n > 63 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!name_char(s[i]))
            return 0;
    return 1;
}

/* A DNS-1123 subdomain: lowercase alphanumerics, '-' and '.', at most 253. */
static int valid_prefix(const char *s, size_t n)
{
    if (n == 0 || n > 253 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

static int valid_key(const char *s, size_t n)
{
    const char *slash = memchr(s, '/', n);
    if (!slash)
        return valid_name(s, n);
    size_t plen = (size_t)(slash - s);
    return valid_prefix(s, plen) && valid_name(slash + 1, n - plen - 1);
}

static const char *arena_copy(parser *p, size_t start, size_t n)
{
    char *dst = p->sel->arena + p->sel->arena_len;
    memcpy(dst, p->src + start, n);
    dst[n] = '\0';
    p->sel->arena_len += n + 1;
    return dst;
}

static int add_term(parser *p, int op, const char *key)
{
    label_selector *sel = p->sel;
    if (sel->nterms == sel->terms_cap) {
        size_t cap = sel->terms_cap ? sel->terms_cap * 2 : 4;
        label_term *t = realloc(sel->terms, cap * sizeof *t);
        if (!t)
            return kl_err_set(p->err, KL_ENOMEM, "out of memory parsing a label selector");
        sel->terms = t;
        sel->terms_cap = cap;
    }
    sel->terms[sel->nterms++] = (label_term){op, key, sel->nvalues, 0};
    return 0;
}

/* Append a value to the last term. */
static int add_value(parser *p, size_t start, size_t n)
{
    label_selector *sel = p->sel;
    if (n > 0 && !valid_name(p->src + start, n))
        return fail(p, start, "invalid label value");
    if (sel->nvalues == sel->values_cap) {
        size_t cap = sel->values_cap ? sel->values_cap * 2 : 4;
        const char **v = realloc(sel->values, cap * sizeof *v);
        if (!v)
            return kl_err_set(p->err, KL_ENOMEM, "out of memory parsing a label selector");
        sel->values = v;
        sel->values_cap = cap;
    }
    sel->values[sel->nvalues++] = arena_copy(p, start, n);
    sel->terms[sel->nterms - 1].nvalues++;
    return 0;
}

/* "(a, b, c)" after in / notin; pos is at the '('. Empty members are
 * allowed ("(a,)" holds "" too), an empty set is not. */
static int parse_set(parser *p)
{
    skip_ws(p);
    if (p->pos >= p->len || p->src[p->pos] != '(')
        return fail(p, p->pos, "expected '('");
    p->pos++;
    for (;;) {
        size_t start, n;
        skip_ws(p);
        scan_ident(p, &start, &n);
        skip_ws(p);
        if (p->pos >= p->len)
            return fail(p, p->pos, "expected ')'");
        char c = p->src[p->pos];
        if (c != ',' && c != ')')
            return fail(p, p->pos, "expected ',' or ')'");
        if (c == ')' && n == 0 && p->sel->terms[p->sel->nterms - 1].nvalues == 0)
            return fail(p, p->pos, "expected at least one value in the set");
        if (add_value(p, start, n) < 0)
            return -1;
        p->pos++;
        if (c == ')')
            return 0;
    }
}

static int parse_term(parser *p)
{
    size_t start, n;
    int negated = 0;
    skip_ws(p);
    if (p->pos < p->len && p->src[p->pos] == '!') {
        negated = 1;
        p->pos++;
        skip_ws(p);
    }
    scan_ident(p, &start, &n);
    if (n == 0)
        return fail(p, p->pos, "expected a label key");
    if (!valid_key(p->src + start, n))
        return fail(p, start, "invalid label key");
    const char *key = arena_copy(p, start, n);
    skip_ws(p);
    if (negated || p->pos >= p->len || p->src[p->pos] == ',')
        return add_term(p, negated ? OP_NOTEXISTS : OP_EXISTS, key);

    size_t op_at = p->pos;
    const char *s = p->src + p->pos;
    size_t rest = p->len - p->pos;
    int op;
    if (rest >= 2 && s[0] == '=' && s[1] == '=') {
        op = OP_EQ;
        p->pos += 2;
    } else if (s[0] == '=') {
        op = OP_EQ;
        p->pos += 1;
    } else if (rest >= 2 && s[0] == '!' && s[1] == '=') {
        op = OP_NEQ;
        p->pos += 2;
    } else {
        size_t wstart, wn;
        scan_ident(p, &wstart, &wn);
        if (wn == 2 && memcmp(p->src + wstart, "in", 2) == 0)
            op = OP_IN;
        else if (wn == 5 && memcmp(p->src + wstart, "notin", 5) == 0)
            op = OP_NOTIN;
        else
            return fail(p, op_at, "expected '=', '==', '!=', 'in', 'notin', ',' or the end");
    }
    if (add_term(p, op, key) < 0)
        return -1;
    if (op == OP_IN || op == OP_NOTIN)
        return parse_set(p);
    skip_ws(p);
    scan_ident(p, &start, &n);
    return add_value(p, start, n);
}

int label_selector_parse(const char *s, label_selector **out, kl_err *err)
{
    int rc = -1;
    *out = NULL;
    label_selector *sel = calloc(1, sizeof *sel);
    size_t len = strlen(s);
    if (!sel || !(sel->arena = malloc(2 * len + 2))) {
        kl_err_set(err, KL_ENOMEM, "out of memory parsing a label selector");
        goto out;
    }
    parser p = {s, 0, len, sel, err};
    skip_ws(&p);
    while (p.pos < p.len) {
        if (parse_term(&p) < 0)
            goto out;
        skip_ws(&p);
        if (p.pos >= p.len)
            break;
        if (s[p.pos] != ',') {
            fail(&p, p.pos, "expected ',' or the end");
            goto out;
        }
        p.pos++;
        skip_ws(&p);
        if (p.pos >= p.len) {
            fail(&p, p.pos, "expected a label key");
            goto out;
        }
    }
    *out = sel;
    sel = NULL;
    rc = 0;
out:
    label_selector_free(sel);
    return rc;
}

void label_selector_free(label_selector *sel)
{
    if (!sel)
        return;
    free(sel->terms);
    free(sel->values);
    free(sel->arena);
    free(sel);
}

static const char *lookup(const char *labels, size_t npairs, const char *key)
{
    for (size_t i = 0; i < npairs; i++) {
        const char *v = labels + strlen(labels) + 1;
        if (strcmp(labels, key) == 0)
            return v;
        labels = v + strlen(v) + 1;
    }
    return NULL;
}

static int in_set(const label_selector *sel, const label_term *t, const char *v)
{
    for (size_t i = 0; i < t->nvalues; i++)
        if (strcmp(sel->values[t->first_value + i], v) == 0)
            return 1;
    return 0;
}

int label_selector_matches(const label_selector *sel, const char *labels, size_t npairs)
{
    for (size_t i = 0; i < sel->nterms; i++) {
        const label_term *t = &sel->terms[i];
        const char *v = lookup(labels, npairs, t->key);
        int ok;
        switch (t->op) {
        case OP_EQ:
        case OP_IN: ok = v && in_set(sel, t, v); break;
        case OP_NEQ:
        case OP_NOTIN: ok = !v || !in_set(sel, t, v); break;
        case OP_EXISTS: ok = v != NULL; break;
        default: ok = v == NULL; break;
        }
        if (!ok)
            return 0;
    }
    return 1;
}

/* "key in (v)" with one value is an equality too. */
int label_selector_first_equality(const label_selector *sel, const char **key, const char **value)
{
    for (size_t i = 0; i < sel->nterms; i++) {
        const label_term *t = &sel->terms[i];
        if (t->op == OP_EQ || (t->op == OP_IN && t->nvalues == 1)) {
            *key = t->key;
            *value = sel->values[t->first_value];
            return 1;
        }
    }
    return 0;
}
