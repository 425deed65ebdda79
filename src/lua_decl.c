/* lua_decl.c - declaration validation (see lua_decl.h).
 * Uses: lua_host_int, labels (selectors), lua_decl_cache (the cache key), err, Lua.
 */
#include "lua_decl.h"
#include "lua_decl_cache.h"

#include "labels.h"

#include <ctype.h>
#include <stddef.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void typeref_free(lua_State *L, lua_typeref *t)
{
    free(t->api_version);
    free(t->kind);
    if (L)
        luaL_unref(L, LUA_REGISTRYINDEX, t->predicate.fn_ref);
}

static void decl_free(lua_State *L, lua_controller_decl *d)
{
    free(d->name);
    typeref_free(L, &d->watch);
    for (size_t i = 0; i < d->nowns; i++)
        typeref_free(L, &d->owns[i]);
    free(d->owns);
    for (size_t i = 0; i < d->nwatches; i++) {
        typeref_free(L, &d->watches[i].type);
        free(d->watches[i].namespace);
        free(d->watches[i].selector);
        if (L)
            luaL_unref(L, LUA_REGISTRYINDEX, d->watches[i].map_ref);
    }
    free(d->watches);
    free(d->namespace);
    free(d->selector);
    store_transform_clear(&d->cache);
    free(d->finalizer);
    free(d->error_condition);
    memset(d, 0, sizeof *d);
    d->reconcile_ref = d->finalize_ref = LUA_NOREF;
    d->validate_ref = d->mutate_ref = d->convert_ref = LUA_NOREF;
    d->watch.predicate.fn_ref = LUA_NOREF;
}

void lua_decl_reset(lua_host *h)
{
    if (h->L) {
        luaL_unref(h->L, LUA_REGISTRYINDEX, h->decl.reconcile_ref);
        luaL_unref(h->L, LUA_REGISTRYINDEX, h->decl.finalize_ref);
        luaL_unref(h->L, LUA_REGISTRYINDEX, h->decl.validate_ref);
        luaL_unref(h->L, LUA_REGISTRYINDEX, h->decl.mutate_ref);
        luaL_unref(h->L, LUA_REGISTRYINDEX, h->decl.convert_ref);
    }
    decl_free(h->L, &h->decl);
}

/* Line of the first `key =` (not `==`) in the source, 0 if none. A plain
 * scan is enough to point the user at the right place. */
static int find_key_line(const char *src, const char *key)
{
    size_t kl = strlen(key);
    int line = 1;
    for (const char *p = src; *p; p++) {
        if (*p == '\n') {
            line++;
            continue;
        }
        if (strncmp(p, key, kl) != 0)
            continue;
        if (p > src && (isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == '.'))
            continue;
        const char *q = p + kl;
        while (*q == ' ' || *q == '\t')
            q++;
        if (*q == '=' && q[1] != '=')
            return line;
    }
    return 0;
}

/* Line of the last line starting with `return`, or 1. */
static int return_line(const char *src)
{
    int line = 1, found = 1;
    const char *p = src;
    while (*p) {
        const char *q = p;
        while (*q == ' ' || *q == '\t')
            q++;
        if (strncmp(q, "return", 6) == 0 && !isalnum((unsigned char)q[6]) && q[6] != '_')
            found = line;
        p = strchr(p, '\n');
        if (!p)
            break;
        p++;
        line++;
    }
    return found;
}

static int decl_fail(lua_host *h, kl_err *err, const char *key, const char *fmt, const char *a,
                     const char *b)
{
    int line = key ? find_key_line(h->src, key) : 0;
    if (!line)
        line = return_line(h->src);
    char msg[400];
    snprintf(msg, sizeof msg, fmt, a ? a : "", b ? b : "");
    return kl_err_set(err, KL_EINVAL, "%s:%d: %s", h->path, line, msg);
}

static int valid_api_version(const char *s)
{
    const char *slash = strchr(s, '/');
    const char *ver = slash ? slash + 1 : s;
    if (slash) {
        if (slash == s)
            return 0;
        for (const char *p = s; p < slash; p++)
            if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '.' ||
                  *p == '-'))
                return 0;
    }
    if (ver[0] != 'v' || !isdigit((unsigned char)ver[1]))
        return 0;
    for (const char *p = ver + 1; *p; p++)
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p)))
            return 0;
    return 1;
}

