/* execcred.c - client-go exec credential plugins (see execcred.h).
 *
 * Provides: execcred_run, execcred_parse, execcred_parse_time,
 * execcred_fresh, execcred_free.
 * Uses: posix_spawnp, poll and a pidfd (the plugin process), json (the
 * answer), kubeconfig (kubeconfig_check_token), buf, err, OpenSSL's base64
 * encoder (certificate-authority-data for provideClusterInfo).
 *
 * The plugin runs in a process group of its own. The wait ends when the
 * plugin exits (not at EOF on its stdout, which a grandchild may hold
 * open); then the whole group is killed, so nothing it started in that
 * group outlives it, and the plugin is reaped.
 *
 * Nothing here logs: a plugin's stdout is a credential.
 */
#include "execcred.h"

#include "buf.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_STDOUT (1u << 20)          /* an ExecCredential is a few KB; stop a runaway */
#define DEFAULT_API_VERSION "client.authentication.k8s.io/v1"

void execcred_free(execcred *c)
{
    if (!c)
        return;
    /* Scrub secrets before handing the memory back. */
    if (c->token) {
        memset(c->token, 0, strlen(c->token));
        free(c->token);
    }
    if (c->key_pem) {
        memset(c->key_pem, 0, c->key_len);
        free(c->key_pem);
    }
    free(c->cert_pem);
    memset(c, 0, sizeof *c);
}

int execcred_fresh(const execcred *c, int64_t now)
{
    if (!c->token && !c->cert_pem)
        return 0;
    return c->expires_at == 0 || now + 10 < c->expires_at;
}

static int digits(const char **pp, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char ch = (*pp)[i];
        if (ch < '0' || ch > '9')
            return -1;
        v = v * 10 + (ch - '0');
    }
    *pp += n;
    *out = v;
    return 0;
}

int execcred_parse_time(const char *s, int64_t *out)
{
    int y, mo, d, h, mi, se, oh = 0, om = 0, sign = 0;
    const char *p = s;
    if (!s || digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
        digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
        return -1;
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' ||
        digits(&p, 2, &se))
        return -1;
    if (*p == '.') {                  /* fractions of a second: dropped */
        p++;
        if (*p < '0' || *p > '9')
            return -1;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p == '-' ? -1 : 1;
        p++;
        if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om))
            return -1;
    } else {
        return -1;
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60 ||
        oh > 23 || om > 59)
        return -1;
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    time_t t = timegm(&tm);
    if (t == (time_t)-1 && !(y == 1969 && mo == 12 && d == 31))
        return -1;
    *out = (int64_t)t - sign * (int64_t)(oh * 3600 + om * 60);
    return 0;
}

/* A malloc'd copy of a string member, or NULL (absent or not a string). */
static char *dup_member(const json_doc *d, int obj, const char *key, size_t *len)
{
    int t = json_obj_get(d, obj, key);
    char *s = t >= 0 ? json_str_dup(d, t) : NULL;
    if (s && len)
        *len = strlen(s);
    return s;
}

