/* reload.c - the scripts that run, and hot reload (see reload.h).
 *
 * Provides: reload_set (start-up loading, rescans, the inotify watcher).
 * Uses: controller (new, start, replace, shutdown, free), lua_host (load,
 * dependencies), loop (fd watch, timers), metrics (klua_script_reloads_total),
 * log.
 *
 * What changed is decided by content, not by events: each running script
 * knows the files its Lua state read and their hashes, so a rescan after
 * any event (or SIGHUP) reloads exactly the scripts whose code changed,
 * and an event that changed nothing (an editor's backup file, a touch)
 * reloads nothing. Starting and replacing a controller wait for discovery
 * on the loop: each such load is a pending_op whose callback (on_started,
 * on_applied) finishes it, and a rescan ends (finish_rescan) when its last
 * pending load has its answer.
 */
#include "reload.h"

#include "log.h"
#include "loop.h"
#include "metrics.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DRAIN_POLL_MS 100
#define KIND_RETRY_MS 1000   /* --dev: retry scripts whose kind was not served */
#define WATCH_MASK \
    (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_MODIFY)

/* One script file. */
typedef struct entry {
    char *path;
    controller *c;               /* NULL while it has never loaded */
    lua_host *h;                 /* loaded at start-up, until reload_set_start */
    lua_host_dep *failed;        /* the files of the last failed attempt (reported) */
    size_t nfailed;
    int has_failed;
    char *last_err;              /* what was reported for that attempt */
    int kind_missing;            /* it failed resolving its kinds: retry on a timer (--dev) */
} entry;

/* A controller start or replace waiting for discovery (controller_done_cb's
 * ud). Entries are found again by path: s->e moves when it grows. */
typedef struct pending_op {
    struct reload_set *s;
    char *path;
    char *old_name;              /* replace: the running controller's name */
    lua_host_dep *seen;          /* the files the new version read */
    size_t nseen;
    struct pending_op *next;
} pending_op;

/* What a rescan changed, for its log line. */
typedef struct changes {
    kl_buf what;                 /* "comment (reloaded), foo (added)" */
    int failed;
} changes;

typedef struct watch_dir {
    int wd;
    char *path;
} watch_dir;

struct reload_set {
    char *dir;
    lua_host_opts limits;
    controller_deps deps;
    int started;
    entry *e;
    size_t n;
    controller **draining;       /* removed: waiting for their reconciles */
    size_t ndraining;
    loop_timer_id drain_timer;
    int ifd;                     /* inotify, or -1 */
    watch_dir *wds;
    size_t nwds;
    loop_timer_id debounce;
    char **writing;              /* "wd/name" of .lua files written but not closed */
    size_t nwriting;
    int rescanning, again;
    loop_timer_id again_timer;
    pending_op *ops;             /* waiting for discovery */
    size_t pending;
    uint64_t rescan_t0;
    changes ch;                  /* of the rescan in progress */
    reload_started_cb started_cb;
    void *started_ud;
    int dev;                     /* --dev: failing scripts are skipped and retried */
    size_t start_errors;         /* strict start-up: scripts that could not start */
    kl_err start_err;            /* what start-up fails with */
    kl_err first_start_err;
    loop_timer_id start_timer, retry_timer;
    controller_finalizers *finalizers;   /* every controller's, one book */
};

/* ---- files ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void reload_free_list(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

int reload_list_scripts(const char *dir, char ***out, size_t *n, kl_err *err)
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
        /* klua test's specs live beside the scripts; they are not controllers. */
        if (nl > 9 && !strcmp(e->d_name + nl - 9, "_spec.lua"))
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
        reload_free_list(v, len);
        return -1;
    }
    if (len)
        qsort(v, len, sizeof *v, cmp_str);
    *out = v;
    *n = len;
    return 0;
}

/* ---- the set ---- */

