/* reload.h - the scripts that run, and hot reload.
 *
 * Provides: reload_set, the controllers of one script directory, one per
 * top-level *.lua file. reload_set_load() loads every script (strict: the
 * first error fails start-up); reload_set_start() builds and starts their
 * controllers. reload_set_rescan() compares the directory with what runs:
 *   - a script whose bytes changed, or one of whose lib modules changed
 *     (every file `require` read for that script's Lua state), is loaded
 *     into a fresh Lua state and, if it declares a valid controller,
 *     replaces the running one between reconciles (controller_replace);
 *   - if it fails, the old version keeps running and the error is logged
 *     once with file:line, and not again until one of its files or the
 *     error changes; every rescan tries a failed script again (so SIGHUP
 *     or a touch picks up a CRD installed since);
 *   - a new file starts its controller (its informer, if new, through the
 *     shared registry); a removed file stops its controller (reconciles in
 *     flight finish, then informers no longer used are released);
 *   - a script whose controller name changed is stopped and started anew.
 * One log line per rescan that changed something: which controllers, and
 * how long it took in ms. reload_set_watch() (klua run --dev) watches the
 * directory, DIR/lib and its subfolders with inotify and rescans 100 ms
 * after the last event, so editors that write in several steps (write a
 * temporary file and rename it over, or truncate then write) are seen once.
 * SIGHUP calls reload_set_rescan() too (run.c).
 * A load that needs discovery (a kind not cached yet) waits for it as any
 * other I/O: the rescan returns at once, the loop runs on, and the new
 * version takes over (or its error is reported) when discovery answers;
 * the rescan's log line comes when its last load has its answer. A rescan
 * asked for meanwhile (or during start-up) runs right after.
 * Uses: controller, lua_host, webhook_lua, loop, metrics, log.
 * Built from reload.c (the set's lifecycle), reload_script.c (the script
 * files), reload_rescan.c (rescans) and reload_watch.c (inotify), which
 * share reload_int.h.
 */
#ifndef KLUA_RELOAD_H
#define KLUA_RELOAD_H

#include "buf.h"
#include "controller.h"
#include "err.h"
#include "lua_host.h"
#include "webhook_lua.h"

#include <stddef.h>

/* Hot reload waits for files to be whole: a script is read once its writer
 * closed it (IN_CLOSE_WRITE) or it was renamed into place (IN_MOVED_TO), and
 * events that arrive within RELOAD_COALESCE_MS of each other make one
 * rescan. A file modified or created but not yet closed holds the rescan
 * back, for at most RELOAD_WRITING_MAX_MS after its last change (a hard link
 * or a writer that never closes). */
#define RELOAD_COALESCE_MS 3
#define RELOAD_WRITING_MAX_MS 1000

typedef struct reload_set reload_set;

/* dir and limits are copied (limits->scripts_dir is ignored: dir is used). */
reload_set *reload_set_new(const char *dir, const lua_host_opts *limits, kl_err *err);
/* Load every top-level *.lua of the directory; each failure is logged
 * ("script not loaded", file, error). Strict (dev 0): any failure fails,
 * err holding it ("file:line: message", a duplicate controller name) or,
 * for several, their count. --dev (dev 1): failing scripts are skipped
 * and retried by every rescan. "no *.lua scripts in DIR" fails both. */
int reload_set_load(reload_set *s, int dev, kl_err *err);
/* started(ud, NULL) once every controller has started or, strict, failed
 * (an unknown kind: each is logged, "script not started"), then
 * started(ud, err) with the failure or their count; --dev starts the
 * others and retries the failed ones on every rescan and, while any waits
 * for its kind, every KIND_RETRY_MS (a CRD installed later). Called once,
 * from a loop callback. */
typedef void (*reload_started_cb)(void *ud, const kl_err *err);
/* Build controllers from the loaded scripts and start them (their kinds
 * are resolved through discovery without blocking the loop); deps is
 * copied. Logs "controller loaded" for each as it starts. Returns -1 (no
 * callback) when it cannot begin. */
int reload_set_start(reload_set *s, const controller_deps *deps, reload_started_cb started,
                     void *ud, kl_err *err);
/* Look for changes now and apply them (see above). */
void reload_set_rescan(reload_set *s);
/* klua run --dev: inotify on the directory and lib/, debounced rescans. */
int reload_set_watch(reload_set *s, kl_err *err);

size_t reload_set_count(const reload_set *s);        /* running controllers */
/* The controller named name, or NULL. */
const controller *reload_set_find(const reload_set *s, const char *name);
/* A rescan is under way (waiting for discovery). */
int reload_set_rescanning(const reload_set *s);
size_t reload_set_active(const reload_set *s);       /* reconciles in flight, all */
/* Start-up has finished and every running controller has synced. */
int reload_set_synced(const reload_set *s);
/* Readiness for /readyz: 1 when every controller has synced, else 0 with
 * one line per controller waiting appended to why (may be NULL). */
int reload_set_ready(void *s, kl_buf *why);
/* Stop taking keys everywhere (SIGTERM); reconciles in flight go on. */
void reload_set_shutdown(reload_set *s);
/* Frees every controller (cancelling what still runs) and the watcher. */
void reload_set_free(reload_set *s);

/* Webhook handlers (webhook_lua.h, webhook_dev.h): the controller called
 * name, and every controller that runs. ud is the reload_set. A hot
 * reload swaps the handlers with the script. */
int reload_set_webhook_find(void *ud, const char *name, webhook_target *out);
void reload_set_webhook_each(void *ud, webhook_visit_fn visit, void *visit_ud);

/* The top-level *.lua files of dir (regular files, no dot files, no
 * *_spec.lua: those are klua test's specs), sorted.
 * The caller frees them with reload_free_list. */
int reload_list_scripts(const char *dir, char ***out, size_t *n, kl_err *err);
void reload_free_list(char **v, size_t n);

#endif