int execcred_parse(const char *json, size_t len, const char *api_version, execcred *out,
                   kl_err *err)
{
    json_doc doc = {0};
    execcred c = {0};
    char *kind = NULL, *av = NULL, *exp = NULL;
    int rc = -1;
    kl_err perr = {0};
    const char *want = api_version && *api_version ? api_version : DEFAULT_API_VERSION;

    memset(out, 0, sizeof *out);
    if (json_parse(&doc, json, len, &perr) != 0) {
        kl_err_set(err, KL_EINVAL, "%s", perr.msg);
        goto out;
    }
    if (doc.toks[0].type != JSON_OBJECT) {
        kl_err_set(err, KL_EINVAL, "not a JSON object");
        goto out;
    }
    kind = dup_member(&doc, 0, "kind", NULL);
    if (!kind || strcmp(kind, "ExecCredential") != 0) {
        kl_err_set(err, KL_EINVAL, "kind is \"%s\", want \"ExecCredential\"", kind ? kind : "");
        goto out;
    }
    av = dup_member(&doc, 0, "apiVersion", NULL);
    if (!av || strcmp(av, want) != 0) {
        kl_err_set(err, KL_EINVAL, "apiVersion is \"%s\", want \"%s\"", av ? av : "", want);
        goto out;
    }
    int st = json_obj_get(&doc, 0, "status");
    if (st < 0 || doc.toks[st].type != JSON_OBJECT) {
        kl_err_set(err, KL_EINVAL, "no status object");
        goto out;
    }
    c.token = dup_member(&doc, st, "token", NULL);
    c.cert_pem = dup_member(&doc, st, "clientCertificateData", &c.cert_len);
    c.key_pem = dup_member(&doc, st, "clientKeyData", &c.key_len);
    if (c.token && !*c.token) {
        free(c.token);
        c.token = NULL;
    }
    if (c.token && kubeconfig_check_token(c.token, strlen(c.token), "status.token", err) != 0)
        goto out;
    if (!c.cert_pem != !c.key_pem) {
        kl_err_set(err, KL_EINVAL, "status has %s without %s",
                   c.cert_pem ? "clientCertificateData" : "clientKeyData",
                   c.cert_pem ? "clientKeyData" : "clientCertificateData");
        goto out;
    }
    if (!c.token && !c.cert_pem) {
        kl_err_set(err, KL_EINVAL,
                   "status has neither token nor clientCertificateData and clientKeyData");
        goto out;
    }
    exp = dup_member(&doc, st, "expirationTimestamp", NULL);
    if (exp && execcred_parse_time(exp, &c.expires_at) != 0) {
        kl_err_set(err, KL_EINVAL, "expirationTimestamp \"%.64s\" is not an RFC 3339 time", exp);
        goto out;
    }
    *out = c;
    memset(&c, 0, sizeof c);
    rc = 0;
out:
    execcred_free(&c);
    free(kind);
    free(av);
    free(exp);
    json_doc_free(&doc);
    return rc;
}

/* KUBERNETES_EXEC_INFO=<ExecCredential request>; caller frees. */
static char *exec_info(const kube_exec_config *cfg, const execcred_cluster *cl)
{
    kl_buf b = KL_BUF_INIT;
    const char *av = cfg->api_version && *cfg->api_version ? cfg->api_version
                                                          : DEFAULT_API_VERSION;
    int bad = kl_buf_puts(&b, "KUBERNETES_EXEC_INFO={\"apiVersion\":");
    bad |= json_escape_append(&b, av, strlen(av));
    bad |= kl_buf_puts(&b, ",\"kind\":\"ExecCredential\",\"spec\":{");
    if (cfg->provide_cluster_info && cl && cl->server) {
        bad |= kl_buf_puts(&b, "\"cluster\":{\"server\":");
        bad |= json_escape_append(&b, cl->server, strlen(cl->server));
        if (cl->tls_server_name) {
            bad |= kl_buf_puts(&b, ",\"tls-server-name\":");
            bad |= json_escape_append(&b, cl->tls_server_name, strlen(cl->tls_server_name));
        }
        if (cl->insecure)
            bad |= kl_buf_puts(&b, ",\"insecure-skip-tls-verify\":true");
        if (cl->ca_pem && cl->ca_len > 0 && cl->ca_len < (1u << 24)) {
            size_t n = 4 * ((cl->ca_len + 2) / 3) + 1;
            unsigned char *enc = malloc(n);
            if (enc) {
                EVP_EncodeBlock(enc, (const unsigned char *)cl->ca_pem, (int)cl->ca_len);
                bad |= kl_buf_puts(&b, ",\"certificate-authority-data\":\"");
                bad |= kl_buf_puts(&b, (const char *)enc);
                bad |= kl_buf_putc(&b, '"');
                free(enc);
            } else {
                bad = -1;
            }
        }
        bad |= kl_buf_puts(&b, "},");
    }
    bad |= kl_buf_puts(&b, "\"interactive\":false}}");
    if (bad) {
        kl_buf_free(&b);
        return NULL;
    }
    return kl_buf_take(&b);
}

static int env_overridden(const char *entry, const kube_exec_config *cfg)
{
    const char *eq = strchr(entry, '=');
    size_t n = eq ? (size_t)(eq - entry) : strlen(entry);
    if (n == strlen("KUBERNETES_EXEC_INFO") && memcmp(entry, "KUBERNETES_EXEC_INFO", n) == 0)
        return 1;
    for (size_t i = 0; i < cfg->nenv; i++)
        if (strncmp(cfg->env[i], entry, n) == 0 && cfg->env[i][n] == '=')
            return 1;
    return 0;
}

/* The child's environment: ours, minus what the config overrides, plus the
 * config's entries and KUBERNETES_EXEC_INFO. The array is caller-owned; the
 * strings are borrowed (info belongs to the caller too). */