reload_set *reload_set_new(const char *dir, const lua_host_opts *limits, kl_err *err)
{
    reload_set *s = calloc(1, sizeof *s);
    if (!s || !(s->dir = strdup(dir))) {
        free(s);
        kl_err_set(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    if (limits)
        s->limits = *limits;
    s->limits.scripts_dir = s->dir;
    s->ifd = -1;
    return s;
}

static void entry_clear_failed(entry *e)
{
    lua_host_deps_free(e->failed, e->nfailed);
    e->failed = NULL;
    e->nfailed = 0;
    e->has_failed = 0;
    free(e->last_err);
    e->last_err = NULL;
    e->kind_missing = 0;
}

/* Remember a failed attempt (failed: the files it read, taken). Returns 1
 * when it is news to report: another message, or files changed since the
 * last report; 0 when the same failure was reported already. */
static int record_failure(entry *e, const kl_err *err, lua_host_dep *failed, size_t nfailed)
{
    int news = !(e->has_failed && e->last_err && !strcmp(e->last_err, err->msg) &&
                 !lua_host_deps_changed(e->failed, e->nfailed));
    int kind_missing = e->kind_missing;
    entry_clear_failed(e);
    e->failed = failed;
    e->nfailed = nfailed;
    e->has_failed = 1;
    e->last_err = strdup(err->msg);
    e->kind_missing = kind_missing;
    return news;
}

/* Strict start-up: count the failures; the message says how many and
 * carries the first. */
static void note_start_error(reload_set *s, const kl_err *err)
{
    if (s->start_errors++ == 0) {
        s->first_start_err = *err;
        s->start_err = *err;
        return;
    }
    kl_err_set(&s->start_err, s->first_start_err.code,
               "%zu scripts could not start (each is logged above); the first: %s",
               s->start_errors, s->first_start_err.msg);
}

/* Load path into a fresh host. On failure *failed receives the files the
 * attempt read (so the error is reported once per version of them). */
static lua_host *load_one(reload_set *s, const char *path, lua_host_dep **failed, size_t *nfailed,
                          kl_err *err)
{
    lua_host *h = lua_host_new(&s->limits, err);
    if (!h)
        return NULL;
    if (lua_host_load(h, path, err) != 0) {
        size_t n = 0;
        const lua_host_dep *d = lua_host_deps(h, &n);
        if (failed && lua_host_deps_copy(d, n, failed) == 0)
            *nfailed = n;
        lua_host_free(h);
        return NULL;
    }
    return h;
}

static const char *entry_name(const entry *e)
{
    if (e->c)
        return controller_name(e->c);
    if (e->h)
        return lua_host_decl(e->h)->name;
    return NULL;
}

/* The entry (other than self) already using controller name, or NULL. */
static entry *name_user(reload_set *s, const char *name, const entry *self)
{
    for (size_t i = 0; i < s->n; i++) {
        const char *n = entry_name(&s->e[i]);
        if (&s->e[i] != self && n && !strcmp(n, name))
            return &s->e[i];
    }
    return NULL;
}

static entry *add_entry(reload_set *s, const char *path)
{
    entry *ne = realloc(s->e, (s->n + 1) * sizeof *ne);
    if (!ne)
        return NULL;
    s->e = ne;
    entry *e = &s->e[s->n];
    memset(e, 0, sizeof *e);
    if (!(e->path = strdup(path)))
        return NULL;
    s->n++;
    return e;
}

int reload_set_load(reload_set *s, int dev, kl_err *err)
{
    char **files = NULL;
    size_t n = 0;
    int rc = -1;
    s->dev = dev;
    if (reload_list_scripts(s->dir, &files, &n, err) != 0)
        return -1;
    if (n == 0) {
        kl_err_set(err, KL_EINVAL, "no *.lua scripts in %s", s->dir);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        entry *e = add_entry(s, files[i]);
        if (!e) {
            kl_err_set(err, KL_ENOMEM, "out of memory");
            goto out;
        }
        kl_err lerr = {0};
        lua_host_dep *failed = NULL;
        size_t nfailed = 0;
        if ((e->h = load_one(s, files[i], &failed, &nfailed, &lerr)) != NULL) {
            const char *name = lua_host_decl(e->h)->name;
            entry *other = name_user(s, name, e);
            if (!other)
                continue;
            kl_err_set(&lerr, KL_EINVAL, "%s: controller name \"%s\" is already used by %s",
                       files[i], name, other->path);
            size_t nd = 0;
            const lua_host_dep *d = lua_host_deps(e->h, &nd);
            if (lua_host_deps_copy(d, nd, &failed) == 0)
                nfailed = nd;
            lua_host_free(e->h);
            e->h = NULL;
        }
        if (lerr.code == KL_ENOMEM) {
            *err = lerr;
            lua_host_deps_free(failed, nfailed);
            goto out;
        }
        /* Every failure is listed; --dev goes on without the script. */
        record_failure(e, &lerr, failed, nfailed);
        kl_log(KL_LOG_ERROR, dev ? "script not loaded; retried when its files change"
                                 : "script not loaded",
               "file", e->path, "error", lerr.msg, NULL);
        note_start_error(s, &lerr);
    }
    if (s->start_errors && !dev) {
        *err = s->start_err;
        goto out;
    }
    s->start_errors = 0;
    rc = 0;
out:
    reload_free_list(files, n);
    return rc;
}

static void log_loaded(controller *c)
{
    const lua_controller_decl *d = controller_decl(c);
    char workers[16];
    snprintf(workers, sizeof workers, "%d", controller_workers(c));
    kl_log(KL_LOG_INFO, "controller loaded", "name", d->name, "kind", d->watch.kind, "apiVersion",
           d->watch.api_version, "file", controller_script(c), "workers", workers, NULL);
}

static void op_free(pending_op *o)
{
    lua_host_deps_free(o->seen, o->nseen);
    free(o->path);
    free(o->old_name);
    free(o);
}

static pending_op *op_new(reload_set *s, const char *path, const char *old_name)
{
    pending_op *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->s = s;
    if (!(o->path = strdup(path)) || (old_name && !(o->old_name = strdup(old_name)))) {
        op_free(o);
        return NULL;
    }
    o->next = s->ops;
    s->ops = o;
    s->pending++;
    return o;
}

/* Unlink o (its callback came); the caller frees it. */
static void op_done(pending_op *o)
{
    reload_set *s = o->s;
    for (pending_op **p = &s->ops; *p; p = &(*p)->next) {
        if (*p == o) {
            *p = o->next;
            break;
        }
    }
    s->pending--;
}

static void on_again(loop *l, void *ud);

static entry *entry_by_path(reload_set *s, const char *path)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->e[i].path, path))
            return &s->e[i];
    return NULL;
}

