/* run.c - `klua run` and `klua check` (see run.h).
 *
 * Provides: klua_run_main, klua_check_main.
 * Uses: reload (the scripts and their controllers, hot reload), lua_host
 * (check), controller, lua_ctx (shared ctx state), informer (registry),
 * discovery, kube, http, kubeconfig, ops, metrics and health (/metrics,
 * /healthz, /readyz), leader (--leader-elect), loop, log.
 *
 * Start-up fails fast and plainly: a script that does not load, a kind the
 * server does not know, or a bad kubeconfig each print one "error: ..."
 * line and exit 1, before anything is reconciled. Signals are routed
 * through the loop before libcurl can start a resolver thread: a thread
 * started earlier would keep the signals unblocked and could take SIGHUP
 * with its default action (exit).
 *
 * With --leader-elect, informers start and sync at once (warm caches, as
 * controller-runtime does) but the controllers sit behind a closed
 * controller_gate until the Lease is ours. Losing it exits 1 at once
 * (client-go's OnStoppedLeading): reconciling on without the lease would
 * race the new leader. On SIGTERM the lease is released only after the
 * in-flight reconciles have finished, so a standby never overlaps them.
 */
#include "run.h"

#include "controller.h"
#include "leader.h"
#include "metrics.h"
#include "ops.h"
#include "reload.h"
#include "http.h"
#include "informer.h"
#include "kube.h"
#include "kubeconfig.h"
#include "log.h"
#include "loop.h"
#include "lua_ctx.h"
#include "lua_host.h"
#include "discovery.h"
#include "health.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DRAIN_MS 10000
/* --qps bounds: below 0.01/s a token takes minutes (a typo, not a limit);
 * above 10^6/s throttling is meaningless. */
#define QPS_MIN 0.01
#define QPS_MAX 1e6
/* The poll watches the shutdown drain; metrics are counted where things
 * happen, and readiness does not wait for it. */
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
    "  --secret NAME=FILE        a secret scripts read with ctx:secret(\"NAME\"), read again\n"
    "                            when FILE changes (repeatable); never logged\n"
    "  --github-token-file FILE  alias of --secret github_token=FILE; without either,\n"
    "                            $GITHUB_TOKEN is the secret github_token\n"
    "  --allow-env PATTERN       environment variables ctx:getenv may read, a glob\n"
    "                            (repeatable; default KLUA_* and GITHUB_API_URL)\n"
    "  --qps N, --burst N        client-side API rate limit (default 50, 100)\n"
    "  --lua-memory MIB          memory cap per script (default 64)\n"
    "  --lua-budget N            Lua instructions per reconcile (default 100000000)\n"
    "  --lua-timeout MS          CPU time a reconcile may run without waiting (default 200)\n"
    "  --metrics-addr ADDR       serve /metrics, /healthz, /readyz on ADDR, e.g. :8080 or\n"
    "                            127.0.0.1:0 (default: off)\n"
    "  --healthz-loop-stall S    /healthz fails when the event loop's heartbeat is older\n"
    "                            than S seconds (default 5)\n"
    "  --healthz-informer-failure S  /healthz fails when an informer could not list or\n"
    "                            watch for S seconds (default 180)\n"
    "  --dev                     reload scripts when files in DIR or DIR/lib change\n"
    "  --remove-orphan-finalizers  take klua.dev/... finalizers that no script declares off\n"
    "                            objects being deleted (default: report them once)\n"
    "  --leader-elect            reconcile only while holding a coordination.k8s.io Lease\n"
    "                            (informers warm up meanwhile; default off)\n"
    "  --leader-election-namespace NS  the Lease's namespace (default $POD_NAMESPACE, else\n"
    "                            the kubeconfig context's namespace)\n"
    "  --leader-election-id NAME the Lease's name (default klua)\n"
    "  --leader-lease-duration S, --leader-renew-deadline S, --leader-retry-period S\n"
    "                            seconds (default 15, 10, 2; lease > renew > 1.2 x retry)\n"
    "\n"
    "SIGHUP reloads changed scripts (as --dev does on save).\n";

