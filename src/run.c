/* run.c - `klua run` and `klua check` (see run.h).
 *
 * Provides: klua_run_main, klua_check_main.
 * Uses: lua_host (scripts), controller, lua_ctx (shared ctx state),
 * informer (registry), rest (discovery), kube, http, kubeconfig, loop, log.
 *
 * Start-up fails fast and plainly: a script that does not load, a kind the
 * server does not know, or a bad kubeconfig each print one "error: ..."
 * line and exit 1, before anything is reconciled.
 */
#include "run.h"

#include "controller.h"
#include "http.h"
#include "informer.h"
#include "kube.h"
#include "kubeconfig.h"
#include "log.h"
#include "loop.h"
#include "lua_ctx.h"
#include "lua_host.h"
#include "rest.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DRAIN_MS 10000
#define POLL_MS 100

static const char run_usage[] =
    "Usage: klua run --scripts DIR [flags]\n"
    "\n"
    "Runs every controller declared by the top-level *.lua files in DIR\n"
    "(library modules go in DIR/lib/).\n"
    "\n"
    "Flags:\n"
    "  --scripts DIR             the script directory (required)\n"
    "  --kubeconfig FILE         kubeconfig (else $KUBECONFIG, in-cluster, ~/.kube/config)\n"
    "  --context NAME            kubeconfig context\n"
    "  --namespace NS            watch only this namespace\n"
    "  --workers N               concurrent reconciles per controller (overrides scripts)\n"
    "  --log-format text|json    log line format (default text)\n"
    "  -v N                      debug verbosity (default 0)\n"
    "  --github-token-file FILE  GitHub token for ctx:secret(\"github_token\") (else $GITHUB_TOKEN)\n"
    "  --qps N, --burst N        client-side API rate limit (default 50, 100)\n"
    "  --lua-memory MIB          memory cap per script (default 64)\n"
    "  --lua-budget N            Lua instructions per reconcile (default 100000000)\n"
    "  --lua-timeout MS          Lua running time per reconcile (default 10000)\n"
    "  --metrics-addr ADDR       accepted; metrics are not served yet\n";

/* ---- script files ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* The top-level *.lua files of dir, sorted; caller frees with free_list. */
static int list_scripts(const char *dir, char ***out, size_t *n, kl_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return kl_err_set(err, KL_EIO, "script directory %s: %s", dir, strerror(errno));
    char **v = NULL;
    size_t len = 0;
    int rc = 0;
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t nl = strlen(e->d_name);
        if (nl < 5 || strcmp(e->d_name + nl - 4, ".lua") != 0 || e->d_name[0] == '.')
            continue;
        size_t pl = dl + nl + 2;
        char *path = malloc(pl);
        char **nv = realloc(v, (len + 1) * sizeof *v);
        if (!path || !nv) {
            free(path);
            if (nv)
                v = nv;
            rc = kl_err_set(err, KL_ENOMEM, "out of memory");
            break;
        }
        v = nv;
        snprintf(path, pl, "%.*s/%s", (int)dl, dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(path);
            continue;
        }
        v[len++] = path;
    }
    closedir(d);
    if (rc != 0) {
        free_list(v, len);
        return -1;
    }
    if (len)
        qsort(v, len, sizeof *v, cmp_str);
    *out = v;
    *n = len;
    return 0;
}

/* Load one script; err: "file:line: message". */
static lua_host *load_script(const char *dir, const char *path, const lua_host_opts *limits,
                             kl_err *err)
{
    lua_host_opts o = {dir, 0, 0, 0};
    if (limits) {
        o.mem_limit = limits->mem_limit;
        o.budget = limits->budget;
        o.run_ms = limits->run_ms;
    }
    lua_host *h = lua_host_new(&o, err);
    if (!h)
        return NULL;
    if (lua_host_load(h, path, err) != 0) {
        lua_host_free(h);
        return NULL;
    }
    return h;
}

/* Two scripts with one controller name would share a finalizer. */
static int check_duplicate(lua_host **hosts, size_t i, kl_err *err)
{
    const char *name = lua_host_decl(hosts[i])->name;
    for (size_t j = 0; j < i; j++) {
        if (hosts[j] && !strcmp(lua_host_decl(hosts[j])->name, name))
            return kl_err_set(err, KL_EINVAL, "%s: controller name \"%s\" is already used by %s",
                              lua_host_path(hosts[i]), name, lua_host_path(hosts[j]));
    }
    return 0;
}