static void schedule_again(reload_set *s)
{
    s->again = 0;
    if (!s->again_timer)
        s->again_timer = loop_timer_add(s->deps.l, 0, on_again, s);
}

static void schedule_kind_retry(reload_set *s);

/* Every start has its answer (or there was none to wait for). */
static void finish_start(reload_set *s)
{
    if (s->start_errors && !s->dev) {
        s->started_cb(s->started_ud, &s->start_err);
        return;
    }
    s->started = 1;
    s->started_cb(s->started_ud, NULL);
    schedule_kind_retry(s);
    if (s->again)
        schedule_again(s);
}

static void on_start_timer(loop *l, void *ud)
{
    (void)l;
    reload_set *s = ud;
    s->start_timer = 0;
    finish_start(s);
}

static void on_started(void *ud, controller *c, const kl_err *err)
{
    pending_op *o = ud;
    reload_set *s = o->s;
    entry *e = entry_by_path(s, o->path);
    op_done(o);
    op_free(o);
    if (err) {
        /* Its kinds are not served (a CRD not installed yet). */
        kl_log(KL_LOG_ERROR, s->dev ? "script not started; retried when its kind appears"
                                    : "script not started",
               "file", e ? e->path : "", "error", err->msg, NULL);
        note_start_error(s, err);
        if (e) {
            size_t n = 0;
            lua_host_dep *seen = NULL;
            const lua_host_dep *d = lua_host_deps(controller_host(c), &n);
            if (lua_host_deps_copy(d, n, &seen) != 0)
                n = 0;
            e->kind_missing = 1;
            record_failure(e, err, seen, n);
            e->c = NULL;
        }
        controller_free(c);
    } else {
        log_loaded(c);
    }
    if (!s->pending)
        finish_start(s);
}

