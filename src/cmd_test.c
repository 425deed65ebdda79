/* cmd_test.c - `klua test` (see cmd_test.h).
 *
 * Provides: klua_test_main. Uses: testkit (the run), testkit_fake (the
 * fake server's answers), testkit_host (the host table of klua.testkit),
 * fakeapi, kube, kubeconfig, http, loop, tool_lua, lua_json, log.
 *
 * The command line: it finds the spec files and CRDs, starts the loop and
 * the fake server (and with --cluster a set-up client, installing the
 * CRDs), then hands the run to klua.testkit.
 */
#include "cmd_test.h"

#include "buf.h"
#include "err.h"
#include "fakeapi.h"
#include "http.h"
#include "kube.h"
#include "kubeconfig.h"
#include "log.h"
#include "loop.h"
#include "lua_json.h"
#include "testkit.h"
#include "testkit_fake.h"
#include "testkit_host.h"
#include "tool_lua.h"

#include <dirent.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- files: specs and CRDs ---- */

/* s ends with one of the '|'-separated suffixes. */
static int ends_with(const char *s, const char *suffixes)
{
    size_t n = strlen(s);
    while (*suffixes) {
        size_t m = strcspn(suffixes, "|");
        if (n >= m && !strncmp(s + n - m, suffixes, m))
            return 1;
        suffixes += m + (suffixes[m] == '|');
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Append to the Lua array at the top the files of dir ending in suffix
 * (sorted); a file path is taken as is. Returns how many. */
static int add_files(lua_State *L, const char *path, const char *suffix)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return 0;
    if (S_ISREG(st.st_mode)) {
        if (!ends_with(path, suffix))
            return 0;
        lua_pushstring(L, path);
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
        return 1;
    }
    DIR *d = opendir(path);
    if (!d)
        return 0;
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !ends_with(e->d_name, suffix))
            continue;
        char **nn = realloc(names, (n + 1) * sizeof *names);
        if (!nn)
            break;
        names = nn;
        if (!(names[n] = strdup(e->d_name)))
            break;
        n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        lua_pushfstring(L, "%s/%s", path, names[i]);
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
        free(names[i]);
    }
    free(names);
    return (int)n;
}

/* Add every CustomResourceDefinition of the YAML files listed in the array
 * at idx to the array at the top. */
static int collect_crds(lua_State *L, int files, kl_err *err)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, files);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, files, i);
        const char *f = lua_tostring(L, -1);
        if (tool_lua_push_yaml_file(L, f, err) != 0) {
            lua_pop(L, 1);
            return -1;
        }
        lua_Integer nd = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer j = 1; j <= nd; j++) {
            lua_rawgeti(L, -1, j);
            if (lua_istable(L, -1)) {
                lua_getfield(L, -1, "kind");
                int is_crd = lua_isstring(L, -1) &&
                             !strcmp(lua_tostring(L, -1), "CustomResourceDefinition");
                lua_pop(L, 1);
                if (is_crd) {
                    lua_pushvalue(L, -1);
                    lua_rawseti(L, -5, (lua_Integer)lua_rawlen(L, -5) + 1);
                }
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 2);
    }
    return 0;
}

/* --cluster: create the CRDs (AlreadyExists is fine) and wait until the
 * API server serves each kind. */
