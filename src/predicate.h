/* predicate.h - which watch events reach a controller's workqueue.
 *
 * Provides: predicate_passes(), whether an update of a watched object
 * passes the predicate a script declared (lua_predicate, lua_host.h), and
 * predicate_map(), which runs a watches[i].map function on an object and
 * hands each key it returns to a callback. The built-in filters compare
 * the old and new JSON structurally (member order does not matter):
 *   LUA_PRED_CHANGED      anything but status, metadata.resourceVersion and
 *                         metadata.managedFields (the watched kind's default)
 *   LUA_PRED_GENERATION   metadata.generation, deletionTimestamp, finalizers
 *   LUA_PRED_LABELS       metadata.labels
 *   LUA_PRED_ANNOTATIONS  metadata.annotations
 *   LUA_PRED_ANY          every update
 * Any bit that matches lets the update through. A Lua predicate
 * function(old, new) and a map function(obj) run to completion on the
 * caller's stack, each as a task under the script's instruction budget,
 * CPU deadline and memory cap; they may not wait (no ctx). A function that
 * fails (raises, yields, returns something else) is reported by the
 * caller through err; predicate_passes then lets the update through, so a
 * broken filter never loses an event.
 * Uses: lua_host (tasks, budget, protected calls), lua_json (objects to
 * Lua), json, store, err.
 */
#ifndef KLUA_PREDICATE_H
#define KLUA_PREDICATE_H

#include "err.h"
#include "lua_host.h"
#include "store.h"

/* 1 when the update old -> cur passes p, else 0. h: the script holding
 * p's function (unused without one). On a failing function, 1 with err
 * set ("file:line: message"). */
int predicate_passes(lua_host *h, const lua_predicate *p, const store_obj *old,
                     const store_obj *cur, kl_err *err);

/* Run map(obj) (map_ref in h's registry) and call emit with each key it
 * returns. Returns the number of keys, or -1 with err set (then emit was
 * not called). At most PREDICATE_MAP_MAX keys. */
#define PREDICATE_MAP_MAX 100000
int predicate_map(lua_host *h, int map_ref, const store_obj *obj,
                  void (*emit)(void *ud, const char *key), void *ud, kl_err *err);

#endif
