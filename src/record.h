/* record.h - `klua run --record FILE`: what the controllers saw and did.
 *
 * Provides: recorder, which appends JSON lines to FILE:
 *   {"t":"resource","apiVersion","kind","plural","namespaced"}  once per informer
 *   {"t":"event","ts","type":"ADDED|MODIFIED|DELETED","apiVersion","kind","object"}
 *       each informer event, with the object (a Secret's data and
 *       stringData values replaced by "<redacted>")
 *   {"t":"write","ts","controller","key","method","apiVersion","kind",
 *    "namespace","name","subresource","contentType","body","code"}
 *       each API write a reconcile made (create/update/patch/delete)
 *   {"t":"http","ts","controller","key","method","url","body","code",
 *    "headers","response"}  each ctx:http call and its answer
 * Reads are not lines of their own: ctx:get/list answer from the cache, which
 * the events rebuild. Every string written passes lua_ctx_shared_redact
 * (the values of --secret / the GitHub token become "[redacted]"), and
 * ctx:http request headers (Authorization) are not recorded. `klua replay`
 * reads the file back. Uses: informer, store, lua_ctx, json, buf, err.
 */
#ifndef KLUA_RECORD_H
#define KLUA_RECORD_H

#include "err.h"
#include "informer.h"
#include "lua_ctx.h"

typedef struct recorder recorder;

/* Open (append to) path and hook into reg and shared. NULL with err set. */
recorder *recorder_open(const char *path, informer_registry *reg, lua_ctx_shared *shared,
                        kl_err *err);
/* Flushes and closes; call after the registry and shared are freed. */
void recorder_free(recorder *r);

#endif
