/* reload_rescan.c - rescans of the script directory (see reload_rescan.h).
 *
 * Provides: reload_set_rescan, the stopping of removed controllers (they
 * drain: reconciles in flight finish first), the --dev retry of scripts
 * whose kind was not served, and the rescan asked for while another ran.
 * Uses: reload_script (entries, loading, pending ops), controller (new,
 * start, replace, shutdown, free), lua_host (dependencies), loop (timers),
 * metrics (klua_script_reloads_total), log.
 *
 * What changed is decided by content, not by events: each running script
 * knows the files its Lua state read and their hashes, so a rescan after
 * any event (or SIGHUP) reloads exactly the scripts whose code changed,
 * and an event that changed nothing (an editor's backup file, a touch)
 * reloads nothing. Replacing or adding a controller waits for discovery
 * on the loop: each such load is a reload_op whose callback (on_applied)
 * finishes it, and a rescan ends (finish_rescan) when its last pending
 * load has its answer.
 */
#include "reload_rescan.h"

#include "log.h"
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DRAIN_POLL_MS 100
#define KIND_RETRY_MS 1000   /* --dev: retry scripts whose kind was not served */

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

static void note(reload_changes *ch, const char *name, const char *how)
{
    if (ch->what.len)
        kl_buf_puts(&ch->what, ", ");
    kl_buf_printf(&ch->what, "%s (%s)", name, how);
}

/* Report a failed load once per version of the files involved and
 * message (every rescan retries a failed script, so the same failure comes
 * again and again until its files or its cluster change). */
static void report_failure(reload_entry *e, const char *name, const char *what, const kl_err *err,
                           lua_host_dep *failed, size_t nfailed)
{
    if (!reload_entry_record_failure(e, err, failed, nfailed))
        return;
    kl_log(KL_LOG_ERROR, what, "file", e->path, "error", err->msg, NULL);
    metrics_script_reload(name ? name : e->path, 0);
}

static void finish_rescan(reload_set *s);

/* A new or replaced version has its kinds resolved (or not). */
static void on_applied(void *ud, controller *c, const kl_err *err)
{
    reload_op *o = ud;
    reload_set *s = o->s;
    reload_changes *ch = &s->ch;
    reload_entry *e = reload_entry_by_path(s, o->path);
    reload_op_done(o);
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
            reload_log_loaded(c);
            note(ch, controller_name(c), "added");
            metrics_script_reload(controller_name(c), 1);
        }
        reload_entry_clear_failed(e);
    } else if (err->code != KL_ECANCEL) {
        report_failure(e, o->old_name,
                       e->c ? "script not reloaded; the running version stays" : "script not loaded",
                       err, o->seen, o->nseen);
        o->seen = NULL;
        o->nseen = 0;
        ch->failed++;
    }
    reload_op_free(o);
    if (!s->pending && s->rescanning)
        finish_rescan(s);
}

/* Build and start a controller for h (owned) on e; the outcome comes to
 * on_applied. 0 when under way. */
static int start_new(reload_set *s, reload_entry *e, lua_host *h, reload_op *o, kl_err *err)
{
    const char *name = lua_host_decl(h)->name;
    reload_entry *other = reload_name_user(s, name, e);
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
static void rescan_entry(reload_set *s, reload_entry *e, reload_changes *ch)
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
    lua_host *h = reload_load_one(s, e->path, &failed, &nfailed, &err);
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
    reload_op *o = reload_op_new(s, e->path, old_name);
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
        reload_op_done(o);
        reload_op_free(o);
    }
    report_failure(e, old_name,
                   e->c ? "script not reloaded; the running version stays" : "script not loaded",
                   &err, seen, nseen);
    ch->failed++;
}

static void remove_entry(reload_set *s, size_t i, reload_changes *ch)
{
    reload_entry *e = &s->e[i];
    if (e->c) {
        note(ch, controller_name(e->c), "removed");
        kl_log(KL_LOG_INFO, "controller removed", "name", controller_name(e->c), "file", e->path,
               NULL);
        stop_controller(s, e->c);
    }
    lua_host_free(e->h);
    reload_entry_clear_failed(e);
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

void reload_schedule_again(reload_set *s)
{
    s->again = 0;
    if (!s->again_timer)
        s->again_timer = loop_timer_add(s->deps.l, 0, on_again, s);
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
    reload_schedule_kind_retry(s);
    if (s->again)
        reload_schedule_again(s);
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
void reload_schedule_kind_retry(reload_set *s)
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
        reload_entry *e = reload_entry_by_path(s, files[j]);
        if (!e && !(e = reload_entry_add(s, files[j]))) {
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
