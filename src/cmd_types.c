/* cmd_types.c - `klua types`; see cmd_types.h.
 *
 * The schemas are decoded into Lua tables here (YAML files through libyaml,
 * the cluster's JSON through json.h) and handed to klua.typegen, which does
 * the naming and the rendering. The cluster's per-group documents are
 * fetched concurrently on one loop.
 */
#include "cmd_types.h"

#include "buf.h"
#include "err.h"
#include "http.h"
#include "json.h"
#include "kube.h"
#include "kubeconfig.h"
#include "loop.h"
#include "tool_lua.h"

#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char types_usage[] =
    "Usage: klua types [--crds PATH]... [--from-cluster] -o DIR\n"
    "\n"
    "Writes LuaLS/EmmyLua annotations for Kubernetes kinds into DIR: a class per kind\n"
    "and version (spec/status fields, descriptions, enums, required fields), and typed\n"
    "overloads of ctx:get / ctx:list (DIR/kinds.lua).\n"
    "\n"
    "  --crds PATH        a CustomResourceDefinition file (YAML or JSON, several\n"
    "                     documents allowed) or a folder of them; repeatable\n"
    "  --from-cluster     every CRD and built-in kind from the API server's /openapi/v3\n"
    "  --kubeconfig FILE, --context NAME   which cluster (with --from-cluster)\n"
    "  -o, --output DIR   where to write (created if missing)\n";

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Append every document of path to the array at the top of L (index docs). */
static int add_file(lua_State *L, const char *path, int *ndocs, kl_err *err)
{
    if (tool_lua_push_yaml_file(L, path, err) != 0) /* [docs, filedocs] */
        return -1;
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -3, ++*ndocs);
    }
    lua_pop(L, 1); /* [docs] */
    return 0;
}

/* path is a file, or a folder whose *.yaml, *.yml and *.json files are read
 * in name order. */
static int add_crds_path(lua_State *L, const char *path, int *ndocs, kl_err *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return kl_err_set(err, KL_EIO, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return add_file(L, path, ndocs, err);
    DIR *d = opendir(path);
    if (!d)
        return kl_err_set(err, KL_EIO, "%s: %s", path, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !(has_suffix(e->d_name, ".yaml") ||
                                     has_suffix(e->d_name, ".yml") ||
                                     has_suffix(e->d_name, ".json")))
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **nn = realloc(names, ncap * sizeof *nn);
            if (!nn) {
                rc = kl_err_set(err, KL_ENOMEM, "out of memory listing %s", path);
                goto out;
            }
            names = nn;
            cap = ncap;
        }
        kl_buf b = KL_BUF_INIT;
        kl_buf_printf(&b, "%s/%s", path, e->d_name);
        if (!(names[n] = kl_buf_take(&b))) {
            rc = kl_err_set(err, KL_ENOMEM, "out of memory listing %s", path);
            goto out;
        }
        n++;
    }
    if (n > 1)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = add_file(L, names[i], ndocs, err);
out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    closedir(d);
    return rc;
}

/* --- the cluster's /openapi/v3 ------------------------------------------ */

typedef struct fetch {
    char *path;        /* "apis/apps/v1" */
    kl_buf body;
    long code;
    char message[1024];
    int *pending;
    loop *l;
} fetch;

static void fetch_done(void *ud, kube_result *res)
{
    fetch *f = ud;
    f->code = res->http_code;
    if (kube_result_ok(res)) {
        f->body = res->body;
        res->body = (kl_buf)KL_BUF_INIT;
    } else {
        snprintf(f->message, sizeof f->message, "%s", res->message);
    }
    if (--*f->pending == 0)
        loop_stop(f->l);
}

/* Push an array of the decoded per-group documents (in path order) of the
 * API server's OpenAPI v3 index. Keeps only api/ and apis/ paths. */