int reload_set_start(reload_set *s, const controller_deps *deps, reload_started_cb started,
                     void *ud, kl_err *err)
{
    s->deps = *deps;
    s->started_cb = started;
    s->started_ud = ud;
    if (!s->deps.finalizers) {
        if (!(s->finalizers = controller_finalizers_new(deps->remove_orphan_finalizers)))
            return kl_err_set(err, KL_ENOMEM, "out of memory");
        s->deps.finalizers = s->finalizers;
    }
    for (size_t i = 0; i < s->n; i++) {
        entry *e = &s->e[i];
        if (!e->h)
            continue;   /* --dev: it failed to load; a rescan retries it */
        if (!(e->c = controller_new(e->h, &s->deps, err)))
            return -1;
        e->h = NULL; /* owned by the controller now */
    }
    for (size_t i = 0; i < s->n; i++) {
        if (!s->e[i].c)
            continue;
        pending_op *o = op_new(s, s->e[i].path, NULL);
        if (!o)
            return kl_err_set(err, KL_ENOMEM, "out of memory");
        if (controller_start(s->e[i].c, on_started, o, err) != 0) {
            op_done(o);
            op_free(o);
            return -1;
        }
    }
    if (!s->pending && !(s->start_timer = loop_timer_add(s->deps.l, 0, on_start_timer, s)))
        return kl_err_set(err, KL_ENOMEM, "out of memory");
    return 0;
}

/* ---- stopping removed controllers ---- */

static void on_drain_poll(loop *l, void *ud)
{
    reload_set *s = ud;
    s->drain_timer = 0;
    size_t j = 0;
    for (size_t i = 0; i < s->ndraining; i++) {
        controller *c = s->draining[i];
        if (controller_active(c) == 0)
            controller_free(c);   /* releases its informers: unused ones stop */
        else
            s->draining[j++] = c;
    }
    s->ndraining = j;
    if (s->ndraining)
        s->drain_timer = loop_timer_add(l, DRAIN_POLL_MS, on_drain_poll, s);
}

static void stop_controller(reload_set *s, controller *c)
{
    controller_shutdown(c);
    controller **nd = realloc(s->draining, (s->ndraining + 1) * sizeof *nd);
    if (!nd) {
        controller_free(c);   /* cannot wait: cancel what runs */
        return;
    }
    s->draining = nd;
    s->draining[s->ndraining++] = c;
    if (!s->drain_timer)
        s->drain_timer = loop_timer_add(s->deps.l, 0, on_drain_poll, s);
}

/* ---- rescans ---- */

static void note(changes *ch, const char *name, const char *how)
{
    if (ch->what.len)
        kl_buf_puts(&ch->what, ", ");
    kl_buf_printf(&ch->what, "%s (%s)", name, how);
}

/* Report a failed load once per version of the files involved and
 * message (every rescan retries a failed script, so the same failure comes
 * again and again until its files or its cluster change). */
static void report_failure(entry *e, const char *name, const char *what, const kl_err *err,
                           lua_host_dep *failed, size_t nfailed)
{
    if (!record_failure(e, err, failed, nfailed))
        return;
    kl_log(KL_LOG_ERROR, what, "file", e->path, "error", err->msg, NULL);
    metrics_script_reload(name ? name : e->path, 0);
}

static void finish_rescan(reload_set *s);

/* A new or replaced version has its kinds resolved (or not). */
static void on_applied(void *ud, controller *c, const kl_err *err)
{
    pending_op *o = ud;
    reload_set *s = o->s;
    changes *ch = &s->ch;
    entry *e = entry_by_path(s, o->path);
    op_done(o);
    if (!o->old_name && err) {
        /* A new controller that did not start. */
        if (e && e->c == c)
            e->c = NULL;
        controller_free(c);
    }
    if (e && err && err->code != KL_ECANCEL)
        e->kind_missing = 1;   /* its kinds are not served (yet) */
    if (!e) {
        /* cannot happen: entries stay while a rescan waits */
    } else if (!err) {
        if (o->old_name) {
            note(ch, o->old_name, "reloaded");
            metrics_script_reload(o->old_name, 1);
            kl_log(KL_LOG_INFO, "controller reloaded", "name", o->old_name, "file", e->path, NULL);
        } else {
            log_loaded(c);
            note(ch, controller_name(c), "added");
            metrics_script_reload(controller_name(c), 1);
        }
        entry_clear_failed(e);
    } else if (err->code != KL_ECANCEL) {
        report_failure(e, o->old_name,
                       e->c ? "script not reloaded; the running version stays" : "script not loaded",
                       err, o->seen, o->nseen);
        o->seen = NULL;
        o->nseen = 0;
        ch->failed++;
    }
    op_free(o);
    if (!s->pending && s->rescanning)
        finish_rescan(s);
}

