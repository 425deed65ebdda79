/* controller_version.h - one loaded version of a controller's script.
 *
 * Provides: controller_version, a loaded script (its lua_host and
 * declaration) ready to reconcile: the runner every reconcile coroutine
 * starts with (klua.runner, lua/lib/klua/runner.lua: finalizer handling
 * around the script's reconcile and finalize), the lines where reconcile
 * and finalize are defined (for error messages), and a count of the
 * reconciles running on it. A controller keeps a replaced version until
 * its last reconcile ends.
 * Uses: lua_host (state, protected calls, lua_host_load_internal), luamods
 * (the embedded klua.runner), err.
 */
#ifndef KLUA_CONTROLLER_VERSION_H
#define KLUA_CONTROLLER_VERSION_H

#include "err.h"
#include "lua_host.h"

#include <stddef.h>

typedef struct controller_version {
    lua_host *h;                          /* owned */
    const lua_controller_decl *decl;      /* h's */
    int runner_ref;                       /* the runner, in h's registry */
    int reconcile_line, finalize_line;    /* where the functions are defined */
    size_t active;                        /* reconciles running on this version */
    struct controller_version *next;       /* on the controller's retired list */
} controller_version;

/* A version for h, whose runner manages the finalizer string finalizer.
 * On failure (the runner does not load, memory) h stays the caller's. */
controller_version *controller_version_new(lua_host *h, const char *finalizer, kl_err *err);
/* Free v and, unless keep_host, its host. NULL is a no-op. */
void controller_version_free(controller_version *v, int keep_host);

#endif