static int push_cluster_docs(lua_State *L, kube_client *c, loop *l, kl_err *err)
{
    json_doc idx = {0};
    fetch *fs = NULL;
    size_t n = 0;
    int rc = -1;
    int idx_pending = 1;
    fetch idxf = {.pending = &idx_pending, .l = l};
    if (!kube_request(c, "GET", "/openapi/v3", NULL, NULL, 0, fetch_done, &idxf)) {
        kl_err_set(err, KL_ENOMEM, "starting GET /openapi/v3 failed");
        goto out;
    }
    loop_run(l);
    if (idxf.code < 200 || idxf.code > 299) {
        kl_err_set(err, KL_EAPI, "GET /openapi/v3: %s (%ld)",
                   idxf.message[0] ? idxf.message : "failed", idxf.code);
        goto out;
    }
    if (json_parse(&idx, idxf.body.data, idxf.body.len, err) != 0) {
        kl_err_wrap(err, "the server's /openapi/v3 answer");
        goto out;
    }
    int paths = json_obj_get(&idx, 0, "paths");
    if (paths < 0 || idx.toks[paths].type != JSON_OBJECT) {
        kl_err_set(err, KL_EAPI, "the server's /openapi/v3 answer has no paths");
        goto out;
    }
    fs = calloc(idx.toks[paths].size + 1, sizeof *fs);
    if (!fs) {
        kl_err_set(err, KL_ENOMEM, "out of memory");
        goto out;
    }
    int pending = 1; /* held until every request is started */
    int started = 1;
    for (int k = json_first(&idx, paths); k >= 0; k = json_next(&idx, k + 1)) {
        char *p = json_str_dup(&idx, k);
        char *url = json_str_dup(&idx, json_obj_get(&idx, k + 1, "serverRelativeURL"));
        if (!p || !url || !(strncmp(p, "api/", 4) == 0 || strncmp(p, "apis/", 5) == 0)) {
            free(p);
            free(url);
            continue;
        }
        fetch *f = &fs[n++];
        f->path = p;
        f->pending = &pending;
        f->l = l;
        pending++;
        if (!kube_request(c, "GET", url, NULL, NULL, 0, fetch_done, f)) {
            pending--;
            kl_err_set(err, KL_ENOMEM, "starting GET %s failed", url);
            free(url);
            started = 0;
            break;
        }
        free(url);
    }
    /* Those in flight finish even when one could not start: fs is theirs. */
    if (--pending > 0)
        loop_run(l);
    if (!started)
        goto out;
    qsort(fs, n, sizeof *fs, cmp_str); /* path is the first member */
    lua_createtable(L, (int)n, 0); /* [docs] */
    for (size_t i = 0; i < n; i++) {
        if (fs[i].code < 200 || fs[i].code > 299) {
            lua_pop(L, 1);
            kl_err_set(err, KL_EAPI, "GET /openapi/v3/%s: %s (%ld)", fs[i].path,
                       fs[i].message[0] ? fs[i].message : "failed", fs[i].code);
            goto out;
        }
        json_doc d = {0};
        if (json_parse(&d, fs[i].body.data, fs[i].body.len, err) != 0) {
            lua_pop(L, 1);
            kl_err_wrap(err, "/openapi/v3/%s", fs[i].path);
            goto out;
        }
        tool_lua_push_json(L, &d, 0);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
        json_doc_free(&d);
        kl_buf_free(&fs[i].body);
    }
    rc = 0;
out:
    for (size_t i = 0; fs && i < n; i++) {
        free(fs[i].path);
        kl_buf_free(&fs[i].body);
    }
    free(fs);
    json_doc_free(&idx);
    kl_buf_free(&idxf.body);
    return rc;
}

static int add_cluster(lua_State *L, const kubeconfig_opts *ko, kl_err *err)
{
    kube_rest_config cfg = {0};
    loop *l = NULL;
    http_client *h = NULL;
    kube_client *c = NULL;
    int rc = -1;
    if (kubeconfig_load(ko, &cfg, err) != 0)
        goto out;
    if (!(l = loop_new(err)) || !(h = http_client_new(l, err)))
        goto out;
    kube_client_opts copts = {0};
    copts.max_retries = 1;
    copts.qps = 1000;
    copts.burst = 1000;
    if (!(c = kube_client_new(l, h, &cfg, &copts, err)))
        goto out;
    rc = push_cluster_docs(L, c, l, err);
out:
    kube_client_free(c);
    http_client_free(h);
    loop_free(l);
    kube_rest_config_free(&cfg);
    return rc;
}

#define GENERATED_MARK "---@meta\n-- Generated by `klua types`"

/* Remove the *.lua files in dir that klua types wrote (they open with
 * GENERATED_MARK) and that the table of new files at the top of L does not
 * have: a group or kind gone from the schemas leaves no class behind, so a
 * folder holds what one run wrote, byte for byte. Files it did not write
 * are never touched. */
static int remove_stale(lua_State *L, const char *dir, int *nremoved, kl_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return kl_err_set(err, KL_EIO, "%s: %s", dir, strerror(errno));
    struct dirent *e;
    kl_buf path = KL_BUF_INIT;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.' || !has_suffix(e->d_name, ".lua"))
            continue;
        lua_getfield(L, -1, e->d_name);
        int fresh = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (fresh)
            continue;
        kl_buf_reset(&path);
        kl_buf_printf(&path, "%s/%s", dir, e->d_name);
        if (kl_buf_failed(&path)) {
            rc = kl_err_set(err, KL_ENOMEM, "out of memory");
            break;
        }
        char head[sizeof GENERATED_MARK] = {0};
        FILE *f = fopen(path.data, "rb");
        size_t n = f ? fread(head, 1, sizeof head - 1, f) : 0;
        if (f)
            fclose(f);
        if (n == sizeof head - 1 && !memcmp(head, GENERATED_MARK, n)) {
            if (remove(path.data) != 0)
                rc = kl_err_set(err, KL_EIO, "removing %s: %s", path.data, strerror(errno));
            else
                (*nremoved)++;
        }
    }
    kl_buf_free(&path);
    closedir(d);
    lua_pop(L, 1);
    return rc;
}