/* ---- klua check ---- */

static void check_warning(void *ud, const char *where, const char *msg)
{
    printf("warning: %s: %s\n", where, msg);
}

/* Check the scripts of one folder (or one file). Returns the number of
 * scripts that failed; *total counts those looked at. */
static int check_one(const char *arg, size_t *total)
{
    struct stat st;
    char **files = NULL, *dir = NULL;
    size_t n = 0;
    int bad = 0;
    kl_err err = {0};
    lua_host **hosts = NULL;
    if (stat(arg, &st) == 0 && S_ISREG(st.st_mode)) {
        files = calloc(1, sizeof *files);
        dir = strdup(arg);
        if (!files || !dir || !(files[0] = strdup(arg)))
            goto oom;
        n = 1;
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        else
            snprintf(dir, strlen(dir) + 1, ".");
    } else if (reload_list_scripts(arg, &files, &n, &err) != 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    } else if (!(dir = strdup(arg))) {
        goto oom;
    }
    if (!(hosts = calloc(n ? n : 1, sizeof *hosts)))
        goto oom;
    lua_host_opts o = {0};
    o.scripts_dir = dir;
    o.on_warn = check_warning;
    for (size_t i = 0; i < n; i++) {
        (*total)++;
        hosts[i] = lua_host_new(&o, &err);
        if (hosts[i] && lua_host_load(hosts[i], files[i], &err) != 0) {
            lua_host_free(hosts[i]);
            hosts[i] = NULL;
        }
        for (size_t j = 0; hosts[i] && j < i; j++) {
            const char *name = lua_host_decl(hosts[i])->name;
            if (hosts[j] && !strcmp(lua_host_decl(hosts[j])->name, name)) {
                kl_err_set(&err, KL_EINVAL, "%s: controller name \"%s\" is already used by %s",
                           files[i], name, files[j]);
                lua_host_free(hosts[i]);
                hosts[i] = NULL;
            }
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
    goto out;
oom:
    fprintf(stderr, "error: out of memory\n");
    bad++;
out:
    for (size_t i = 0; hosts && i < n; i++)
        lua_host_free(hosts[i]);
    free(hosts);
    reload_free_list(files, n);
    free(dir);
    return bad;
}

int klua_check_main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs("Usage: klua check DIR|FILE.lua ...\n"
              "Loads every script as `klua run` would, without a cluster, and reports\n"
              "errors and warnings (warn() calls, globals assigned at the top level) with\n"
              "file and line. Exit 0 when all are valid (warnings allowed), 1 otherwise.\n",
              argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    int bad = 0;
    size_t total = 0;
    for (int a = 1; a < argc; a++)
        bad += check_one(argv[a], &total);
    fflush(stdout);
    if (total == 0 && !bad) {
        fprintf(stderr, "error: no *.lua scripts found\n");
        return 1;
    }
    return bad ? 1 : 0;
}

/* ---- klua run ---- */

typedef struct run_state {
    loop *l;
    reload_set *set;
    int synced_logged;
    int stopping;
    uint64_t drain_deadline;
    leader_elector *le;          /* --leader-elect, else NULL */
    controller_gate *gate;       /* open while we hold the lease */
    int releasing;               /* drained: handing the lease back */
    int lost;                    /* the lease was lost: exit 1 */
    int start_failed;            /* a controller could not start: exit 1 */
    kl_err start_err;
} run_state;

/* "caches synced" once every controller has synced. Called when one
 * controller's caches have synced (controller_deps.on_synced), so the line
 * comes as soon as the last cache is complete; on_poll checks too, for a
 * set without controllers. */
static void log_synced_once(run_state *r)
{
    if (r->stopping || r->synced_logged || !reload_set_synced(r->set))
        return;
    r->synced_logged = 1;
    char num[32];
    snprintf(num, sizeof num, "%zu", reload_set_count(r->set));
    kl_log(KL_LOG_INFO, "caches synced", "controllers", num, NULL);
}

static void on_controller_synced(void *ud, controller *c)
{
    (void)c;
    log_synced_once(ud);
}

/* Controllers start once discovery has answered for their kinds; one that
 * cannot (an unknown kind) fails start-up as before: one error line, exit 1. */
static void on_set_started(void *ud, const kl_err *err)
{
    run_state *r = ud;
    if (!err)
        return;
    r->start_failed = 1;
    r->start_err = *err;
    loop_stop(r->l);
}

static void on_leader_started(void *ud)
{
    run_state *r = ud;
    controller_gate_set(r->gate, 1);
}

/* Renewals failed for the renew deadline: stop at once, reconciles in
 * flight included (controller_free cancels them). */
static void on_leader_stopped(void *ud)
{
    run_state *r = ud;
    controller_gate_set(r->gate, 0);
    r->lost = 1;
    loop_stop(r->l);
}

static void on_lease_released(void *ud)
{
    run_state *r = ud;
    loop_stop(r->l);
}

static void on_poll(loop *l, void *ud)
{
    run_state *r = ud;
    if (r->stopping) {
        size_t active = reload_set_active(r->set);
        if (active == 0 || loop_now_ms(l) >= r->drain_deadline) {
            if (active) {
                char num[32];
                snprintf(num, sizeof num, "%zu", active);
                kl_log(KL_LOG_WARN, "reconciles still running at the end of the grace period",
                       "count", num, NULL);
            }
            if (r->le && !r->releasing) {
                /* Only now: the work done under the lease has finished. */
                r->releasing = 1;
                controller_gate_set(r->gate, 0);
                leader_release(r->le, on_lease_released, r);
                return;
            }
            loop_stop(l);
            return;
        }
    } else {
        log_synced_once(r);
    }
    loop_timer_add(l, POLL_MS, on_poll, r);
}

static void on_signal(loop *l, int signo, void *ud)
{
    run_state *r = ud;
    if (signo == SIGHUP) {
        if (!r->stopping && r->set) {
            kl_log(KL_LOG_INFO, "SIGHUP: looking for changed scripts", NULL);
            reload_set_rescan(r->set);
        }
        return;
    }
    if (r->stopping)
        return;
    r->stopping = 1;
    r->drain_deadline = loop_now_ms(l) + DRAIN_MS;
    kl_log(KL_LOG_INFO, "shutting down", "signal", signo == SIGINT ? "SIGINT" : "SIGTERM", NULL);
    if (r->set)
        reload_set_shutdown(r->set);
}

typedef struct run_flags {
    const char **secrets;     /* --secret NAME=FILE values (argc slots) */
    size_t nsecrets;
    const char **allow_env;   /* --allow-env patterns (argc slots) */
    size_t nallow_env;
    const char *scripts, *kubeconfig, *context, *ns, *log_format, *token_file, *metrics;
    int workers, verbosity, burst;
    double qps;
    lua_host_opts limits;     /* --lua-memory, --lua-budget, --lua-timeout */
    int dev;                  /* --dev: reload on file changes */
    int remove_orphans;       /* --remove-orphan-finalizers */
    int leader_elect;         /* --leader-elect */
    const char *le_ns, *le_id;
    long le_lease_ms, le_renew_ms, le_retry_ms;   /* 0 = leader.h's defaults */
    health_opts health;       /* --healthz-loop-stall, --healthz-informer-failure */
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

/* The accepted range of the flag being parsed, for the error message. */
typedef struct flag_range {
    double lo, hi;
    long ilo, ihi;
    int integer;
} flag_range;

static int parse_int(const char *s, long lo, long hi, long *out, flag_range *range)
{
    char *end;
    range->ilo = lo;
    range->ihi = hi;
    range->integer = 1;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* A finite decimal number in [lo, hi] ("inf", "nan", 1e-300 are refused:
 * the token bucket divides by it). */
static int parse_number(const char *s, double lo, double hi, double *out, flag_range *range)
{
    char *end;
    range->lo = lo;
    range->hi = hi;
    range->integer = 0;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi)
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
        flag_range range = {0};
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(run_usage, stdout);
            return 1;
        }
        if (!strcmp(argv[i], "--dev")) {
            f->dev = 1;
            continue;
        }
        if (!strcmp(argv[i], "--remove-orphan-finalizers")) {
            f->remove_orphans = 1;
            continue;
        }
        if (!strcmp(argv[i], "--leader-elect")) {
            f->leader_elect = 1;
            continue;
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
        STR_FLAG("--leader-election-namespace", le_ns)
        STR_FLAG("--leader-election-id", le_id)
#undef STR_FLAG
        if ((v = flag_value(argc, argv, &i, "--secret", &missing))) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v || !eq[1]) {
                fprintf(stderr, "klua run: --secret wants NAME=FILE (got \"%s\")\n", v);
                return 2;
            }
            f->secrets[f->nsecrets++] = v;
            continue;
        }
        if ((v = flag_value(argc, argv, &i, "--allow-env", &missing))) {
            if (!*v) {
                fprintf(stderr, "klua run: --allow-env wants a pattern, e.g. MYAPP_*\n");
                return 2;
            }
            f->allow_env[f->nallow_env++] = v;
            continue;
        }
        if ((v = flag_value(argc, argv, &i, "--workers", &missing))) {
            if (parse_int(v, 1, 1024, &num, &range) != 0)
                goto bad_value;
            f->workers = (int)num;
            continue;
        }
        if ((v = flag_value(argc, argv, &i, "-v", &missing)) ||
            (v = flag_value(argc, argv, &i, "--v", &missing))) {
            if (parse_int(v, 0, 10, &num, &range) != 0)
                goto bad_value;
            f->verbosity = (int)num;
            continue;
        }
        if ((v = flag_value(argc, argv, &i, "--burst", &missing))) {
            if (parse_int(v, 1, 100000, &num, &range) != 0)
                goto bad_value;
            f->burst = (int)num;
            continue;
        }
        if ((v = flag_value(argc, argv, &i, "--lua-memory", &missing))) {
            if (parse_int(v, 1, 65536, &num, &range) != 0)
                goto bad_value;
            f->limits.mem_limit = (size_t)num << 20;
            continue;
        }
        if ((v = flag_value(argc, argv, &i, "--lua-budget", &missing))) {
            if (parse_int(v, 1000, 0x7fffffffffffffffL, &num, &range) != 0)
                goto bad_value;
            f->limits.budget = (uint64_t)num;
            continue;
        }
        if ((v = flag_value(argc, argv, &i, "--lua-timeout", &missing))) {
            if (parse_int(v, 1, 3600000, &num, &range) != 0)
                goto bad_value;
            f->limits.run_ms = (uint64_t)num;
            continue;
        }
        uint64_t *hdur = NULL;
        if ((v = flag_value(argc, argv, &i, "--healthz-loop-stall", &missing)))
            hdur = &f->health.stall_ms;
        else if ((v = flag_value(argc, argv, &i, "--healthz-informer-failure", &missing)))
            hdur = &f->health.informer_ms;
        if (hdur) {
            if (parse_int(v, 1, 86400, &num, &range) != 0)
                goto bad_value;
            *hdur = (uint64_t)num * 1000;
            continue;
        }
        long *dur = NULL;
        if ((v = flag_value(argc, argv, &i, "--leader-lease-duration", &missing)))
            dur = &f->le_lease_ms;
        else if ((v = flag_value(argc, argv, &i, "--leader-renew-deadline", &missing)))
            dur = &f->le_renew_ms;
        else if ((v = flag_value(argc, argv, &i, "--leader-retry-period", &missing)))
            dur = &f->le_retry_ms;
        if (dur) {
            if (parse_int(v, 1, 86400, &num, &range) != 0)
                goto bad_value;
            *dur = num * 1000;
            continue;
        }
        if ((v = flag_value(argc, argv, &i, "--qps", &missing))) {
            if (parse_number(v, QPS_MIN, QPS_MAX, &f->qps, &range) != 0)
                goto bad_value;
            continue;
        }
        if (missing)
            fprintf(stderr, "klua run: %s needs a value\n", argv[i]);
        else
            fprintf(stderr, "klua run: unknown flag %s (see klua run --help)\n", argv[i]);
        return 2;
    bad_value: {
        /* "--flag value" (v is argv[i]) or "--flag=value": name the flag alone */
        const char *flag = v == argv[i] ? argv[i - 1] : argv[i];
        int flen = (int)strcspn(flag, "=");
        if (range.integer)
            fprintf(stderr, "klua run: invalid value \"%s\" for %.*s: want an integer from %ld "
                            "to %ld\n", v, flen, flag, range.ilo, range.ihi);
        else
            fprintf(stderr, "klua run: invalid value \"%s\" for %.*s: want a number from %g to "
                            "%g\n", v, flen, flag, range.lo, range.hi);
        return 2;
    }
    }
    if (!f->scripts) {
        fprintf(stderr, "klua run: --scripts DIR is required (see klua run --help)\n");
        return 2;
    }
    if (f->log_format && strcmp(f->log_format, "text") != 0 && strcmp(f->log_format, "json") != 0) {
        fprintf(stderr, "klua run: --log-format must be text or json\n");
        return 2;
    }
    if (f->le_id && !*f->le_id) {
        fprintf(stderr, "klua run: --leader-election-id must not be empty\n");
        return 2;
    }
    kl_err err = {0};
    if (leader_validate(f->le_lease_ms ? f->le_lease_ms : LEADER_LEASE_MS,
                        f->le_renew_ms ? f->le_renew_ms : LEADER_RENEW_MS,
                        f->le_retry_ms ? f->le_retry_ms : LEADER_RETRY_MS, &err) != 0) {
        fprintf(stderr, "klua run: %s\n", err.msg);
        return 2;
    }
    return 0;
}

