/* reload.c - the scripts that run, and hot reload (see reload.h).
 *
 * Provides: reload_set's lifecycle: new, start-up loading, starting the
 * controllers, the state others ask for (count, find, synced, ready,
 * active), shutdown, free, and the webhook handlers of the controllers.
 * Uses: reload_script (entries, loading, pending ops), reload_rescan
 * (rescans, their timers), reload_watch (the inotify watcher's release),
 * controller (new, start, shutdown, free), lua_host, loop (timers), log.
 *
 * Starting a controller waits for discovery on the loop: each start is a
 * reload_op whose callback (on_started) finishes it, and start-up ends
 * (finish_start) when the last one has its answer. Rescans, and the
 * watcher that triggers them in --dev, live in reload_rescan.c and
 * reload_watch.c; the state they all share is in reload_int.h.
 */
#include "reload.h"

#include "log.h"
#include "loop.h"
#include "reload_rescan.h"
#include "reload_script.h"
#include "reload_watch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        reload_entry *e = reload_entry_add(s, files[i]);
        if (!e) {
            kl_err_set(err, KL_ENOMEM, "out of memory");
            goto out;
        }
        kl_err lerr = {0};
        lua_host_dep *failed = NULL;
        size_t nfailed = 0;
        if ((e->h = reload_load_one(s, files[i], &failed, &nfailed, &lerr)) != NULL) {
            const char *name = lua_host_decl(e->h)->name;
            reload_entry *other = reload_name_user(s, name, e);
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
        reload_entry_record_failure(e, &lerr, failed, nfailed);
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

/* ---- start-up ---- */

/* Every start has its answer (or there was none to wait for). */
static void finish_start(reload_set *s)
{
    if (s->start_errors && !s->dev) {
        s->started_cb(s->started_ud, &s->start_err);
        return;
    }
    s->started = 1;
    s->started_cb(s->started_ud, NULL);
    reload_schedule_kind_retry(s);
    if (s->again)
        reload_schedule_again(s);
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
    reload_op *o = ud;
    reload_set *s = o->s;
    reload_entry *e = reload_entry_by_path(s, o->path);
    reload_op_done(o);
    reload_op_free(o);
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
            reload_entry_record_failure(e, err, seen, n);
            e->c = NULL;
        }
        controller_free(c);
    } else {
        reload_log_loaded(c);
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
        reload_entry *e = &s->e[i];
        if (!e->h)
            continue;   /* --dev: it failed to load; a rescan retries it */
        if (!(e->c = controller_new(e->h, &s->deps, err)))
            return -1;
        e->h = NULL; /* owned by the controller now */
    }
    for (size_t i = 0; i < s->n; i++) {
        if (!s->e[i].c)
            continue;
        reload_op *o = reload_op_new(s, s->e[i].path, NULL);
        if (!o)
            return kl_err_set(err, KL_ENOMEM, "out of memory");
        if (controller_start(s->e[i].c, on_started, o, err) != 0) {
            reload_op_done(o);
            reload_op_free(o);
            return -1;
        }
    }
    if (!s->pending && !(s->start_timer = loop_timer_add(s->deps.l, 0, on_start_timer, s)))
        return kl_err_set(err, KL_ENOMEM, "out of memory");
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
    reload_watch_free(s);
    if (s->deps.l) {
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
        reload_entry_clear_failed(&s->e[i]);
        free(s->e[i].path);
    }
    free(s->e);
    for (size_t i = 0; i < s->ndraining; i++)
        controller_free(s->draining[i]);
    free(s->draining);
    while (s->ops) {
        reload_op *o = s->ops;
        s->ops = o->next;
        reload_op_free(o);
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