/* ---- klua check ---- */

int klua_check_main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs("Usage: klua check DIR|FILE.lua ...\n"
              "Loads every script as `klua run` would, without a cluster, and reports\n"
              "errors with file and line. Exit 0 when all are valid, 1 otherwise.\n",
              argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    int bad = 0;
    size_t total = 0;
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        struct stat st;
        char **files = NULL;
        size_t n = 0;
        char *dir = NULL;
        kl_err err = {0};
        if (stat(arg, &st) == 0 && S_ISREG(st.st_mode)) {
            files = calloc(1, sizeof *files);
            dir = strdup(arg);
            if (!files || !dir || !(files[0] = strdup(arg))) {
                fprintf(stderr, "error: out of memory\n");
                free(files);
                free(dir);
                return 1;
            }
            n = 1;
            char *slash = strrchr(dir, '/');
            if (slash)
                *slash = '\0';
            else
                snprintf(dir, strlen(dir) + 1, ".");
        } else if (list_scripts(arg, &files, &n, &err) != 0) {
            fprintf(stderr, "error: %s\n", err.msg);
            bad++;
            continue;
        } else if (!(dir = strdup(arg))) {
            free_list(files, n);
            return 1;
        }
        lua_host **hosts = calloc(n ? n : 1, sizeof *hosts);
        for (size_t i = 0; hosts && i < n; i++) {
            total++;
            hosts[i] = load_script(dir, files[i], NULL, &err);
            if (hosts[i] && check_duplicate(hosts, i, &err) != 0) {
                lua_host_free(hosts[i]);
                hosts[i] = NULL;
            }
            if (!hosts[i]) {
                fprintf(stderr, "error: %s\n", err.msg);
                bad++;
            } else {
                const lua_controller_decl *d = lua_host_decl(hosts[i]);
                printf("ok: %s (controller %s watches %s %s)\n", files[i], d->name,
                       d->watch.api_version, d->watch.kind);
            }
        }
        for (size_t i = 0; hosts && i < n; i++)
            lua_host_free(hosts[i]);
        free(hosts);
        free_list(files, n);
        free(dir);
    }
    if (total == 0 && !bad) {
        fprintf(stderr, "error: no *.lua scripts found\n");
        return 1;
    }
    return bad ? 1 : 0;
}

/* ---- klua run ---- */

typedef struct run_state {
    loop *l;
    controller **ctrls;
    size_t n;
    int synced_logged;
    int stopping;
    uint64_t drain_deadline;
} run_state;

static void on_poll(loop *l, void *ud)
{
    run_state *r = ud;
    if (r->stopping) {
        size_t active = 0;
        for (size_t i = 0; i < r->n; i++)
            active += controller_active(r->ctrls[i]);
        if (active == 0 || loop_now_ms(l) >= r->drain_deadline) {
            if (active) {
                char num[32];
                snprintf(num, sizeof num, "%zu", active);
                kl_log(KL_LOG_WARN, "reconciles still running at the end of the grace period",
                       "count", num, NULL);
            }
            loop_stop(l);
            return;
        }
    } else if (!r->synced_logged) {
        int all = 1;
        for (size_t i = 0; i < r->n; i++)
            all &= controller_synced(r->ctrls[i]) != 0;
        if (all) {
            r->synced_logged = 1;
            char num[32];
            snprintf(num, sizeof num, "%zu", r->n);
            kl_log(KL_LOG_INFO, "caches synced", "controllers", num, NULL);
        }
    }
    loop_timer_add(l, POLL_MS, on_poll, r);
}

static void on_signal(loop *l, int signo, void *ud)
{
    run_state *r = ud;
    if (r->stopping)
        return;
    r->stopping = 1;
    r->drain_deadline = loop_now_ms(l) + DRAIN_MS;
    kl_log(KL_LOG_INFO, "shutting down", "signal", signo == SIGINT ? "SIGINT" : "SIGTERM", NULL);
    for (size_t i = 0; i < r->n; i++)
        controller_shutdown(r->ctrls[i]);
}

typedef struct run_flags {
    const char *scripts, *kubeconfig, *context, *ns, *log_format, *token_file, *metrics;
    int workers, verbosity, burst;
    double qps;
    lua_host_opts limits;     /* --lua-memory, --lua-budget, --lua-timeout */
} run_flags;