/* Secrets and environment for the scripts. --github-token-file and
 * $GITHUB_TOKEN are the documented older spellings of the secret
 * github_token; the runtime knows nothing else about GitHub. */
#define TOKEN_SECRET "github_token"
#define TOKEN_ENV "GITHUB_TOKEN"
static const char *const default_allow_env[] = {"KLUA_*", "GITHUB_API_URL"};

static int setup_secrets(const run_flags *f, lua_ctx_shared *shared, kl_err *err)
{
    int have_token = 0;
    for (size_t i = 0; i < f->nsecrets; i++) {
        const char *eq = strchr(f->secrets[i], '=');
        char name[128];
        if ((size_t)(eq - f->secrets[i]) >= sizeof name)
            return kl_err_set(err, KL_EINVAL, "--secret: name too long");
        snprintf(name, sizeof name, "%.*s", (int)(eq - f->secrets[i]), f->secrets[i]);
        for (size_t j = 0; j < i; j++)
            if (strncmp(f->secrets[j], f->secrets[i], (size_t)(eq - f->secrets[i]) + 1) == 0)
                return kl_err_set(err, KL_EINVAL, "--secret %s is given twice", name);
        if (strcmp(name, TOKEN_SECRET) == 0) {
            if (f->token_file)
                return kl_err_set(err, KL_EINVAL, "--github-token-file and --secret "
                                  TOKEN_SECRET "=... name the same secret: give one");
            have_token = 1;
        }
        if (lua_ctx_shared_add_secret_file(shared, name, eq + 1, err) != 0)
            return -1;
    }
    if (f->token_file) {
        if (lua_ctx_shared_add_secret_file(shared, TOKEN_SECRET, f->token_file, err) != 0)
            return -1;
        have_token = 1;
    }
    const char *env = getenv(TOKEN_ENV);
    if (!have_token && env && *env && lua_ctx_shared_set_secret(shared, TOKEN_SECRET, env) != 0)
        return kl_err_set(err, KL_ENOMEM, "out of memory");
    size_t n = f->nallow_env ? f->nallow_env
                             : sizeof default_allow_env / sizeof default_allow_env[0];
    for (size_t i = 0; i < n; i++)
        if (lua_ctx_shared_allow_env(shared, f->nallow_env ? f->allow_env[i]
                                                           : default_allow_env[i]) != 0)
            return kl_err_set(err, KL_ENOMEM, "out of memory");
    return 0;
}