static int valid_kind(const char *s)
{
    if (!isupper((unsigned char)s[0]))
        return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p))
            return 0;
    return 1;
}

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
        return 0;
    for (const char *p = s; *p; p++)
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-' || *p == '.'))
            return 0;
    return 1;
}

/* Read t[field] as an optional string; -1 if present with another type. */
static int opt_string(lua_State *L, int t, const char *field, char **out)
{
    lua_pushstring(L, field);
    int ty = lua_rawget(L, t);
    int rc = 0;
    if (ty == LUA_TSTRING) {
        *out = strdup(lua_tostring(L, -1));
        rc = *out ? 0 : -1;
    } else if (ty != LUA_TNIL) {
        rc = -1;
    }
    lua_pop(L, 1);
    return rc;
}

static const struct {
    const char *name;
    unsigned bit;
} predicate_names[] = {{"any", LUA_PRED_ANY},
                       {"generation", LUA_PRED_GENERATION},
                       {"labels", LUA_PRED_LABELS},
                       {"annotations", LUA_PRED_ANNOTATIONS},
                       {NULL, 0}};

static unsigned predicate_bit(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TSTRING)
        return 0;
    const char *s = lua_tostring(L, idx);
    for (size_t i = 0; predicate_names[i].name; i++)
        if (!strcmp(s, predicate_names[i].name))
            return predicate_names[i].bit;
    return 0;
}

/* The predicate of the typeref table at idx, if declared: a name, a list
 * of names, or a function(old, new). Left as set by the caller (the
 * default of its place) when absent. */
static int read_predicate(lua_host *h, int idx, const char *what, lua_typeref *out, kl_err *err)
{
    lua_State *L = h->L;
    lua_pushliteral(L, "predicate");
    int ty = lua_rawget(L, idx);
    unsigned bits = 0;
    int ok = 1;
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    } else if (ty == LUA_TFUNCTION) {
        out->predicate.bits = 0;
        out->predicate.fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        return 0;
    } else if (ty == LUA_TSTRING) {
        ok = (bits = predicate_bit(L, -1)) != 0;
    } else if (ty == LUA_TTABLE) {
        size_t n = lua_rawlen(L, -1);
        ok = n > 0;
        for (size_t i = 1; ok && i <= n; i++) {
            lua_rawgeti(L, -1, (lua_Integer)i);
            unsigned b = predicate_bit(L, -1);
            lua_pop(L, 1);
            ok = b != 0;
            bits |= b;
        }
    } else {
        ok = 0;
    }
    lua_pop(L, 1);
    if (!ok)
        return decl_fail(h, err, "predicate",
                         "%s.predicate must be \"any\", \"generation\", \"labels\", "
                         "\"annotations\", a list of those, or a function(old, new) returning "
                         "a boolean", what, NULL);
    out->predicate.bits = bits;
    return 0;
}

/* The typeref at index idx; what names it in messages ("watch", "owns[2]"). */
static int read_typeref(lua_host *h, int idx, const char *what, const char *key, lua_typeref *out,
                        kl_err *err)
{
    lua_State *L = h->L;
    if (lua_type(L, idx) != LUA_TTABLE)
        return decl_fail(h, err, key, "%s must be a table { apiVersion = \"...\", kind = \"...\" }",
                         what, NULL);
    if (opt_string(L, idx, "apiVersion", &out->api_version) != 0 || !out->api_version)
        return decl_fail(h, err, key, "%s.apiVersion must be a string such as \"v1\" or "
                                      "\"github.klua.dev/v1\"", what, NULL);
    if (!valid_api_version(out->api_version))
        return decl_fail(h, err, key, "%s.apiVersion \"%s\" is not a valid apiVersion "
                                      "(\"v1\" or \"group/version\")", what, out->api_version);
    if (opt_string(L, idx, "kind", &out->kind) != 0 || !out->kind)
        return decl_fail(h, err, key, "%s.kind must be a string such as \"ConfigMap\"", what, NULL);
    if (!valid_kind(out->kind))
        return decl_fail(h, err, key, "%s.kind \"%s\" is not a valid kind (CamelCase, such as "
                                      "\"ConfigMap\")", what, out->kind);
    return read_predicate(h, idx, what, out, err);
}

static int read_function(lua_host *h, int t, const char *field, int *ref)
{
    lua_State *L = h->L;
    lua_pushstring(L, field);
    int ty = lua_rawget(L, t);
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (ty != LUA_TFUNCTION) {
        lua_pop(L, 1);
        return -1;
    }
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}