static char **child_env(const kube_exec_config *cfg, char *info)
{
    size_t n = 0;
    while (environ && environ[n])
        n++;
    char **env = calloc(n + cfg->nenv + 2, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!env_overridden(environ[i], cfg))
            env[k++] = environ[i];
    for (size_t i = 0; i < cfg->nenv; i++)
        env[k++] = cfg->env[i];
    env[k++] = info;
    env[k] = NULL;
    return env;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Whether the plugin has exited, leaving it unreaped (WNOWAIT) so that its
 * pid, which is also its process group's id, cannot be reused before the
 * group is killed. A child someone else reaped counts as exited. */
static int child_exited(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0)
        return errno == ECHILD;
    return si.si_pid == pid;
}

/* An fd that polls readable when pid exits, or -1 (kernels before 5.3):
 * then the wait below ticks instead. */
static int exit_fd(pid_t pid)
{
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    return -1;
#endif
}

typedef struct output {
    kl_buf *out;         /* stdout, up to MAX_STDOUT */
    int overflow;        /* stdout went past MAX_STDOUT (the rest is read and dropped) */
    char *first_err;     /* the first non-blank line of stderr */
    size_t first_len, first_cap;
    int first_done;
} output;

/* Read what is there on pipe i (0 stdout, 1 stderr) without blocking.
 * Returns 1 at EOF, else 0. stderr is copied through to ours as it arrives
 * (the plugin may be telling the user something). */
static int drain(int fd, int i, output *o)
{
    char chunk[4096];
    for (;;) {
        ssize_t got = read(fd, chunk, sizeof chunk);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return errno == EAGAIN ? 0 : 1;
        if (got == 0)
            return 1;
        if (i == 0) {
            if (o->overflow || o->out->len + (size_t)got > MAX_STDOUT ||
                kl_buf_append(o->out, chunk, (size_t)got))
                o->overflow = 1; /* keep reading, so the plugin is not blocked */
            continue;
        }
        ssize_t w = write(2, chunk, (size_t)got);
        (void)w;
        for (ssize_t j = 0; j < got && !o->first_done; j++) {
            char ch = chunk[j];
            if (ch == '\n') {
                if (o->first_len > 0)
                    o->first_done = 1; /* skip leading blank lines */
            } else if (o->first_len + 1 < o->first_cap) {
                o->first_err[o->first_len++] = (ch == '\r' || ch == '\t') ? ' ' : ch;
                o->first_err[o->first_len] = '\0';
            }
        }
    }
}

/* Read both pipes (non-blocking fds) until the plugin exits or the deadline
 * passes. It is the exit that ends the wait, not EOF: a grandchild the
 * plugin left behind may hold the pipes open for ever. What the plugin
 * wrote before it exited is in the pipes by then and is drained. 0 once it
 * has exited (still unreaped), -1 on timeout. */
static int collect(pid_t pid, int out_fd, int err_fd, output *o)
{
    int64_t deadline = mono_ms() + EXECCRED_TIMEOUT_MS;
    int efd = exit_fd(pid), rc = -1;
    struct pollfd p[3] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}, {efd, POLLIN, 0}};
    while (!child_exited(pid)) {
        int64_t left = deadline - mono_ms();
        if (left <= 0)
            goto done;
        int r = poll(p, 3, efd >= 0 ? (int)left : (int)(left < 20 ? left : 20));
        if (r < 0 && errno != EINTR)
            goto done;
        for (int i = 0; r > 0 && i < 2; i++)
            if (p[i].fd >= 0 && (p[i].revents & (POLLIN | POLLHUP | POLLERR)) &&
                drain(p[i].fd, i, o))
                p[i].fd = -1;
    }
    for (int i = 0; i < 2; i++)
        if (p[i].fd >= 0)
            drain(p[i].fd, i, o);
    rc = 0;
done:
    if (efd >= 0)
        close(efd);
    return rc;
}

/* Kill the plugin's process group (the plugin and whatever it left behind
 * that did not move to a group of its own) and reap the plugin. */
static void kill_and_reap(pid_t pid, int *status)
{
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL); /* in case it is not a group leader (it always should be) */
    while (waitpid(pid, status, 0) < 0 && errno == EINTR)
        ;
}