/* Build and start a controller for h (owned) on e; the outcome comes to
 * on_applied. 0 when under way. */
static int start_new(reload_set *s, entry *e, lua_host *h, pending_op *o, kl_err *err)
{
    const char *name = lua_host_decl(h)->name;
    entry *other = name_user(s, name, e);
    if (other) {
        kl_err_set(err, KL_EINVAL, "%s: controller name \"%s\" is already used by %s", e->path,
                   name, other->path);
        lua_host_free(h);
        return -1;
    }
    controller *c = controller_new(h, &s->deps, err);
    if (!c) {
        lua_host_free(h);
        return -1;
    }
    if (controller_start(c, on_applied, o, err) != 0) {
        controller_free(c);
        return -1;
    }
    e->c = c;
    return 0;
}

/* The file of e exists: (re)load it if its code changed. A load that
 * needs discovery finishes in on_applied. */
static void rescan_entry(reload_set *s, entry *e, changes *ch)
{
    if (e->c) {
        size_t n = 0;
        const lua_host_dep *d = lua_host_deps(controller_host(e->c), &n);
        if (!lua_host_deps_changed(d, n))
            return;
    }
    kl_err err = {0};
    lua_host_dep *failed = NULL;
    size_t nfailed = 0;
    char name_buf[128];
    snprintf(name_buf, sizeof name_buf, "%s", e->c ? controller_name(e->c) : "");
    const char *old_name = e->c ? name_buf : NULL;
    lua_host *h = load_one(s, e->path, &failed, &nfailed, &err);
    if (!h) {
        report_failure(e, old_name,
                       e->c ? "script not reloaded; the running version stays" : "script not loaded",
                       &err, failed, nfailed);
        ch->failed++;
        return;
    }
    if (e->c && strcmp(lua_host_decl(h)->name, old_name) != 0) {
        /* Renamed: another controller (another finalizer); stop the old one. */
        note(ch, old_name, "removed");
        stop_controller(s, e->c);
        e->c = NULL;
        old_name = NULL;
    }
    size_t n = 0;
    const lua_host_dep *d = lua_host_deps(h, &n);
    pending_op *o = op_new(s, e->path, old_name);
    if (o && lua_host_deps_copy(d, n, &o->seen) == 0)
        o->nseen = n;
    int rc = -1;
    if (!o)
        kl_err_set(&err, KL_ENOMEM, "out of memory");
    else if (e->c)
        rc = controller_replace(e->c, h, on_applied, o, &err);
    else
        rc = start_new(s, e, h, o, &err);   /* h is taken either way */
    if (rc == 0)
        return;
    if (e->c || !o)
        lua_host_free(h);   /* controller_replace leaves h to us on failure */
    lua_host_dep *seen = o ? o->seen : NULL;
    size_t nseen = o ? o->nseen : 0;
    if (o) {
        o->seen = NULL;
        op_done(o);
        op_free(o);
    }
    report_failure(e, old_name,
                   e->c ? "script not reloaded; the running version stays" : "script not loaded",
                   &err, seen, nseen);
    ch->failed++;
}

static void remove_entry(reload_set *s, size_t i, changes *ch)
{
    entry *e = &s->e[i];
    if (e->c) {
        note(ch, controller_name(e->c), "removed");
        kl_log(KL_LOG_INFO, "controller removed", "name", controller_name(e->c), "file", e->path,
               NULL);
        stop_controller(s, e->c);
    }
    lua_host_free(e->h);
    entry_clear_failed(e);
    free(e->path);
    memmove(&s->e[i], &s->e[i + 1], (s->n - i - 1) * sizeof *s->e);
    s->n--;
}