static int install_crds(kt_run *r, int crds, kl_err *err)
{
    lua_State *L = r->L;
    lua_Integer n = (lua_Integer)lua_rawlen(L, crds);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, crds, i);
        kl_buf body = KL_BUF_INIT, out = KL_BUF_INIT, path = KL_BUF_INIT;
        int rc = 0;
        if (lua_json_encode(L, -1, &body, err) != 0) {
            rc = -1;
        } else {
            long code = kt_request(r, r->base_kc, "POST",
                                   "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", NULL,
                                   body.data, body.len, &out);
            if (code != 201 && code != 409)
                rc = kl_err_set(err, KL_EAPI, "creating a CRD: %ld %.*s", code,
                                (int)(out.len > 300 ? 300 : out.len), out.data ? out.data : "");
        }
        /* Wait until /apis/G/V lists the plural. */
        lua_getfield(L, -1, "spec");
        lua_getfield(L, -1, "group");
        lua_getfield(L, -2, "names");
        lua_getfield(L, -1, "plural");
        lua_getfield(L, -4, "versions");
        lua_rawgeti(L, -1, 1);
        lua_getfield(L, -1, "name");
        const char *group = lua_tostring(L, -6), *plural = lua_tostring(L, -4);
        const char *version = lua_tostring(L, -1);
        if (rc == 0 && group && plural && version) {
            kl_buf_printf(&path, "/apis/%s/%s", group, version);
            uint64_t deadline = loop_time_ms() + REQUEST_LIMIT_MS;
            for (;;) {
                kl_buf_reset(&out);
                long code = kt_request(r, r->base_kc, "GET", path.data, NULL, NULL, 0, &out);
                char want[300];
                snprintf(want, sizeof want, "\"name\":\"%s\"", plural);
                if (code == 200 && out.data && strstr(out.data, want))
                    break;
                if (loop_time_ms() > deadline) {
                    rc = kl_err_set(err, KL_ETIMEOUT, "the API server does not serve %s",
                                    path.data);
                    break;
                }
                loop_run_once(r->l, 100);
            }
        }
        lua_pop(L, 8);
        kl_buf_free(&body);
        kl_buf_free(&out);
        kl_buf_free(&path);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* ---- the command ---- */

static const char test_usage[] =
    "Usage: klua test [DIR] [flags]\n"
    "\n"
    "Runs the *_spec.lua files of DIR (beside the scripts, and in DIR/spec/)\n"
    "against DIR's scripts, each test with a fresh runtime.\n"
    "\n"
    "Flags:\n"
    "  --cluster           run against a real API server (--kubeconfig, else\n"
    "                      $KUBECONFIG, else build/cluster/kubeconfig of `make\n"
    "                      cluster-up`, else ~/.kube/config); each test gets its own\n"
    "                      namespace, deleted afterwards; CRDs are created\n"
    "  --kubeconfig FILE, --context NAME   which cluster, with --cluster\n"
    "  --crds PATH         CRD files or folders (repeatable; DIR/crds/ and DIR/*.yaml\n"
    "                      are read too)\n"
    "  --spec PATH         spec files or folders to run instead of DIR's\n"
    "  --verbose           a line for each passing test too\n"
    "  -v N                klua's own log verbosity (default: warnings only)\n";

/* The host part of an https://host:port URL, in out. */
static void server_host(const char *server, char *out, size_t n)
{
    const char *p = strstr(server, "://");
    p = p ? p + 3 : server;
    size_t len = strcspn(p, ":/");
    snprintf(out, n, "%.*s", (int)len, p);
}

