/* execcred.c - client-go exec credential plugins (see execcred.h).
 *
 * Provides: execcred_start, execcred_cancel, execcred_parse,
 * execcred_parse_time, execcred_fresh, execcred_free.
 * Uses: posix_spawnp (the plugin process), loop (its pipes and pidfd as fd
 * watches; the timeout, and the exit poll without pidfd, as timers), json
 * (the answer), kubeconfig (kubeconfig_check_token), buf, err, OpenSSL's
 * base64 encoder (certificate-authority-data for provideClusterInfo).
 *
 * The plugin runs in a process group of its own. The run ends when the
 * plugin exits (not at EOF on its stdout, which a grandchild may hold
 * open); then the whole group is killed, so nothing it started in that
 * group outlives it, and the plugin is reaped. Until then the plugin stays
 * unreaped (waitid WNOWAIT), so its pid, which is its group's id, cannot be
 * reused by another process before the group is killed.
 *
 * Nothing here logs: a plugin's stdout is a credential. Its stderr is kept
 * (first lines) for the error message only.
 */
#include "execcred.h"

#include "buf.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
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

/* Whether the plugin has exited, leaving it unreaped (WNOWAIT). A child
 * someone else reaped counts as exited. */
static int child_exited(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0)
        return errno == ECHILD;
    return si.si_pid == pid;
}

/* An fd that polls readable when pid exits, or -1 (kernels before 5.3):
 * then a timer polls instead. */
static int exit_fd(pid_t pid)
{
#ifdef SYS_pidfd_open
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0)
        fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
#else
    (void)pid;
    return -1;
#endif
}

#define EXIT_POLL_MS 20
#define READ_PER_WAKE (64u * 1024) /* then other fds get their turn */
#define ERR_LINES 2                /* stderr lines kept for the message */

enum { RUNNING, EXITED, TIMED_OUT, OUT_TOO_BIG, ERR_TOO_BIG };

struct execcred_proc {
    loop *l;
    pid_t pid;                 /* -1 once reaped */
    int fds[2];                /* read ends of stdout, stderr; -1 once closed */
    int efd;                   /* pidfd, or -1 */
    loop_timer_id deadline, tick;
    uint64_t timeout_ms;
    uint64_t started_ms;       /* loop_time_ms() at the spawn: the timeout is real time */
    size_t max_output;
    int state;                 /* RUNNING until the run ends, then why */
    int overflow;              /* 0, or OUT_TOO_BIG / ERR_TOO_BIG once a stream passed the cap */
    kl_buf out;                /* stdout (a credential: scrubbed before it is freed) */
    size_t err_bytes;          /* stderr bytes seen */
    char first_err[512];       /* the first ERR_LINES non-blank lines of stderr, "; "-joined */
    size_t first_len;
    int err_lines, in_line;
    char *cmd, *api_version;   /* owned copies, for the message and the parse */
    execcred_done_cb done;
    void *ud;
};

/* Keep the first lines of stderr, control bytes made spaces: plain words. */
static void keep_err(execcred_proc *p, const char *b, size_t n)
{
    for (size_t i = 0; i < n && p->err_lines < ERR_LINES; i++) {
        unsigned char ch = (unsigned char)b[i];
        if (ch == '\n') {
            if (p->in_line)
                p->err_lines++;
            p->in_line = 0;
            continue;
        }
        if (!p->in_line && (ch == ' ' || ch == '\t' || ch == '\r'))
            continue;          /* blank lines and leading blanks */
        const char *add = "";
        if (!p->in_line && p->first_len > 0)
            add = "; ";
        p->in_line = 1;
        char c = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
        size_t need = strlen(add) + 1;
        if (p->first_len + need >= sizeof p->first_err)
            continue;
        memcpy(p->first_err + p->first_len, add, need - 1);
        p->first_len += need - 1;
        p->first_err[p->first_len++] = c;
        p->first_err[p->first_len] = '\0';
    }
}

/* Read what is there on pipe i (0 stdout, 1 stderr), at most `budget`
 * bytes. Returns 1 at EOF or error, 0 when the pipe is empty, the budget
 * is spent or a stream passed the cap (p->overflow says which). */