static void on_again(loop *l, void *ud)
{
    (void)l;
    reload_set *s = ud;
    s->again_timer = 0;
    reload_set_rescan(s);
}

/* Every load of the rescan has its answer: report, and run a rescan that
 * was asked for meanwhile. */
static void finish_rescan(reload_set *s)
{
    if (s->ch.what.len) {
        char ms[32];
        snprintf(ms, sizeof ms, "%llu", (unsigned long long)(loop_time_ms() - s->rescan_t0));
        kl_log(KL_LOG_INFO, "reload", "changed", s->ch.what.data, "ms", ms, NULL);
    }
    kl_buf_free(&s->ch.what);
    s->ch.failed = 0;
    s->rescanning = 0;
    schedule_kind_retry(s);
    if (s->again)
        schedule_again(s);
}

static void on_kind_retry(loop *l, void *ud)
{
    (void)l;
    reload_set *s = ud;
    s->retry_timer = 0;
    reload_set_rescan(s);
}

/* --dev: while a script waits for its kind (a CRD installed later), rescan
 * now and then; discovery bounds how often it asks the server. */
static void schedule_kind_retry(reload_set *s)
{
    int waiting = 0;
    for (size_t i = 0; i < s->n && !waiting; i++)
        waiting = s->e[i].kind_missing && !s->e[i].c;
    for (size_t i = 0; i < s->n && !waiting; i++)
        waiting = s->e[i].kind_missing && s->e[i].has_failed;
    if (s->dev && waiting && !s->retry_timer)
        s->retry_timer = loop_timer_add(s->deps.l, KIND_RETRY_MS, on_kind_retry, s);
}

void reload_set_rescan(reload_set *s)
{
    if (!s->started || s->rescanning) {
        /* After start-up, or after the rescan under way. */
        s->again = 1;
        return;
    }
    s->rescanning = 1;
    s->rescan_t0 = loop_time_ms();
    char **files = NULL;
    size_t nfiles = 0;
    kl_err err = {0};
    if (reload_list_scripts(s->dir, &files, &nfiles, &err) != 0) {
        kl_log(KL_LOG_ERROR, "reload: cannot list scripts", "error", err.msg, NULL);
        goto out;
    }
    /* Removed files first: a script renamed to another file keeps its
     * controller name free for the new one. */
    for (size_t i = 0; i < s->n;) {
        int found = 0;
        for (size_t j = 0; j < nfiles && !found; j++)
            found = !strcmp(files[j], s->e[i].path);
        if (found)
            i++;
        else
            remove_entry(s, i, &s->ch);
    }
    for (size_t j = 0; j < nfiles; j++) {
        entry *e = entry_by_path(s, files[j]);
        if (!e && !(e = add_entry(s, files[j]))) {
            kl_log(KL_LOG_ERROR, "reload: out of memory", NULL);
            break;
        }
        rescan_entry(s, e, &s->ch);
    }
out:
    reload_free_list(files, nfiles);
    if (!s->pending)
        finish_rescan(s);
}

/* ---- inotify ---- */

static int add_watch(reload_set *s, const char *path)
{
    int wd = inotify_add_watch(s->ifd, path, WATCH_MASK | IN_ONLYDIR);
    if (wd < 0)
        return -1;
    for (size_t i = 0; i < s->nwds; i++)
        if (s->wds[i].wd == wd)
            return 0;
    watch_dir *n = realloc(s->wds, (s->nwds + 1) * sizeof *n);
    char *p = strdup(path);
    if (!n || !p) {
        if (n)
            s->wds = n;
        free(p);
        return -1;
    }
    s->wds = n;
    s->wds[s->nwds].wd = wd;
    s->wds[s->nwds].path = p;
    s->nwds++;
    return 0;
}

