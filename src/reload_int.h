/* reload_int.h - the state the reload_* modules share (internal).
 *
 * Provides: struct reload_set (the script directory, its entries, the
 * controllers draining, the loads waiting for discovery, the rescan in
 * progress, the watcher's state), reload_entry (one script file),
 * reload_op (a controller start or replace waiting for discovery),
 * reload_changes (what a rescan changed) and reload_watch_dir. Only the
 * reload_* modules include this header; everything else uses reload.h.
 *
 * The modules above it, lowest first: reload_script (listing the
 * directory, entries, loading one script, pending ops), reload_rescan
 * (rescans, stopping removed controllers, the --dev kind retry),
 * reload_watch (inotify, debounce), and reload.c (the set's lifecycle:
 * new, load, start, state, free, webhook handlers) on top.
 * Uses: reload.h (controller, lua_host, buf, err), loop.
 */
#ifndef KLUA_RELOAD_INT_H
#define KLUA_RELOAD_INT_H

#include "buf.h"
#include "controller.h"
#include "err.h"
#include "loop.h"
#include "lua_host.h"
#include "reload.h"

#include <stddef.h>
#include <stdint.h>

/* One script file. */
typedef struct reload_entry {
    char *path;
    controller *c;               /* NULL while it has never loaded */
    lua_host *h;                 /* loaded at start-up, until reload_set_start */
    lua_host_dep *failed;        /* the files of the last failed attempt (reported) */
    size_t nfailed;
    int has_failed;
    char *last_err;              /* what was reported for that attempt */
    int kind_missing;            /* it failed resolving its kinds: retry on a timer (--dev) */
} reload_entry;

/* A controller start or replace waiting for discovery (controller_done_cb's
 * ud). Entries are found again by path: s->e moves when it grows. */
typedef struct reload_op {
    struct reload_set *s;
    char *path;
    char *old_name;              /* replace: the running controller's name */
    lua_host_dep *seen;          /* the files the new version read */
    size_t nseen;
    struct reload_op *next;
} reload_op;

/* What a rescan changed, for its log line. */
typedef struct reload_changes {
    kl_buf what;                 /* "comment (reloaded), foo (added)" */
    int failed;
} reload_changes;

/* A folder inotify watches (reload_watch.c). */
typedef struct reload_watch_dir {
    int wd;
    char *path;
} reload_watch_dir;

struct reload_set {
    char *dir;
    lua_host_opts limits;
    controller_deps deps;
    int started;
    reload_entry *e;
    size_t n;
    controller **draining;       /* removed: waiting for their reconciles */
    size_t ndraining;
    loop_timer_id drain_timer;
    /* the watcher (reload_watch.c) */
    int ifd;                     /* inotify, or -1 */
    reload_watch_dir *wds;
    size_t nwds;
    loop_timer_id debounce;
    char **writing;              /* "wd/name" of .lua files written but not closed */
    size_t nwriting;
    int rescanning, again;
    loop_timer_id again_timer;
    reload_op *ops;              /* waiting for discovery */
    size_t pending;
    uint64_t rescan_t0;
    reload_changes ch;           /* of the rescan in progress */
    reload_started_cb started_cb;
    void *started_ud;
    int dev;                     /* --dev: failing scripts are skipped and retried */
    size_t start_errors;         /* strict start-up: scripts that could not start */
    kl_err start_err;            /* what start-up fails with */
    kl_err first_start_err;
    loop_timer_id start_timer, retry_timer;
    controller_finalizers *finalizers;   /* every controller's, one book */
};

#endif
