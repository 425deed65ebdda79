/* reload_watch.h - klua run --dev: the inotify watcher (internal).
 *
 * Provides: reload_set_watch (reload.h): inotify on the script directory,
 * DIR/lib and every folder below it (folders created later are watched as
 * they appear), and a debounced reload_set_rescan after the events stop;
 * reload_watch_free, which releases the watcher with the set.
 * Uses: reload_int (the set's state: ifd, wds, writing, debounce),
 * reload_set_rescan, loop, log.
 */
#ifndef KLUA_RELOAD_WATCH_H
#define KLUA_RELOAD_WATCH_H

#include "reload_int.h"

/* Close the inotify descriptor (off the loop), cancel a pending debounce
 * and free the folders watched. Safe when reload_set_watch never ran. */
void reload_watch_free(reload_set *s);

#endif
