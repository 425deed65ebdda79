/* reload_rescan.h - rescans of the script directory (internal).
 *
 * Provides: reload_set_rescan (reload.h): compare the directory with what
 * runs and apply the difference (reload, add, remove, rename), each load
 * that needs discovery finishing on the loop; controllers removed drain
 * before they are freed. And two timers the set's start-up arms too: the
 * rescan asked for while start-up or another rescan ran, and (--dev) the
 * retry of scripts whose kind was not served.
 * Uses: reload_script (entries, loading, pending ops), controller,
 * lua_host, loop, metrics, log.
 */
#ifndef KLUA_RELOAD_RESCAN_H
#define KLUA_RELOAD_RESCAN_H

#include "reload_script.h"

/* Run the rescan asked for meanwhile (s->again) from a loop timer. */
void reload_schedule_again(reload_set *s);
/* --dev: while a script waits for its kind (a CRD installed later), rescan
 * now and then; discovery bounds how often it asks the server. */
void reload_schedule_kind_retry(reload_set *s);

#endif