/* A flag's value: "--flag value" or "--flag=value". NULL if not this flag. */
static const char *flag_value(int argc, char **argv, int *i, const char *name, int *missing)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return NULL;
    if (a[n] == '=')
        return a + n + 1;
    if (a[n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_run_flags(int argc, char **argv, run_flags *f)
{
    for (int i = 1; i < argc; i++) {
        int missing = 0;
        const char *v;
        long num;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(run_usage, stdout);
            return 1;
        }
#define STR_FLAG(name, field)                                                                 \
    if ((v = flag_value(argc, argv, &i, name, &missing))) {                                   \
        f->field = v;                                                                         \
        continue;                                                                             \
    }
        STR_FLAG("--scripts", scripts)
        STR_FLAG("--kubeconfig", kubeconfig)
        STR_FLAG("--context", context)
        STR_FLAG("--namespace", ns)
        STR_FLAG("--log-format", log_format)
        STR_FLAG("--github-token-file", token_file)
        STR_FLAG("--metrics-addr", metrics)
#undef STR_FLAG
        if ((v = flag_value(argc, argv, &i, "--workers", &missing))) {
            if (parse_int(v, 1, 1024, &num) != 0)
                goto bad_value;
            f->workers = (int)num;
            continue;
        }
        if ((v = flag_value(argc, argv, &i, "-v", &missing)) ||
            (v = flag_value(argc, argv, &i, "--v", &missing))) {
            if (parse_int(v, 0, 10, &num) != 0)
                goto bad_value;
            f->verbosity = (int)num;
            continue;
        }
        if ((v = flag_value(argc, argv, &i, "--burst", &missing))) {
            if (parse_int(v, 1, 100000, &num) != 0)
                goto bad_value;
            f->burst = (int)num;
            continue;
        }
        if ((v = flag_value(argc, argv, &i, "--lua-memory", &missing))) {
            if (parse_int(v, 1, 65536, &num) != 0)
                goto bad_value;
            f->limits.mem_limit = (size_t)num << 20;
            continue;
        }
        if ((v = flag_value(argc, argv, &i, "--lua-budget", &missing))) {
            if (parse_int(v, 1000, 0x7fffffffffffffffL, &num) != 0)
                goto bad_value;
            f->limits.budget = (uint64_t)num;
            continue;
        }
        if ((v = flag_value(argc, argv, &i, "--lua-timeout", &missing))) {
            if (parse_int(v, 1, 3600000, &num) != 0)
                goto bad_value;
            f->limits.run_ms = (uint64_t)num;
            continue;
        }
        if ((v = flag_value(argc, argv, &i, "--qps", &missing))) {
            char *end;
            f->qps = strtod(v, &end);
            if (end == v || *end || !(f->qps > 0))
                goto bad_value;
            continue;
        }
        if (missing)
            fprintf(stderr, "klua run: %s needs a value\n", argv[i]);
        else
            fprintf(stderr, "klua run: unknown flag %s (see klua run --help)\n", argv[i]);
        return 2;
    bad_value:
        fprintf(stderr, "klua run: invalid value \"%s\" for %s\n", v, argv[i - 1]);
        return 2;
    }
    if (!f->scripts) {
        fprintf(stderr, "klua run: --scripts DIR is required (see klua run --help)\n");
        return 2;
    }
    if (f->log_format && strcmp(f->log_format, "text") != 0 && strcmp(f->log_format, "json") != 0) {
        fprintf(stderr, "klua run: --log-format must be text or json\n");
        return 2;
    }
    return 0;
}

/* The GitHub token: --github-token-file, else $GITHUB_TOKEN. Caller frees. */
static int read_token(const char *file, char **out, kl_err *err)
{
    *out = NULL;
    if (!file) {
        const char *env = getenv("GITHUB_TOKEN");
        if (env && *env && !(*out = strdup(env)))
            return kl_err_set(err, KL_ENOMEM, "out of memory");
        return 0;
    }
    FILE *fp = fopen(file, "r");
    if (!fp)
        return kl_err_set(err, KL_EIO, "--github-token-file %s: %s", file, strerror(errno));
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    if (n == 0)
        return kl_err_set(err, KL_EINVAL, "--github-token-file %s: the file is empty", file);
    *out = strdup(buf);
    memset(buf, 0, sizeof buf);
    return *out ? 0 : kl_err_set(err, KL_ENOMEM, "out of memory");
}

int klua_run_main(int argc, char **argv)
{
    run_flags f = {0};
    int prc = parse_run_flags(argc, argv, &f);
    if (prc != 0)
        return prc == 1 ? 0 : prc;
    kl_log_setup(f.log_format && !strcmp(f.log_format, "json"), f.verbosity);
    if (f.metrics)
        kl_log(KL_LOG_WARN, "--metrics-addr is accepted but metrics are not served yet", NULL);

    int rc = 1;
    kl_err err = {0};
    char **files = NULL, *token = NULL;
    size_t nfiles = 0;
    lua_host **hosts = NULL;
    kube_rest_config cfg = {0};
    loop *l = NULL;
    http_client *http = NULL;
    kube_client *kc = NULL;
    kube_discovery *disco = NULL;
    informer_registry *reg = NULL;
    lua_ctx_shared *shared = NULL;
    run_state rs = {0};

    if (list_scripts(f.scripts, &files, &nfiles, &err) != 0)
        goto out;
    if (nfiles == 0) {
        kl_err_set(&err, KL_EINVAL, "no *.lua scripts in %s", f.scripts);
        goto out;
    }
    hosts = calloc(nfiles, sizeof *hosts);
    rs.ctrls = calloc(nfiles, sizeof *rs.ctrls);
    if (!hosts || !rs.ctrls) {
        kl_err_set(&err, KL_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nfiles; i++) {
        if (!(hosts[i] = load_script(f.scripts, files[i], &f.limits, &err)) ||
            check_duplicate(hosts, i, &err) != 0)
            goto out;
    }
    if (read_token(f.token_file, &token, &err) != 0)
        goto out;

    kubeconfig_opts ko = {f.kubeconfig, f.context, f.ns};
    if (kubeconfig_load(&ko, &cfg, &err) != 0)
        goto out;
    if (!(l = loop_new(&err)) || !(http = http_client_new(l, &err)))
        goto out;
    kube_client_opts copts = {0};
    copts.qps = f.qps;
    copts.burst = f.burst;
    if (!(kc = kube_client_new(l, http, &cfg, &copts, &err)))
        goto out;
    disco = kube_discovery_new(kc);
    reg = informer_registry_new(kc);
    shared = lua_ctx_shared_new(l, kc, http, &err);
    if (!disco || !reg || !shared) {
        if (!err.msg[0])
            kl_err_set(&err, KL_ENOMEM, "out of memory");
        goto out;
    }
    if (token && lua_ctx_shared_set_secret(shared, "github_token", token) != 0) {
        kl_err_set(&err, KL_ENOMEM, "out of memory");
        goto out;
    }

    controller_deps deps = {l, kc, disco, reg, shared, f.ns, f.workers};
    for (size_t i = 0; i < nfiles; i++) {
        rs.ctrls[rs.n] = controller_new(hosts[i], &deps, &err);
        if (!rs.ctrls[rs.n])
            goto out;
        hosts[i] = NULL; /* owned by the controller now */
        controller *c = rs.ctrls[rs.n++];
        const lua_controller_decl *d = controller_decl(c);
        char workers[16];
        snprintf(workers, sizeof workers, "%d", controller_workers(c));
        kl_log(KL_LOG_INFO, "controller loaded", "name", d->name, "kind", d->watch.kind,
               "apiVersion", d->watch.api_version, "file", controller_script(c), "workers",
               workers, NULL);
    }
    for (size_t i = 0; i < rs.n; i++)
        if (controller_start(rs.ctrls[i], &err) != 0)
            goto out;

    rs.l = l;
    if (loop_signal(l, SIGINT, on_signal, &rs) != 0 || loop_signal(l, SIGTERM, on_signal, &rs) != 0) {
        kl_err_set(&err, KL_EIO, "cannot install signal handlers");
        goto out;
    }
    loop_timer_add(l, POLL_MS, on_poll, &rs);
    loop_run(l);
    kl_log(KL_LOG_INFO, "stopped", NULL);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "error: %s\n", err.msg);
    for (size_t i = 0; i < rs.n; i++)
        controller_free(rs.ctrls[i]);
    free(rs.ctrls);
    for (size_t i = 0; hosts && i < nfiles; i++)
        lua_host_free(hosts[i]);
    free(hosts);
    free_list(files, nfiles);
    informer_registry_free(reg);
    kube_discovery_free(disco);
    lua_ctx_shared_free(shared);
    kube_client_free(kc);
    http_client_free(http);
    loop_free(l);
    kube_rest_config_free(&cfg);
    if (token) {
        memset(token, 0, strlen(token));
        free(token);
    }
    return rc;
}