/* Levenshtein distance, capped: only small distances matter here. */
static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 30 || lb > 30)
        return 99;
    int d[31][31];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c)
                c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c)
                c = d[i][j - 1] + 1;
            /* a swap of two neighbours counts as one edit */
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < c)
                c = d[i - 2][j - 2] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

/* The optional webhook handlers (served by webhook.c). */
static int read_webhook_handlers(lua_host *h, int t, kl_err *err)
{
    static const struct {
        const char *key, *usage;
        size_t off;
    } fns[] = {
        {"validate", "validate must be a function(ctx, req) returning true, or false and a "
                     "message", offsetof(lua_controller_decl, validate_ref)},
        {"mutate", "mutate must be a function(ctx, req) that changes req.object",
         offsetof(lua_controller_decl, mutate_ref)},
        {"convert", "convert must be a function(ctx, obj, to_version) returning the object in "
                    "to_version", offsetof(lua_controller_decl, convert_ref)},
    };
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        int *ref = (int *)((char *)&h->decl + fns[i].off);
        if (read_function(h, t, fns[i].key, ref) < 0)
            return decl_fail(h, err, fns[i].key, "%s", fns[i].usage, NULL);
    }
    return 0;
}

/* A label selector the API server would refuse fails the load. */
static int check_selector(lua_host *h, const char *sel, const char *what, const char *key,
                          kl_err *err)
{
    if (!sel)
        return 0;
    label_selector *ls = NULL;
    kl_err e = {0};
    if (label_selector_parse(sel, &ls, &e) != 0)
        return decl_fail(h, err, key, "%s: %s", what, e.msg);
    label_selector_free(ls);
    return 0;
}

/* watches = { { apiVersion, kind, namespace?, selector?, predicate?, map } } */
static int read_watches(lua_host *h, int t, kl_err *err)
{
    lua_State *L = h->L;
    lua_controller_decl *d = &h->decl;
    const char *usage = "watches must be a list of { apiVersion = ..., kind = ..., map = "
                        "function(obj) return { \"ns/name\", ... } end }";
    lua_pushliteral(L, "watches");
    int ty = lua_rawget(L, t);
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (ty != LUA_TTABLE) {
        lua_pop(L, 1);
        return decl_fail(h, err, "watches", "%s", usage, NULL);
    }
    int list = lua_gettop(L);
    size_t n = lua_rawlen(L, list);
    d->watches = n ? calloc(n, sizeof *d->watches) : NULL;
    if (n && !d->watches) {
        lua_pop(L, 1);
        return kl_err_set(err, KL_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        d->watches[i].type.predicate.bits = LUA_PRED_ANY;
        d->watches[i].type.predicate.fn_ref = LUA_NOREF;
        d->watches[i].map_ref = LUA_NOREF;
    }
    d->nwatches = n;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        lua_mapped_watch *w = &d->watches[i];
        char what[32];
        snprintf(what, sizeof what, "watches[%zu]", i + 1);
        lua_rawgeti(L, list, (lua_Integer)i + 1);
        int e = lua_gettop(L);
        rc = read_typeref(h, e, what, "watches", &w->type, err);
        if (rc == 0 && opt_string(L, e, "namespace", &w->namespace) != 0)
            rc = decl_fail(h, err, "watches", "%s.namespace must be a string", what, NULL);
        if (rc == 0 && opt_string(L, e, "selector", &w->selector) != 0)
            rc = decl_fail(h, err, "watches", "%s.selector must be a label selector string",
                           what, NULL);
        if (rc == 0) {
            char sw[48];
            snprintf(sw, sizeof sw, "%s.selector", what);
            rc = check_selector(h, w->selector, sw, "watches", err);
        }
        if (rc == 0) {
            int fr = read_function(h, e, "map", &w->map_ref);
            if (fr != 1)
                rc = decl_fail(h, err, find_key_line(h->src, "map") ? "map" : "watches",
                               "%s.map must be a function(obj) returning a list of keys of "
                               "the watched kind (\"ns/name\")", what, NULL);
        }
        lua_settop(L, list);
    }
    lua_pop(L, 1);
    return rc;
}