int klua_types_main(int argc, char **argv)
{
    kubeconfig_opts ko = {0};
    const char *outdir = NULL;
    int from_cluster = 0;
    const char **crds = calloc((size_t)argc, sizeof *crds);
    size_t ncrds = 0;
    if (!crds) {
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }
    int rc = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(types_usage, stdout);
            rc = 0;
            goto done;
        } else if (!strcmp(a, "--from-cluster")) {
            from_cluster = 1;
        } else if (!strcmp(a, "--crds") && val) {
            crds[ncrds++] = argv[++i];
        } else if (!strncmp(a, "--crds=", 7)) {
            crds[ncrds++] = a + 7;
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && val) {
            outdir = argv[++i];
        } else if (!strncmp(a, "--output=", 9)) {
            outdir = a + 9;
        } else if (!strcmp(a, "--kubeconfig") && val) {
            ko.path = argv[++i];
        } else if (!strncmp(a, "--kubeconfig=", 13)) {
            ko.path = a + 13;
        } else if (!strcmp(a, "--context") && val) {
            ko.context = argv[++i];
        } else if (!strncmp(a, "--context=", 10)) {
            ko.context = a + 10;
        } else {
            fprintf(stderr, "klua types: unknown or incomplete flag: %s\n%s", a, types_usage);
            goto done;
        }
    }
    if (!outdir || (!ncrds && !from_cluster)) {
        fprintf(stderr, "klua types: need -o DIR and --crds PATH or --from-cluster\n%s",
                types_usage);
        goto done;
    }

    rc = 1;
    double t0 = now_ms();
    kl_err err = {0};
    lua_State *L = tool_lua_new(&err);
    if (!L)
        goto fail;
    lua_getglobal(L, "require");
    lua_pushstring(L, "klua.typegen");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        kl_err_set(&err, KL_EINVAL, "%s", lua_tostring(L, -1));
        goto fail;
    }
    int mod = lua_gettop(L);
    lua_getfield(L, mod, "new_model");
    lua_call(L, 0, 1);
    int model = lua_gettop(L);
    if (ncrds) {
        lua_newtable(L); /* [docs] */
        int ndocs = 0;
        for (size_t i = 0; i < ncrds; i++)
            if (add_crds_path(L, crds[i], &ndocs, &err) != 0)
                goto fail;
        lua_getfield(L, mod, "add_crds");
        lua_pushvalue(L, model);
        lua_pushvalue(L, -3);
        if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
            kl_err_set(&err, KL_EINVAL, "%s", lua_tostring(L, -1));
            goto fail;
        }
        if (lua_tointeger(L, -1) == 0) {
            kl_err_set(&err, KL_EINVAL, "no CustomResourceDefinition in %s%s", crds[0],
                       ncrds > 1 ? " and the other --crds paths" : "");
            goto fail;
        }
        lua_pop(L, 2);
    }
    if (from_cluster) {
        if (add_cluster(L, &ko, &err) != 0)
            goto fail;
        lua_getfield(L, mod, "add_openapi");
        lua_insert(L, -2);
        lua_pushvalue(L, model);
        lua_insert(L, -2);
        if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
            kl_err_set(&err, KL_EINVAL, "%s", lua_tostring(L, -1));
            goto fail;
        }
    }
    lua_getfield(L, mod, "render");
    lua_pushvalue(L, model);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        kl_err_set(&err, KL_EINVAL, "%s", lua_tostring(L, -1));
        goto fail;
    }
    int nfiles = 0, nstale = 0;
    lua_pushvalue(L, -1); /* [files, files] */
    if (tool_lua_write_files(L, outdir, 0, &nfiles, &err) != 0)
        goto fail;
    if (remove_stale(L, outdir, &nstale, &err) != 0) /* [files] */
        goto fail;
    printf("types: wrote %d files to %s in %.0f ms", nfiles, outdir, now_ms() - t0);
    if (nstale)
        printf(" (removed %d it had written before)", nstale);
    printf("\n");
    rc = 0;
    goto done_lua;
fail:
    fprintf(stderr, "error: %s\n", err.msg);
done_lua:
    if (L)
        lua_close(L);
done:
    free(crds);
    return rc;
}
