/* lua_ctx_discovery.c - the ctx's resource cache and lookups (see
 * lua_ctx_discovery.h).
 *
 * Provides: lua_ctx_shared_add_resource, lua_ctx_resource_find,
 * lua_ctx_resolve_now, lua_ctx_resolve.
 * Uses: rest/kube (the discovery GET), json (its answer), lua_ctx_op.
 */
#include "lua_ctx_discovery.h"

#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const kube_resource *lua_ctx_resource_find(lua_ctx_shared *s, const char *api_version,
                                           const char *kind)
{
    const char *slash = strchr(api_version, '/');
    size_t glen = slash ? (size_t)(slash - api_version) : 0;
    const char *version = slash ? slash + 1 : api_version;
    for (size_t i = 0; i < s->nres; i++) {
        const kube_resource *r = s->res[i];
        if (strcmp(r->kind, kind) == 0 && strcmp(r->version, version) == 0 &&
            strlen(r->group) == glen && strncmp(r->group, api_version, glen) == 0)
            return r;
    }
    return NULL;
}

int lua_ctx_shared_add_resource(lua_ctx_shared *s, const kube_resource *r)
{
    char *av = kube_resource_api_version(r);
    int known = av && lua_ctx_resource_find(s, av, r->kind);
    free(av);
    if (known)
        return 0;
    kube_resource **n = realloc(s->res, (s->nres + 1) * sizeof *n);
    if (!n)
        return -1;
    s->res = n;
    kube_resource *copy = calloc(1, sizeof *copy);
    if (!copy || kube_resource_copy(copy, r) != 0) {
        free(copy);
        return -1;
    }
    s->res[s->nres++] = copy;
    return 0;
}

void lua_ctx_resources_free(lua_ctx_shared *s)
{
    for (size_t i = 0; i < s->nres; i++) {
        kube_resource_free(s->res[i]);
        free(s->res[i]);
    }
    free(s->res);
    s->res = NULL;
    s->nres = 0;
}

const kube_resource *lua_ctx_resolve_now(lua_ctx *c, const store **st)
{
    const kube_resource *r = NULL;
    if (st)
        *st = NULL;
    if (c->cache.lookup) {
        const store *found = c->cache.lookup(c->cache.ud, c->api_version, c->kind, &r);
        if (found && st)
            *st = found;
        if (r)
            return r;
    }
    return lua_ctx_resource_find(c->s, c->api_version, c->kind);
}

/* Discovery answer for one group version: remember every resource in it. */
static void on_discovery(void *ud, kube_result *res)
{
    lua_ctx *c = ud;
    c->call = NULL;
    c->resolving = 0;
    json_doc d = {0};
    kl_err err = {0};
    const char *slash = strchr(c->api_version, '/');
    if (kube_result_ok(res) && json_parse(&d, res->body.data, res->body.len, &err) == 0) {
        int list = json_obj_get(&d, 0, "resources");
        for (int it = json_first(&d, list); it >= 0; it = json_next(&d, it)) {
            char *name = json_str_dup(&d, json_obj_get(&d, it, "name"));
            char *kind = json_str_dup(&d, json_obj_get(&d, it, "kind"));
            int ns_tok = json_obj_get(&d, it, "namespaced");
            if (name && kind && !strchr(name, '/')) {
                char group[256];
                snprintf(group, sizeof group, "%.*s", slash ? (int)(slash - c->api_version) : 0,
                         c->api_version);
                char status_name[300];
                snprintf(status_name, sizeof status_name, "%s/status", name);
                int has_status = 0;
                for (int j = json_first(&d, list); j >= 0; j = json_next(&d, j))
                    has_status |= json_str_eq(&d, json_obj_get(&d, j, "name"), status_name);
                kube_resource r = {group, (char *)(slash ? slash + 1 : c->api_version), name,
                                   kind, ns_tok >= 0 && d.toks[ns_tok].type == JSON_TRUE,
                                   has_status};
                lua_ctx_shared_add_resource(c->s, &r);
            }
            free(name);
            free(kind);
        }
    }
    json_doc_free(&d);
    c->r = lua_ctx_resource_find(c->s, c->api_version, c->kind);
    if (!c->r) {
        if (res->http_code == 0) {
            /* no answer: an operational failure, returned as nil, err */
            lua_ctx_set_answer(c, 0, res->reason, res->message);
        } else {
            /* the server answered and does not know the kind: misuse, raised */
            c->raise = 1;
            snprintf(c->message, sizeof c->message, "unknown kind %s in apiVersion %s", c->kind,
                     c->api_version);
        }
        lua_ctx_finish(c);
        return;
    }
    lua_ctx_start_fn then = c->after_resolve;
    c->after_resolve = NULL;
    then(c);
}

void lua_ctx_resolve(lua_ctx *c, lua_ctx_start_fn then)
{
    kl_buf path = KL_BUF_INIT;
    int bad;
    if (strchr(c->api_version, '/'))
        bad = kl_buf_printf(&path, "/apis/%s", c->api_version);
    else
        bad = kl_buf_printf(&path, "/api/%s", c->api_version);
    c->resolving = 1;
    c->after_resolve = then;
    c->call = bad ? NULL
                  : kube_request(c->s->kc, "GET", path.data, NULL, NULL, 0, on_discovery, c);
    kl_buf_free(&path);
    if (!c->call) {
        c->resolving = 0;
        lua_ctx_set_answer(c, 0, "ConnectionError", "cannot start a discovery request");
        lua_ctx_finish(c);
    }
}