static int drain(execcred_proc *p, int i, size_t budget)
{
    char chunk[4096];
    size_t done = 0;
    int eof = 0;
    while (done < budget && !p->overflow && !eof) {
        ssize_t got = read(p->fds[i], chunk, sizeof chunk);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            eof = got == 0 || errno != EAGAIN;
            break;
        }
        done += (size_t)got;
        if (i == 0) {
            if (p->out.len + (size_t)got > p->max_output ||
                kl_buf_append(&p->out, chunk, (size_t)got) != 0)
                p->overflow = OUT_TOO_BIG;
        } else {
            p->err_bytes += (size_t)got;
            keep_err(p, chunk, (size_t)got);
            if (p->err_bytes > p->max_output)
                p->overflow = ERR_TOO_BIG;
        }
    }
    memset(chunk, 0, sizeof chunk);   /* may have held a credential */
    return eof;
}

static void close_pipe(execcred_proc *p, int i)
{
    if (p->fds[i] < 0)
        return;
    loop_fd_del(p->l, p->fds[i]);
    close(p->fds[i]);
    p->fds[i] = -1;
}

/* Kill the plugin's process group (the plugin and whatever it left behind
 * that did not move to a group of its own) and reap the plugin. The plugin
 * has exited or is SIGKILLed, so the wait is short. */
static int kill_and_reap(execcred_proc *p)
{
    int status = 0;
    if (p->pid <= 0)
        return 0;
    kill(-p->pid, SIGKILL);
    kill(p->pid, SIGKILL); /* in case it is not a group leader (it always should be) */
    while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
        ;
    p->pid = -1;
    return status;
}

/* Stop watching, kill and reap; the proc's resources, not the proc. */
static int stop(execcred_proc *p)
{
    if (p->deadline)
        loop_timer_cancel(p->l, p->deadline);
    if (p->tick)
        loop_timer_cancel(p->l, p->tick);
    p->deadline = p->tick = 0;
    if (p->efd >= 0) {
        loop_fd_del(p->l, p->efd);
        close(p->efd);
        p->efd = -1;
    }
    int status = kill_and_reap(p);
    close_pipe(p, 0);
    close_pipe(p, 1);
    return status;
}

static void proc_free(execcred_proc *p)
{
    if (p->out.data)
        memset(p->out.data, 0, p->out.len);   /* held a credential */
    kl_buf_free(&p->out);
    free(p->cmd);
    free(p->api_version);
    free(p);
}

void execcred_cancel(execcred_proc *p)
{
    if (!p)
        return;
    stop(p);
    proc_free(p);
}

/* The run is over (p->state says how): kill what is left, build the answer,
 * call back, free. */
static void finish(execcred_proc *p)
{
    if (p->state == EXITED) {
        /* What the plugin wrote before it exited is in the pipes: take it, but
         * no more than the caps (a grandchild may still be writing). */
        for (int i = 0; i < 2; i++)
            if (p->fds[i] >= 0)
                drain(p, i, p->max_output + 1);
    }
    if (p->overflow)
        p->state = p->overflow;
    int status = stop(p);
    execcred cred;
    kl_err err = {0};
    int rc = -1;
    const char *sep = p->first_err[0] ? ": " : "";
    memset(&cred, 0, sizeof cred);
    switch (p->state) {
    case TIMED_OUT:
        if (p->timeout_ms % 1000 == 0)
            kl_err_set(&err, KL_ETIMEOUT, "exec plugin %s failed: no answer within %llu s "
                       "(killed)", p->cmd, (unsigned long long)(p->timeout_ms / 1000));
        else
            kl_err_set(&err, KL_ETIMEOUT, "exec plugin %s failed: no answer within %llu ms "
                       "(killed)", p->cmd, (unsigned long long)p->timeout_ms);
        break;
    case OUT_TOO_BIG:
    case ERR_TOO_BIG:
        kl_err_set(&err, KL_EINVAL, "exec plugin %s printed more than %zu bytes on %s (killed)",
                   p->cmd, p->max_output, p->state == OUT_TOO_BIG ? "stdout" : "stderr");
        break;
    default:
        if (WIFSIGNALED(status)) {
            kl_err_set(&err, KL_EIO, "exec plugin %s failed: killed by signal %d%s%s", p->cmd,
                       WTERMSIG(status), sep, p->first_err);
        } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            kl_err_set(&err, KL_EIO, "exec plugin %s failed: exit status %d%s%s", p->cmd,
                       WIFEXITED(status) ? WEXITSTATUS(status) : -1, sep, p->first_err);
        } else {
            kl_err perr = {0};
            if (execcred_parse(p->out.data ? p->out.data : "", p->out.len, p->api_version,
                               &cred, &perr) != 0)
                kl_err_set(&err, KL_EINVAL,
                           "exec plugin %s returned invalid ExecCredential: %s", p->cmd,
                           perr.msg);
            else
                rc = 0;
        }
        break;
    }
    p->done(p->ud, rc, &cred, &err);
    execcred_free(&cred);
    proc_free(p);
}

