/* controller_result.h - what a reconcile's result means.
 *
 * Provides: controller_result_read, which reads what the runner returned
 * (the script's result, and "reconcile" or "finalize" for the function that
 * gave it) with raw access only (no script code runs: no metamethods) and
 * says what the controller does next, as sample-controller would:
 *   nil                          -> done (forget the key's backoff)
 *   { requeue_after = seconds }  -> done, and add the key again after that
 *   { requeue = true }           -> add it rate limited (backoff)
 *   anything else (a string, unknown keys, a negative or non-number
 *   requeue_after)               -> an error naming the script's file, the
 *                                   function's line and what was wanted.
 * Uses: Lua 5.4.
 */
#ifndef KLUA_CONTROLLER_RESULT_H
#define KLUA_CONTROLLER_RESULT_H

#include <lua.h>
#include <stdint.h>

typedef enum {
    CONTROLLER_RESULT_DONE,
    CONTROLLER_RESULT_REQUEUE_AFTER,
    CONTROLLER_RESULT_REQUEUE,
    CONTROLLER_RESULT_INVALID
} controller_result_kind;

typedef struct controller_result {
    controller_result_kind kind;
    uint64_t after_ms;            /* REQUEUE_AFTER */
    char msg[512];                /* INVALID: "file:line: reconcile returned ..." */
} controller_result;

/* The top nres values of co are the runner's results; path and the lines
 * of reconcile and finalize name the script in messages. Leaves co's stack
 * as it found it. */
void controller_result_read(lua_State *co, int nres, const char *path, int reconcile_line,
                            int finalize_line, controller_result *out);

#endif