/* The Lease's namespace: --leader-election-namespace, $POD_NAMESPACE, the
 * kubeconfig context's namespace (without the --namespace override, which
 * says what to watch, not where klua lives), else "default". Caller frees. */
static char *leader_namespace(const run_flags *f, const kube_rest_config *cfg)
{
    const char *env = getenv("POD_NAMESPACE");
    if (f->le_ns && *f->le_ns)
        return strdup(f->le_ns);
    if (env && *env)
        return strdup(env);
    if (!f->ns || !*f->ns)
        return strdup(cfg->namespace && *cfg->namespace ? cfg->namespace : "default");
    kube_rest_config plain = {0};
    kubeconfig_opts ko = {f->kubeconfig, f->context, NULL};
    char *ns = NULL;
    if (kubeconfig_load(&ko, &plain, NULL) == 0 && plain.namespace && *plain.namespace)
        ns = strdup(plain.namespace);
    else
        ns = strdup("default");
    kube_rest_config_free(&plain);
    return ns;
}

/* "ops server listening" with the address a client can use. */
static void log_ops_addr(const char *flag, const ops_server *ops)
{
    char host[256] = "";
    const char *colon = strrchr(flag, ':');
    size_t hl = colon ? (size_t)(colon - flag) : 0;
    if (hl >= sizeof host)
        hl = sizeof host - 1;
    memcpy(host, flag, hl);
    host[hl] = '\0';
    char addr[300];
    snprintf(addr, sizeof addr, "%s:%d", hl ? host : "0.0.0.0", ops_port(ops));
    kl_log(KL_LOG_INFO, "ops server listening", "addr", addr, NULL);
}

