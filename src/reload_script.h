/* reload_script.h - the script files of a reload_set (internal).
 *
 * Provides: the entries of a set, one per top-level script file (found by
 * path, added, the controller name each one uses, the failure last
 * reported for it), loading one script into a fresh Lua state, the log
 * line of a controller that started, and the pending ops: controller
 * starts and replaces waiting for discovery, linked on the set so that
 * reload_set_free can release them. reload_list_scripts and
 * reload_free_list (reload.h) live here too.
 * Uses: reload_int (the set's state), lua_host, controller, log.
 */
#ifndef KLUA_RELOAD_SCRIPT_H
#define KLUA_RELOAD_SCRIPT_H

#include "reload_int.h"

/* Forget the failure recorded for e (its files, its message, kind_missing). */
void reload_entry_clear_failed(reload_entry *e);
/* Remember a failed attempt (failed: the files it read, taken). Returns 1
 * when it is news to report: another message, or files changed since the
 * last report; 0 when the same failure was reported already. */
int reload_entry_record_failure(reload_entry *e, const kl_err *err, lua_host_dep *failed,
                                size_t nfailed);
/* Load path into a fresh host (owned by the caller). On failure *failed
 * receives the files the attempt read (so the error is reported once per
 * version of them); failed may be NULL. */
lua_host *reload_load_one(reload_set *s, const char *path, lua_host_dep **failed,
                          size_t *nfailed, kl_err *err);
/* The entry (other than self) already using controller name, or NULL. */
reload_entry *reload_name_user(reload_set *s, const char *name, const reload_entry *self);
/* A new empty entry for path at the end of s->e, or NULL without memory.
 * s->e may move: pointers to entries do not survive it. */
reload_entry *reload_entry_add(reload_set *s, const char *path);
/* The entry of path, or NULL. */
reload_entry *reload_entry_by_path(reload_set *s, const char *path);
/* Log "controller loaded" for c. */
void reload_log_loaded(controller *c);

/* A pending op for path (old_name: the running controller a replace
 * swaps, or NULL for a start), linked on s (s->pending counts it); NULL
 * without memory. */
reload_op *reload_op_new(reload_set *s, const char *path, const char *old_name);
/* Unlink o (its callback came); the caller frees it. */
void reload_op_done(reload_op *o);
void reload_op_free(reload_op *o);

#endif