int klua_test_main(int argc, char **argv)
{
    kt_run r = {0};
    r.ref_api = r.ref_http = r.ref_closed = r.ref_tap = LUA_NOREF;
    const char *dir = NULL;
    int verbose = 0, loglevel = -1, rc = 1;
    kl_err err = {0};
    lua_State *L = NULL;
    if (!(L = tool_lua_new(&err))) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    r.L = L;
    lua_newtable(L); /* [crd files] */
    int crd_files = lua_gettop(L);
    lua_newtable(L); /* [crd files, spec paths] */
    int spec_paths = lua_gettop(L);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(test_usage, stdout);
            lua_close(L);
            return 0;
        } else if (!strcmp(a, "--cluster")) {
            r.cluster = 1;
        } else if (!strcmp(a, "--verbose")) {
            verbose = 1;
        } else if (i + 1 < argc && !strcmp(a, "--crds")) {
            lua_pushvalue(L, crd_files);
            int n = add_files(L, argv[++i], ".yaml|.yml");
            lua_pop(L, 1);
            if (!n) {
                fprintf(stderr, "klua test: --crds %s: no YAML files there\n", argv[i]);
                lua_close(L);
                return 2;
            }
        } else if (i + 1 < argc && !strcmp(a, "--spec")) {
            lua_pushstring(L, argv[++i]);
            lua_rawseti(L, spec_paths, (lua_Integer)lua_rawlen(L, spec_paths) + 1);
        } else if (i + 1 < argc && !strcmp(a, "--kubeconfig")) {
            r.kubeconfig = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--context")) {
            r.context = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "-v")) {
            if ((loglevel = kl_log_parse_verbosity(argv[++i])) < 0) {
                fprintf(stderr, "klua: -v wants a number from 0 to 10\n");
                return 2;
            }
        } else if (a[0] == '-' || dir) {
            fprintf(stderr, "klua test: unexpected argument %s (see klua test --help)\n", a);
            lua_close(L);
            return 2;
        } else {
            dir = a;
        }
    }
    if (!dir)
        dir = ".";
    r.scripts = dir;
    kl_log_setup(0, loglevel < 0 ? KL_LOG_WARN : loglevel);

    /* Spec files: --spec paths, else DIR/NAME_spec.lua and DIR/spec/NAME_spec.lua. */
    lua_newtable(L);
    int files = lua_gettop(L);
    lua_Integer nsp = (lua_Integer)lua_rawlen(L, spec_paths);
    for (lua_Integer i = 1; i <= nsp; i++) {
        lua_rawgeti(L, spec_paths, i);
        const char *p = lua_tostring(L, -1);
        lua_pushvalue(L, files);
        add_files(L, p, "_spec.lua");
        lua_pop(L, 2);
    }
    if (nsp == 0) {
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/spec", dir);
        add_files(L, dir, "_spec.lua");
        add_files(L, sub, "_spec.lua");
    }
    /* CRDs: --crds, DIR/crds/, the YAML files of DIR. */
    {
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/crds", dir);
        lua_pushvalue(L, crd_files);
        add_files(L, sub, ".yaml|.yml");
        add_files(L, dir, ".yaml|.yml");
        lua_pop(L, 1);
    }
    lua_newtable(L);
    int crds = lua_gettop(L);
    if (collect_crds(L, crd_files, &err) != 0)
        goto out;
    if (lua_rawlen(L, files) == 0) {
        kl_err_set(&err, KL_EINVAL, "no *_spec.lua files in %s or %s/spec", dir, dir);
        goto out;
    }

    if (!(r.l = loop_new(&err)))
        goto out;
    loop_set_clock(r.l, kt_clock, &r);
    fakeapi_handler fh = kt_fake_handler(&r);
    if (!(r.fake = fakeapi_start(r.l, &fh, &err)))
        goto out;
    if (r.cluster) {
        kube_rest_config cfg = {0};
        char host[256] = "";
        if (kt_load_config(&r, &cfg, &err) != 0) {
            kube_rest_config_free(&cfg);
            goto out;
        }
        server_host(cfg.server, host, sizeof host);
        kube_rest_config_free(&cfg);
        kt_set_proxy_env(fakeapi_port(r.fake), host);
        if (!(r.base_http = http_client_new(r.l, &err)) ||
            !(r.base_kc = kt_new_client(&r, r.base_http, &err)))
            goto out;
        if (install_crds(&r, crds, &err) != 0)
            goto out;
    } else {
        kt_set_proxy_env(fakeapi_port(r.fake), NULL);
    }

    /* testkit.main(host, files, { cluster, crds, verbose }) */
    luaL_requiref(L, "klua.json", luaopen_klua_json, 0);
    lua_pop(L, 1);
    kt_push_host(L, &r);
    int host = lua_gettop(L);
    lua_newtable(L);
    lua_pushboolean(L, r.cluster);
    lua_setfield(L, -2, "cluster");
    lua_pushvalue(L, crds);
    lua_setfield(L, -2, "crds");
    lua_pushboolean(L, verbose);
    lua_setfield(L, -2, "verbose");
    int opts = lua_gettop(L);
    lua_pushvalue(L, host);
    lua_pushvalue(L, files);
    lua_pushvalue(L, opts);
    if (tool_lua_call(L, "klua.testkit", "main", 3, 2, &err) != 0)
        goto out;
    rc = lua_tointeger(L, -1) == 0 ? 0 : 1;
    fflush(stdout);
out:
    if (err.msg[0])
        fprintf(stderr, "error: %s\n", err.msg);
    kt_runtime_free(&r);
    kube_client_free(r.base_kc);
    http_client_free(r.base_http);
    fakeapi_free(r.fake);
    loop_free(r.l);
    lua_close(L);
    return rc;
}