int execcred_run(const kube_exec_config *cfg, const execcred_cluster *cluster, execcred *out,
                 kl_err *err)
{
    int rc = -1, spawned = 0, status = 0;
    int outp[2] = {-1, -1}, errp[2] = {-1, -1};
    pid_t pid = -1;
    char *info = NULL;
    char **env = NULL, **argv = NULL;
    kl_buf so = KL_BUF_INIT;
    char first_err[256] = "";
    output o = {&so, 0, first_err, 0, sizeof first_err, 0};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int fa_init = 0, attr_init = 0;
    const char *cmd = cfg && cfg->command ? cfg->command : "";

    memset(out, 0, sizeof *out);
    if (!*cmd) {
        kl_err_set(err, KL_EINVAL, "exec plugin has no command");
        goto out;
    }
    info = exec_info(cfg, cluster);
    env = info ? child_env(cfg, info) : NULL;
    argv = calloc(cfg->nargs + 2, sizeof *argv);
    if (!env || !argv) {
        kl_err_set(err, KL_ENOMEM, "exec plugin %s: out of memory", cmd);
        goto out;
    }
    argv[0] = (char *)cmd;
    for (size_t i = 0; i < cfg->nargs; i++)
        argv[i + 1] = cfg->args[i];
    if (pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0) {
        kl_err_set(err, KL_EIO, "exec plugin %s: pipe: %s", cmd, strerror(errno));
        goto out;
    }
    if (posix_spawn_file_actions_init(&fa) != 0) {
        kl_err_set(err, KL_ENOMEM, "exec plugin %s: out of memory", cmd);
        goto out;
    }
    fa_init = 1;
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
    posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
    /* The loop blocks the signals it takes through signalfd; the plugin must
     * start with a clean mask and default handlers or SIGTERM could not stop it. */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    if (posix_spawnattr_init(&attr) != 0) {
        kl_err_set(err, KL_ENOMEM, "exec plugin %s: out of memory", cmd);
        goto out;
    }
    attr_init = 1;
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    /* Its own process group, so that what it leaves behind can be killed. */
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                        POSIX_SPAWN_SETPGROUP);
    int e = posix_spawnp(&pid, cmd, &fa, &attr, argv, env);
    if (e != 0) {
        if (e == ENOENT)
            kl_err_set(err, KL_EINVAL, "exec plugin %s not found: %s", cmd,
                       cfg->install_hint && *cfg->install_hint
                           ? cfg->install_hint
                           : "install it or fix users[].user.exec.command in the kubeconfig");
        else
            kl_err_set(err, KL_EIO, "exec plugin %s cannot start: %s", cmd, strerror(e));
        goto out;
    }
    spawned = 1;
    close(outp[1]);
    close(errp[1]);
    outp[1] = errp[1] = -1;
    fcntl(outp[0], F_SETFL, O_NONBLOCK);
    fcntl(errp[0], F_SETFL, O_NONBLOCK);
    int timed_out = collect(pid, outp[0], errp[0], &o) != 0;
    kill_and_reap(pid, &status);
    spawned = 0;
    if (timed_out) {
        kl_err_set(err, KL_ETIMEOUT, "exec plugin %s failed: no answer within %d s (killed)", cmd,
                   EXECCRED_TIMEOUT_MS / 1000);
        goto out;
    }
    if (WIFSIGNALED(status)) {
        kl_err_set(err, KL_EIO, "exec plugin %s failed: killed by signal %d%s%s", cmd,
                   WTERMSIG(status), first_err[0] ? ": " : "", first_err);
        goto out;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        kl_err_set(err, KL_EIO, "exec plugin %s failed: exit status %d%s%s", cmd,
                   WIFEXITED(status) ? WEXITSTATUS(status) : -1, first_err[0] ? ": " : "",
                   first_err);
        goto out;
    }
    if (o.overflow) {
        kl_err_set(err, KL_EINVAL, "exec plugin %s printed more than %u bytes", cmd, MAX_STDOUT);
        goto out;
    }
    kl_err perr = {0};
    if (execcred_parse(so.data ? so.data : "", so.len, cfg->api_version, out, &perr) != 0) {
        kl_err_set(err, KL_EINVAL, "exec plugin %s returned invalid ExecCredential: %s", cmd,
                   perr.msg);
        goto out;
    }
    rc = 0;
out:
    if (spawned)
        kill_and_reap(pid, &status);
    if (fa_init)
        posix_spawn_file_actions_destroy(&fa);
    if (attr_init)
        posix_spawnattr_destroy(&attr);
    for (int i = 0; i < 2; i++) {
        if (outp[i] >= 0)
            close(outp[i]);
        if (errp[i] >= 0)
            close(errp[i]);
    }
    if (so.data)
        memset(so.data, 0, so.len);   /* held a credential */
    kl_buf_free(&so);
    free(info);
    free(env);
    free(argv);
    return rc;
}