/* Watch path and every folder below it (lib/ and its module folders). */
static void add_tree(reload_set *s, const char *path, int depth)
{
    if (depth > 8 || add_watch(s, path) != 0)
        return;
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char sub[PATH_MAX];
        struct stat st;
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        if (stat(sub, &st) == 0 && S_ISDIR(st.st_mode))
            add_tree(s, sub, depth + 1);
    }
    closedir(d);
}

static const char *wd_path(const reload_set *s, int wd)
{
    for (size_t i = 0; i < s->nwds; i++)
        if (s->wds[i].wd == wd)
            return s->wds[i].path;
    return NULL;
}

static void writing_clear(reload_set *s)
{
    for (size_t i = 0; i < s->nwriting; i++)
        free(s->writing[i]);
    free(s->writing);
    s->writing = NULL;
    s->nwriting = 0;
}

/* Mark the file (wd, name) as being written (on) or whole (off). Without
 * memory a file is simply not tracked: the rescan then comes sooner. */
static void writing_mark(reload_set *s, int wd, const char *name, int on)
{
    char key[NAME_MAX + 32];
    snprintf(key, sizeof key, "%d/%s", wd, name);
    for (size_t i = 0; i < s->nwriting; i++)
        if (!strcmp(s->writing[i], key)) {
            if (!on) {
                free(s->writing[i]);
                s->writing[i] = s->writing[--s->nwriting];
            }
            return;
        }
    char **n = on ? realloc(s->writing, (s->nwriting + 1) * sizeof *n) : NULL;
    if (!n)
        return;
    s->writing = n;
    if ((n[s->nwriting] = strdup(key)))
        s->nwriting++;
}

static void on_debounce(loop *l, void *ud)
{
    (void)l;
    reload_set *s = ud;
    s->debounce = 0;
    writing_clear(s); /* whole by now, or waited for long enough */
    reload_set_rescan(s);
}

static void on_inotify(loop *l, int fd, int events, void *ud)
{
    reload_set *s = ud;
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    int relevant = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                relevant = 1;
                continue;
            }
            if (!ev->len)
                continue;
            const char *dir = wd_path(s, ev->wd);
            size_t nl = strlen(ev->name);
            if (ev->mask & IN_ISDIR) {
                /* A new lib/ or module folder: watch it too. */
                if (dir && (ev->mask & (IN_CREATE | IN_MOVED_TO))) {
                    char sub[PATH_MAX];
                    snprintf(sub, sizeof sub, "%s/%s", dir, ev->name);
                    int top = !strcmp(dir, s->dir);
                    if (!top || !strcmp(ev->name, "lib"))
                        add_tree(s, sub, 1);
                }
                relevant = 1;
            } else if (nl > 4 && !strcmp(ev->name + nl - 4, ".lua")) {
                /* written in place: whole at IN_CLOSE_WRITE; renamed over,
                 * removed, renamed away: whole (or gone) at once */
                int whole = ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM);
                writing_mark(s, ev->wd, ev->name, !whole);
                relevant = 1;
            }
        }
    }
    if (!relevant)
        return;
    /* Coalesce: rescan once events have stopped for a few ms, and no
     * script is half-written. */
    if (s->debounce)
        loop_timer_cancel(l, s->debounce);
    s->debounce = loop_timer_add(l, s->nwriting ? RELOAD_WRITING_MAX_MS : RELOAD_COALESCE_MS,
                                 on_debounce, s);
}

int reload_set_watch(reload_set *s, kl_err *err)
{
    s->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (s->ifd < 0)
        return kl_err_set(err, KL_EIO, "inotify: %s", strerror(errno));
    if (add_watch(s, s->dir) != 0)
        return kl_err_set(err, KL_EIO, "inotify: cannot watch %s: %s", s->dir, strerror(errno));
    char lib[PATH_MAX];
    snprintf(lib, sizeof lib, "%s/lib", s->dir);
    struct stat st;
    if (stat(lib, &st) == 0 && S_ISDIR(st.st_mode))
        add_tree(s, lib, 1);
    if (loop_fd_add(s->deps.l, s->ifd, LOOP_READ, on_inotify, s) != 0)
        return kl_err_set(err, KL_EIO, "inotify: cannot add to the event loop");
    kl_log(KL_LOG_INFO, "watching scripts for changes", "dir", s->dir, NULL);
    return 0;
}