static void on_exit_seen(execcred_proc *p)
{
    p->state = EXITED;
    finish(p);
}

static void on_pipe(loop *l, int fd, int events, void *ud)
{
    execcred_proc *p = ud;
    (void)l;
    (void)events;
    int i = fd == p->fds[0] ? 0 : 1;
    int eof = drain(p, i, READ_PER_WAKE);
    if (p->overflow) {
        finish(p);             /* a cap was passed: kill it now */
        return;
    }
    if (eof)
        close_pipe(p, i);     /* the exit, not this, ends the run */
}

static void on_pidfd(loop *l, int fd, int events, void *ud)
{
    (void)l;
    (void)fd;
    (void)events;
    on_exit_seen(ud);
}

static void on_tick(loop *l, void *ud)
{
    execcred_proc *p = ud;
    p->tick = 0;
    if (child_exited(p->pid)) {
        on_exit_seen(p);
        return;
    }
    p->tick = loop_timer_add(l, EXIT_POLL_MS, on_tick, p);
}

static void on_deadline(loop *l, void *ud)
{
    execcred_proc *p = ud;
    p->deadline = 0;
    /* The loop's clock may be a test's that jumps ahead (klua test moves it to
     * the next timer when idle): only real time counts. */
    uint64_t ran = loop_time_ms() - p->started_ms;
    if (ran < p->timeout_ms) {
        p->deadline = loop_timer_add(l, p->timeout_ms - ran, on_deadline, p);
        if (p->deadline)
            return;
    }
    /* It may have exited since the last look: that is an answer, not a timeout. */
    p->state = child_exited(p->pid) ? EXITED : TIMED_OUT;
    finish(p);
}

/* posix_spawnp the plugin with stdin /dev/null, stdout and stderr on the
 * pipes' write ends, a clean signal mask and its own process group. */
static int spawn(const kube_exec_config *cfg, char **argv, char **env, int out_w, int err_w,
                 pid_t *pid, kl_err *err)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    const char *cmd = cfg->command;
    if (posix_spawn_file_actions_init(&fa) != 0)
        return kl_err_set(err, KL_ENOMEM, "exec plugin %s: out of memory", cmd);
    if (posix_spawnattr_init(&attr) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return kl_err_set(err, KL_ENOMEM, "exec plugin %s: out of memory", cmd);
    }
    int e = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (!e)
        e = posix_spawn_file_actions_adddup2(&fa, out_w, 1);
    if (!e)
        e = posix_spawn_file_actions_adddup2(&fa, err_w, 2);
    /* The loop blocks the signals it takes through signalfd; the plugin must
     * start with a clean mask and default handlers or SIGTERM could not stop it. */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    if (!e)
        e = posix_spawnattr_setsigmask(&attr, &none);
    if (!e)
        e = posix_spawnattr_setsigdefault(&attr, &all);
    /* Its own process group, so that what it leaves behind can be killed. */
    if (!e)
        e = posix_spawnattr_setpgroup(&attr, 0);
    if (!e)
        e = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                                POSIX_SPAWN_SETPGROUP);
    if (!e)
        e = posix_spawnp(pid, cmd, &fa, &attr, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (e == ENOENT)
        return kl_err_set(err, KL_EINVAL, "exec plugin %s not found: %s", cmd,
                          cfg->install_hint && *cfg->install_hint
                              ? cfg->install_hint
                              : "install it or fix users[].user.exec.command in the kubeconfig");
    if (e)
        return kl_err_set(err, KL_EIO, "exec plugin %s cannot start: %s", cmd, strerror(e));
    return 0;
}

