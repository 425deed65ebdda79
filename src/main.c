/* main.c - the klua command line.
 *
 * Provides: `klua run`, `klua check`, `klua init`, `klua types`,
 * `klua server-version`, --version and --help. Subcommands live in their own
 * modules (run.c, cmd_check_types.c, cmd_init.c, cmd_types.c); this file
 * only dispatches and prints usage. Uses: run, cmd_*, kubeconfig, kube,
 * loop, http.
 */
#include "cmd_check_types.h"
#include "cmd_init.h"
#include "cmd_types.h"
#include "err.h"
#include "http.h"
#include "json.h"
#include "kube.h"
#include "kubeconfig.h"
#include "log.h"
#include "loop.h"
#include "run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef KLUA_VERSION
#define KLUA_VERSION "dev"
#endif

static const char usage_text[] =
    "klua - a Kubernetes controller runtime whose reconcilers are Lua scripts\n"
    "\n"
    "Usage:\n"
    "  klua run --scripts DIR [flags]   run every controller in DIR\n"
    "  klua check [--types DIR] DIR     load and validate the scripts in DIR, no cluster;\n"
    "                                   --types: type-check them too (emmylua_check)\n"
    "  klua init DIR --group G --version V --kind K [--plural P] [--namespaced|--cluster]\n"
    "                                   scaffold a controller: CRD, script, spec, example\n"
    "  klua types [--crds PATH] [--from-cluster] -o DIR\n"
    "                                   LuaLS/EmmyLua annotations from CRD / OpenAPI schemas\n"
    "  klua server-version [flags]      print the API server's version and exit\n"
    "  klua --version                   print klua's version\n"
    "  klua --help                      this text\n"
    "\n"
    "Connection flags (run, types --from-cluster, server-version):\n"
    "  --kubeconfig FILE   kubeconfig to use (else $KUBECONFIG, in-cluster, ~/.kube/config)\n"
    "  --context NAME      kubeconfig context (else the current context)\n"
    "\n"
    "Run `klua run --help` for the flags of run.\n";

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "klua: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nRun 'klua --help' for usage.\n");
    return 2;
}

/* server-version: the smallest end-to-end use of the client; scripts and
 * tests use it to check a kubeconfig. */
/* The answer to GET /version; the loop stops when it is in. */
typedef struct version_call {
    loop *l;
    int done;
    kube_result res;
} version_call;

static void on_version(void *ud, kube_result *r)
{
    version_call *v = ud;
    v->done = 1;
    v->res.http_code = r->http_code;
    memcpy(v->res.reason, r->reason, sizeof v->res.reason);
    memcpy(v->res.message, r->message, sizeof v->res.message);
    v->res.body = r->body;          /* taken over */
    memset(&r->body, 0, sizeof r->body);
    loop_stop(v->l);
}

static int server_version_main(int argc, char **argv)
{
    kubeconfig_opts ko = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "--kubeconfig") || !strcmp(a, "--context")) && i + 1 < argc) {
            if (!strcmp(a, "--kubeconfig"))
                ko.path = argv[++i];
            else
                ko.context = argv[++i];
        } else if (!strncmp(a, "--kubeconfig=", 13)) {
            ko.path = a + 13;
        } else if (!strncmp(a, "--context=", 10)) {
            ko.context = a + 10;
        } else {
            return usage_error("unknown flag for server-version: %s", a);
        }
    }
    kl_err err = {0};
    kube_rest_config cfg = {0};
    loop *l = NULL;
    http_client *h = NULL;
    kube_client *c = NULL;
    version_call v = {0};
    int rc = 1;
    if (kubeconfig_load(&ko, &cfg, &err) != 0)
        goto out;
    if (!(l = loop_new(&err)) || !(h = http_client_new(l, &err)))
        goto out;
    kube_client_opts copts = {0};
    copts.max_retries = 1; /* a down server should be reported quickly */
    if (!(c = kube_client_new(l, h, &cfg, &copts, &err)))
        goto out;
    v.l = l;
    if (!kube_request(c, "GET", "/version", NULL, NULL, 0, on_version, &v)) {
        kl_err_set(&err, KL_ENOMEM, "out of memory");
        goto out;
    }
    /* The loop's own driver, until the answer is in (kube.c retries meanwhile). */
    loop_run(l);
    if (!v.done || !kube_result_ok(&v.res)) {
        kl_err_set(&err, KL_EAPI, "%s", v.res.message[0] ? v.res.message : "GET /version failed");
        goto out;
    }
    json_doc d = {0};
    if (json_parse(&d, v.res.body.data, v.res.body.len, &err) != 0) {
        kl_err_wrap(&err, "the server's /version answer");
        goto out;
    }
    char *gv = json_str_dup(&d, json_obj_get(&d, 0, "gitVersion"));
    printf("%s\n", gv ? gv : "unknown");
    free(gv);
    json_doc_free(&d);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "error: %s\n", err.msg);
    kl_buf_free(&v.res.body);
    kube_client_free(c);
    http_client_free(h);
    loop_free(l);
    kube_rest_config_free(&cfg);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_text, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("klua %s\n", KLUA_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage_text, stdout);
        return 0;
    }
    kl_log_setup(0, 0);
    if (!strcmp(cmd, "run"))
        return klua_run_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "check"))
        return klua_check_cmd_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "init"))
        return klua_init_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "types"))
        return klua_types_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "server-version"))
        return server_version_main(argc - 1, argv + 1);
    if (cmd[0] == '-')
        return usage_error("unknown flag: %s", cmd);
    return usage_error("unknown command: %s", cmd);
}