/* ---- state ---- */

size_t reload_set_count(const reload_set *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += s->e[i].c != NULL;
    return n;
}

const controller *reload_set_find(const reload_set *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->e[i].c && !strcmp(controller_name(s->e[i].c), name))
            return s->e[i].c;
    return NULL;
}

int reload_set_rescanning(const reload_set *s) { return s->rescanning; }

size_t reload_set_active(const reload_set *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->e[i].c)
            n += controller_active(s->e[i].c);
    for (size_t i = 0; i < s->ndraining; i++)
        n += controller_active(s->draining[i]);
    return n;
}

int reload_set_synced(const reload_set *s)
{
    if (!s->started)
        return 0;   /* also when strict start-up failed: nothing is synced */
    for (size_t i = 0; i < s->n; i++)
        if (s->e[i].c && !controller_synced(s->e[i].c))
            return 0;
    return 1;
}

int reload_set_ready(void *ud, kl_buf *why)
{
    reload_set *s = ud;
    int ready = s->started;
    if (!s->started && why)
        kl_buf_puts(why, "controllers not started\n");
    for (size_t i = 0; i < s->n; i++) {
        controller *c = s->e[i].c;
        if (c && !controller_synced(c)) {
            ready = 0;
            if (why) {
                const lua_controller_decl *d = controller_decl(c);
                kl_buf_printf(why, "controller %s: informer for %s %s not synced\n",
                              controller_name(c), d->watch.api_version, d->watch.kind);
            }
        }
    }
    return ready;
}

void reload_set_shutdown(reload_set *s)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->e[i].c)
            controller_shutdown(s->e[i].c);
}

void reload_set_free(reload_set *s)
{
    if (!s)
        return;
    if (s->ifd >= 0) {
        if (s->deps.l)
            loop_fd_del(s->deps.l, s->ifd);
        close(s->ifd);
    }
    for (size_t i = 0; i < s->nwds; i++)
        free(s->wds[i].path);
    free(s->wds);
    writing_clear(s);
    if (s->deps.l) {
        if (s->debounce)
            loop_timer_cancel(s->deps.l, s->debounce);
        if (s->drain_timer)
            loop_timer_cancel(s->deps.l, s->drain_timer);
        if (s->again_timer)
            loop_timer_cancel(s->deps.l, s->again_timer);
        if (s->start_timer)
            loop_timer_cancel(s->deps.l, s->start_timer);
        if (s->retry_timer)
            loop_timer_cancel(s->deps.l, s->retry_timer);
    }
    for (size_t i = 0; i < s->n; i++) {
        controller_free(s->e[i].c);   /* cancels a start or replace waiting */
        lua_host_free(s->e[i].h);
        entry_clear_failed(&s->e[i]);
        free(s->e[i].path);
    }
    free(s->e);
    for (size_t i = 0; i < s->ndraining; i++)
        controller_free(s->draining[i]);
    free(s->draining);
    while (s->ops) {
        pending_op *o = s->ops;
        s->ops = o->next;
        op_free(o);
    }
    kl_buf_free(&s->ch.what);
    controller_finalizers_free(s->finalizers);   /* after every controller */
    free(s->dir);
    free(s);
}

/* ---- webhook handlers ---- */

int reload_set_webhook_find(void *ud, const char *name, webhook_target *out)
{
    reload_set *s = ud;
    for (size_t i = 0; i < s->n; i++) {
        controller *c = s->e[i].c;
        if (c && strcmp(controller_name(c), name) == 0) {
            out->host = controller_webhook_host(c, &out->cache);
            return 0;
        }
    }
    return -1;
}

void reload_set_webhook_each(void *ud, webhook_visit_fn visit, void *visit_ud)
{
    reload_set *s = ud;
    for (size_t i = 0; i < s->n; i++) {
        controller *c = s->e[i].c;
        if (!c)
            continue;
        webhook_target t;
        t.host = controller_webhook_host(c, &t.cache);
        visit(visit_ud, controller_name(c), &t);
    }
}