int klua_run_main(int argc, char **argv)
{
    run_flags f = {0};
    f.secrets = calloc((size_t)argc, sizeof *f.secrets);
    f.allow_env = calloc((size_t)argc, sizeof *f.allow_env);
    if (!f.secrets || !f.allow_env) {
        free(f.secrets);
        free(f.allow_env);
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }
    int prc = parse_run_flags(argc, argv, &f);
    if (prc != 0) {
        free(f.secrets);
        free(f.allow_env);
        return prc == 1 ? 0 : prc;
    }
    kl_log_setup(f.log_format && !strcmp(f.log_format, "json"), f.verbosity);

    int rc = 1;
    kl_err err = {0};
    kube_rest_config cfg = {0};
    loop *l = NULL;
    http_client *http = NULL;
    kube_client *kc = NULL;
    discovery *disco = NULL;
    informer_registry *reg = NULL;
    lua_ctx_shared *shared = NULL;
    ops_server *ops = NULL;
    run_state rs = {0};
    char *le_ns = NULL, *le_id = NULL;

    if (!(rs.set = reload_set_new(f.scripts, &f.limits, &err)) ||
        reload_set_load(rs.set, f.dev, &err) != 0)
        goto out;

    kubeconfig_opts ko = {f.kubeconfig, f.context, f.ns};
    if (kubeconfig_load(&ko, &cfg, &err) != 0)
        goto out;
    if (f.leader_elect &&
        (!(le_ns = leader_namespace(&f, &cfg)) || !(le_id = leader_identity_new()) ||
         !(rs.gate = controller_gate_new(0)))) {
        kl_err_set(&err, KL_ENOMEM, "out of memory");
        goto out;
    }
    if (!(l = loop_new(&err)))
        goto out;
    rs.l = l;
    /* Before any libcurl transfer (and its resolver threads): see the top. */
    if (loop_signal(l, SIGINT, on_signal, &rs) != 0 || loop_signal(l, SIGTERM, on_signal, &rs) != 0 ||
        loop_signal(l, SIGHUP, on_signal, &rs) != 0) {
        kl_err_set(&err, KL_EIO, "cannot install signal handlers");
        goto out;
    }
    if (!(http = http_client_new(l, &err)))
        goto out;
    kube_client_opts copts = {0};
    copts.qps = f.qps;
    copts.burst = f.burst;
    if (!(kc = kube_client_new(l, http, &cfg, &copts, &err)))
        goto out;
    disco = discovery_new(kc, NULL, &err);
    reg = informer_registry_new(kc);
    shared = lua_ctx_shared_new(l, kc, http, &err);
    if (!disco || !reg || !shared) {
        if (!err.msg[0])
            kl_err_set(&err, KL_ENOMEM, "out of memory");
        goto out;
    }
    lua_ctx_shared_set_discovery(shared, disco);
    if (setup_secrets(&f, shared, &err) != 0)
        goto out;
    if (f.metrics && *f.metrics && strcmp(f.metrics, "0") != 0) {
        ops_opts oo = {0};
        oo.addr = f.metrics;
        oo.ready = reload_set_ready;
        oo.ready_ud = rs.set;
        oo.live = health_check;
        oo.live_ud = &f.health;
        if (health_heartbeat_start(l) != 0) {
            kl_err_set(&err, KL_ENOMEM, "out of memory");
            goto out;
        }
        if (ops_start(l, &oo, &ops, &err) != 0)
            goto out;
        if (ops)
            log_ops_addr(f.metrics, ops);
    }

    if (f.leader_elect) {
        leader_config lc = {0};
        lc.ns = le_ns;
        lc.name = f.le_id ? f.le_id : "klua";
        lc.identity = le_id;
        lc.lease_ms = f.le_lease_ms;
        lc.renew_ms = f.le_renew_ms;
        lc.retry_ms = f.le_retry_ms;
        lc.on_started = on_leader_started;
        lc.on_stopped = on_leader_stopped;
        lc.ud = &rs;
        if (!(rs.le = leader_new(l, kc, &lc, &err)))
            goto out;
    }

    controller_deps deps = {l, kc, disco, reg, shared, f.ns, f.workers,
                            on_controller_synced, &rs, rs.gate, NULL, f.remove_orphans};
    if (reload_set_start(rs.set, &deps, on_set_started, &rs, &err) != 0)
        goto out;
    if (f.dev && reload_set_watch(rs.set, &err) != 0)
        goto out;
    if (rs.le) {
        char lease[512];
        snprintf(lease, sizeof lease, "%s/%s", le_ns, f.le_id ? f.le_id : "klua");
        kl_log(KL_LOG_INFO, "leader election: waiting for the lease", "lease", lease, "identity",
               le_id, NULL);
        leader_start(rs.le);
    }

    loop_timer_add(l, POLL_MS, on_poll, &rs);
    loop_run(l);
    if (rs.start_failed) {
        err = rs.start_err;
        goto out;
    }
    if (rs.lost) {
        kl_err_set(&err, KL_ESTATE, "leader election: lost the lease; exiting so that only the "
                                    "new leader reconciles");
        goto out;
    }
    kl_log(KL_LOG_INFO, "stopped", NULL);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "error: %s\n", err.msg);
    ops_free(ops);
    reload_set_free(rs.set);
    controller_gate_free(rs.gate);   /* after the controllers behind it */
    leader_free(rs.le);
    free(le_ns);
    free(le_id);
    informer_registry_free(reg);
    discovery_free(disco);
    lua_ctx_shared_free(shared);
    kube_client_free(kc);
    http_client_free(http);
    health_reset();   /* its heartbeat timer is on l */
    loop_free(l);
    kube_rest_config_free(&cfg);
    metrics_default_free();
    free(f.secrets);
    free(f.allow_env);
    return rc;
}
