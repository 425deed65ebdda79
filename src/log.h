/* log.h - structured logs on stderr, as text (key=value) or JSON lines.
 *
 * Provides: kl_log(level, msg, key, value, ..., NULL). Values are strings;
 * keys are constants. Callers never pass a token, password or key material:
 * the transport and the Lua host only log names, URLs without credentials
 * and status codes. Verbosity follows klog: info lines with v > -v are
 * dropped. Uses: nothing.
 */
#ifndef KLUA_LOG_H
#define KLUA_LOG_H

enum {
    KL_LOG_ERROR = -2,
    KL_LOG_WARN = -1,
    KL_LOG_INFO = 0,
    KL_LOG_V1 = 1,   /* -v 1: one line per reconcile, loads, lifecycle details */
    KL_LOG_V2 = 2,   /* -v 2: requests retried, credentials fetched */
    KL_LOG_V4 = 4    /* -v 4: every API response */
};

/* A key that starts with KL_LOG_RAW (the prefix is not printed) has a value
 * that is already JSON (a number, true/false, an object or array): JSON
 * lines write it as it is, text lines like any other value. */
#define KL_LOG_RAW "\001"

void kl_log_setup(int json, int verbosity);
/* A -v value: 0 to 10, or -1 when s is not one. */
int kl_log_parse_verbosity(const char *s);
int kl_log_enabled(int level);
/* Pairs of (const char *key, const char *value), terminated by NULL. */
void kl_log(int level, const char *msg, ...) __attribute__((sentinel));

#endif