execcred_proc *execcred_start(loop *l, const kube_exec_config *cfg,
                              const execcred_cluster *cluster, const execcred_opts *opts,
                              execcred_done_cb done, void *ud, kl_err *err)
{
    execcred_proc *p = NULL;
    char *info = NULL;
    char **env = NULL, **argv = NULL;
    int outp[2] = {-1, -1}, errp[2] = {-1, -1};
    pid_t pid = -1;
    const char *cmd = cfg && cfg->command ? cfg->command : "";

    if (!*cmd) {
        kl_err_set(err, KL_EINVAL, "exec plugin has no command");
        goto fail;
    }
    p = calloc(1, sizeof *p);
    if (p) {
        p->l = l;
        p->pid = -1;
        p->fds[0] = p->fds[1] = p->efd = -1;
    }
    info = exec_info(cfg, cluster);
    env = info ? child_env(cfg, info) : NULL;
    argv = calloc(cfg->nargs + 2, sizeof *argv);
    if (p) {
        p->cmd = strdup(cmd);
        p->api_version = cfg->api_version ? strdup(cfg->api_version) : NULL;
    }
    if (!p || !env || !argv || !p->cmd || (cfg->api_version && !p->api_version)) {
        kl_err_set(err, KL_ENOMEM, "exec plugin %s: out of memory", cmd);
        goto fail;
    }
    p->timeout_ms = opts && opts->timeout_ms ? opts->timeout_ms : EXECCRED_TIMEOUT_MS;
    p->max_output = opts && opts->max_output ? opts->max_output : EXECCRED_MAX_OUTPUT;
    p->done = done;
    p->ud = ud;
    argv[0] = (char *)cmd;
    for (size_t i = 0; i < cfg->nargs; i++)
        argv[i + 1] = cfg->args[i];
    if (pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0) {
        kl_err_set(err, KL_EIO, "exec plugin %s: pipe: %s", cmd, strerror(errno));
        goto fail;
    }
    if (spawn(cfg, argv, env, outp[1], errp[1], &pid, err) != 0)
        goto fail;
    p->pid = pid;
    p->started_ms = loop_time_ms();
    close(outp[1]);
    close(errp[1]);
    outp[1] = errp[1] = -1;
    p->fds[0] = outp[0];
    p->fds[1] = errp[0];
    outp[0] = errp[0] = -1;
    for (int i = 0; i < 2; i++) {
        if (fcntl(p->fds[i], F_SETFL, O_NONBLOCK) != 0 ||
            loop_fd_add(l, p->fds[i], LOOP_READ, on_pipe, p) != 0) {
            kl_err_set(err, KL_EIO, "exec plugin %s: cannot watch its output: %s", cmd,
                       strerror(errno));
            goto fail;
        }
    }
    p->efd = opts && opts->no_pidfd ? -1 : exit_fd(pid);
    if (p->efd >= 0 && loop_fd_add(l, p->efd, LOOP_READ, on_pidfd, p) != 0) {
        close(p->efd);
        p->efd = -1;
    }
    if (p->efd < 0)
        p->tick = loop_timer_add(l, EXIT_POLL_MS, on_tick, p);
    p->deadline = loop_timer_add(l, p->timeout_ms, on_deadline, p);
    if ((p->efd < 0 && !p->tick) || !p->deadline) {
        kl_err_set(err, KL_ENOMEM, "exec plugin %s: out of memory", cmd);
        goto fail;
    }
    free(info);
    free(env);
    free(argv);
    return p;
fail:
    if (p) {
        stop(p);               /* kills and reaps a spawned plugin */
        proc_free(p);
    }
    for (int i = 0; i < 2; i++) {
        if (outp[i] >= 0)
            close(outp[i]);
        if (errp[i] >= 0)
            close(errp[i]);
    }
    free(info);
    free(env);
    free(argv);
    return NULL;
}