/* A finalizer name: "prefix/name", the prefix a DNS subdomain. */
static int valid_finalizer(const char *s)
{
    const char *slash = strchr(s, '/');
    if (!slash || slash == s || slash - s > 253 || !slash[1] || strlen(slash + 1) > 63 ||
        strchr(slash + 1, '/'))
        return 0;
    for (const char *p = s; p < slash; p++)
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-' || *p == '.'))
            return 0;
    for (const char *p = slash + 1; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.'))
            return 0;
    return isalnum((unsigned char)slash[1]) && isalnum((unsigned char)s[strlen(s) - 1]);
}

static int read_finalizer(lua_host *h, int t, kl_err *err)
{
    lua_controller_decl *d = &h->decl;
    if (opt_string(h->L, t, "finalizer", &d->finalizer) != 0)
        return decl_fail(h, err, "finalizer", "finalizer must be a string such as "
                                              "\"example.com/cleanup\"", NULL, NULL);
    if (d->finalizer) {
        if (!valid_finalizer(d->finalizer))
            return decl_fail(h, err, "finalizer", "finalizer \"%s\" must be a qualified name "
                                                  "such as \"example.com/cleanup\"",
                             d->finalizer, NULL);
        return 0;
    }
    size_t n = strlen(d->name) + sizeof "klua.dev/";
    if (!(d->finalizer = malloc(n)))
        return kl_err_set(err, KL_ENOMEM, "out of memory");
    snprintf(d->finalizer, n, "klua.dev/%s", d->name);
    return 0;
}

/* error_condition = "Ready" (the default), another condition type, or false. */
static int read_error_condition(lua_host *h, int t, kl_err *err)
{
    lua_State *L = h->L;
    lua_controller_decl *d = &h->decl;
    lua_pushliteral(L, "error_condition");
    int ty = lua_rawget(L, t);
    int off = ty == LUA_TBOOLEAN && !lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (off)
        return 0;
    if (opt_string(L, t, "error_condition", &d->error_condition) != 0 ||
        (d->error_condition && !valid_kind(d->error_condition)))
        return decl_fail(h, err, "error_condition", "error_condition must be a condition type "
                                                    "such as \"Ready\" (CamelCase), or false",
                         NULL, NULL);
    if (!d->error_condition && !(d->error_condition = strdup("Ready")))
        return kl_err_set(err, KL_ENOMEM, "out of memory");
    return 0;
}

static int validate_decl(lua_host *h, int t, kl_err *err)
{
    static const char *const known[] = {"name",      "watch",     "owns",     "watches",
                                        "namespace", "selector",  "workers",  "finalizer",
                                        "error_condition", "reconcile", "finalize", "validate",
                                        "mutate",    "convert",   "cache",   NULL};
    lua_State *L = h->L;
    lua_controller_decl *d = &h->decl;
    if (lua_type(L, t) != LUA_TTABLE)
        return decl_fail(h, err, NULL, "the script must return a table declaring a controller "
                                       "(it returned %s)", lua_typename(L, lua_type(L, t)), NULL);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 1);
            return decl_fail(h, err, NULL, "the controller table has a non-string key", NULL, NULL);
        }
        const char *k = lua_tostring(L, -1);
        int ok = 0;
        for (const char *const *p = known; *p; p++)
            ok |= strcmp(*p, k) == 0;
        if (!ok) {
            const char *near = NULL;
            for (const char *const *p = known; *p && !near; p++)
                if (edit_distance(k, *p) <= 2)
                    near = *p;
            char hint[64] = "";
            if (near)
                snprintf(hint, sizeof hint, "did you mean \"%s\"? ", near);
            int rc = decl_fail(h, err, k, "unknown field \"%s\" in the controller table (%sknown: "
                                          "name, watch, owns, watches, namespace, selector, "
                                          "workers, finalizer, error_condition, reconcile, "
                                          "finalize, validate, mutate, convert, cache)", k, hint);
            lua_pop(L, 1);
            return rc;
        }
    }
    if (opt_string(L, t, "name", &d->name) != 0)
        return decl_fail(h, err, "name", "name must be a string", NULL, NULL);
    if (!d->name) {
        const char *base = strrchr(h->path, '/');
        base = base ? base + 1 : h->path;
        size_t n = strlen(base);
        if (n > 4 && strcmp(base + n - 4, ".lua") == 0)
            n -= 4;
        d->name = strndup(base, n);
        if (!d->name)
            return kl_err_set(err, KL_ENOMEM, "out of memory");
        for (char *p = d->name; *p; p++)
            *p = *p == '_' ? '-' : (char)tolower((unsigned char)*p);
    }
    if (!valid_name(d->name))
        return decl_fail(h, err, "name", "controller name \"%s\" must be lower-case letters, digits, "
                                         "'-' or '.' (at most 63)", d->name, NULL);

    d->watch.predicate.bits = LUA_PRED_CHANGED;
    d->watch.predicate.fn_ref = LUA_NOREF;
    lua_pushliteral(L, "watch");
    lua_rawget(L, t);
    int rc = lua_isnil(L, -1)
                 ? decl_fail(h, err, NULL, "the controller has no watch = { apiVersion = ..., "
                                           "kind = ... }", NULL, NULL)
                 : read_typeref(h, lua_gettop(L), "watch", "watch", &d->watch, err);
    lua_pop(L, 1);
    if (rc != 0)
        return -1;

    lua_pushliteral(L, "owns");
    int ty = lua_rawget(L, t);
    if (ty != LUA_TNIL && ty != LUA_TTABLE) {
        lua_pop(L, 1);
        return decl_fail(h, err, "owns", "owns must be a list of { apiVersion = ..., kind = ... }",
                         NULL, NULL);
    }
    if (ty == LUA_TTABLE) {
        size_t n = lua_rawlen(L, -1);
        d->owns = n ? calloc(n, sizeof *d->owns) : NULL;
        if (n && !d->owns) {
            lua_pop(L, 1);
            return kl_err_set(err, KL_ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < n; i++) {
            d->owns[i].predicate.bits = LUA_PRED_ANY;
            d->owns[i].predicate.fn_ref = LUA_NOREF;
        }
        for (size_t i = 0; i < n; i++) {
            char what[32];
            snprintf(what, sizeof what, "owns[%zu]", i + 1);
            lua_rawgeti(L, -1, (lua_Integer)i + 1);
            d->nowns = i + 1;
            rc = read_typeref(h, lua_gettop(L), what, "owns", &d->owns[i], err);
            lua_pop(L, 1);
            if (rc != 0) {
                lua_pop(L, 1);
                return -1;
            }
        }
    }
    lua_pop(L, 1);

    if (opt_string(L, t, "namespace", &d->namespace) != 0)
        return decl_fail(h, err, "namespace", "namespace must be a string", NULL, NULL);
    if (opt_string(L, t, "selector", &d->selector) != 0)
        return decl_fail(h, err, "selector", "selector must be a label selector string", NULL,
                         NULL);
    if (check_selector(h, d->selector, "selector", "selector", err) != 0)
        return -1;
    if (read_watches(h, t, err) != 0)
        return -1;
    if (read_finalizer(h, t, err) != 0 || read_error_condition(h, t, err) != 0)
        return -1;

    lua_pushliteral(L, "workers");
    ty = lua_rawget(L, t);
    if (ty != LUA_TNIL) {
        int isnum = 0;
        lua_Number w = lua_tonumberx(L, -1, &isnum);
        lua_pop(L, 1);
        if (ty != LUA_TNUMBER || !isnum || !(w >= 1 && w <= 1024) || w != (lua_Number)(int)w)
            return decl_fail(h, err, "workers", "workers must be an integer from 1 to 1024", NULL,
                             NULL);
        d->workers = (int)w;
    } else {
        lua_pop(L, 1);
    }

    char cmsg[256];
    if (lua_decl_cache_read(L, t, &d->cache, cmsg, sizeof cmsg) != 0)
        return decl_fail(h, err, "cache", "%s", cmsg, NULL);

    rc = read_function(h, t, "reconcile", &d->reconcile_ref);
    if (rc == 0)
        return decl_fail(h, err, NULL, "the controller has no reconcile function", NULL, NULL);
    if (rc < 0)
        return decl_fail(h, err, "reconcile", "reconcile must be a function(ctx, obj)", NULL, NULL);
    rc = read_function(h, t, "finalize", &d->finalize_ref);
    if (rc < 0)
        return decl_fail(h, err, "finalize", "finalize must be a function(ctx, obj)", NULL, NULL);
    d->has_finalize = rc == 1;
    return read_webhook_handlers(h, t, err);
}

int lua_decl_validate(lua_host *h, int t, const char *src, kl_err *err)
{
    h->src = src;
    int rc = validate_decl(h, t, err);
    h->src = NULL;
    return rc;
}
