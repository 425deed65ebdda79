/* cmd_init.c - `klua init`; see cmd_init.h.
 *
 * The file contents live in lua/lib/klua/scaffold.lua (text is easier to
 * read there); this file parses the flags, finds klua's own tree for the
 * .luarc.json and the kustomize base, writes, and runs `klua types`.
 */
#include "cmd_init.h"

#include "buf.h"
#include "cmd_types.h"
#include "err.h"
#include "klua_home.h"
#include "tool_lua.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char init_usage[] =
    "Usage: klua init DIR --group G --version V --kind K [--plural P] [--namespaced|--cluster]\n"
    "\n"
    "Scaffolds a controller for a new custom resource in DIR (created if missing; an\n"
    "existing file is never overwritten):\n"
    "  crds/P.G.yaml        the CustomResourceDefinition (OpenAPI schema, status subresource)\n"
    "  k.lua                the reconciler (k = the kind in lower case)\n"
    "  spec/k_spec.lua      its spec, for `klua test`\n"
    "  examples/k.yaml      an example object\n"
    "  .luarc.json          editor / type checker settings (LuaLS, EmmyLua)\n"
    "  kustomization.yaml   an overlay on klua's deploy/ adding the kind to klua's RBAC\n"
    "  types/               annotations from the CRD (`klua types --crds crds -o types`)\n"
    "\n"
    "  --plural P           default: the kind in lower case, English plural\n"
    "  --namespaced         the resource lives in namespaces (default)\n"
    "  --cluster            the resource is cluster-scoped\n";

static void set_field(lua_State *L, const char *k, const char *v)
{
    if (!v)
        return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

int klua_init_main(int argc, char **argv)
{
    const char *dir = NULL, *group = NULL, *version = NULL, *kind = NULL, *plural = NULL;
    int namespaced = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        const char **dst = !strcmp(a, "--group")     ? &group
                           : !strcmp(a, "--version") ? &version
                           : !strcmp(a, "--kind")    ? &kind
                           : !strcmp(a, "--plural")  ? &plural
                                                     : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(init_usage, stdout);
            return 0;
        } else if (dst && val) {
            *dst = argv[++i];
        } else if (!strcmp(a, "--namespaced")) {
            namespaced = 1;
        } else if (!strcmp(a, "--cluster")) {
            namespaced = 0;
        } else if (a[0] != '-' && !dir) {
            dir = a;
        } else {
            fprintf(stderr, "klua init: unknown or incomplete argument: %s\n%s", a, init_usage);
            return 2;
        }
    }
    if (!dir || !group || !version || !kind) {
        fprintf(stderr, "klua init: need DIR, --group, --version and --kind\n%s", init_usage);
        return 2;
    }

    kl_err err = {0};
    int rc = 1;
    char *home = NULL, *deploy = NULL, *types = NULL, *lib = NULL, *base = NULL;
    kl_buf crds = KL_BUF_INIT, out = KL_BUF_INIT;
    lua_State *L = NULL;
    if (!(home = klua_home_dir(&err)))
        goto fail;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        kl_err_set(&err, KL_EIO, "creating %s: %s", dir, strerror(errno));
        goto fail;
    }
    kl_buf b = KL_BUF_INIT;
    kl_buf_printf(&b, "%s/deploy", home);
    deploy = kl_buf_take(&b);
    kl_buf_printf(&b, "%s/lua/types", home);
    types = kl_buf_take(&b);
    kl_buf_printf(&b, "%s/lua/lib", home);
    lib = kl_buf_take(&b);
    if (!deploy || !types || !lib) {
        kl_err_set(&err, KL_ENOMEM, "out of memory");
        goto fail;
    }
    if (!(base = klua_rel_path(dir, deploy, &err)))
        goto fail;
    if (!(L = tool_lua_new(&err)))
        goto fail;
    lua_newtable(L); /* [opts] */
    set_field(L, "group", group);
    set_field(L, "version", version);
    set_field(L, "kind", kind);
    set_field(L, "plural", plural);
    set_field(L, "klua_types", types);
    set_field(L, "klua_lib", lib);
    set_field(L, "deploy_base", base);
    lua_pushboolean(L, namespaced);
    lua_setfield(L, -2, "namespaced");
    if (tool_lua_call(L, "klua.scaffold", "files", 1, 1, &err) != 0) /* [files] */
        goto fail;
    int nfiles = 0;
    if (tool_lua_write_files(L, dir, 1, &nfiles, &err) != 0)
        goto fail;
    printf("init: wrote %d files to %s\n", nfiles, dir);

    kl_buf_printf(&crds, "%s/crds", dir);
    kl_buf_printf(&out, "%s/types", dir);
    if (kl_buf_failed(&crds) || kl_buf_failed(&out)) {
        kl_err_set(&err, KL_ENOMEM, "out of memory");
        goto fail;
    }
    char *targv[] = {"types", "--crds", crds.data, "-o", out.data, NULL};
    if (klua_types_main(5, targv) != 0)
        goto done; /* it said why */
    printf("next: klua check --types %s/types %s   (then kubectl apply -f %s/crds; "
           "klua run --scripts %s)\n", dir, dir, dir, dir);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "error: %s\n", err.msg);
done:
    if (L)
        lua_close(L);
    kl_buf_free(&crds);
    kl_buf_free(&out);
    free(home);
    free(deploy);
    free(types);
    free(lib);
    free(base);
    return rc;
}
