/* log.c - see log.h. One write(2) per line so lines never interleave.
 * Uses: buf (the line, checked once), util (RFC 3339 time stamps). */
#include "log.h"

#include "buf.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define OOM_TEXT "error out of memory formatting a log line\n"
#define OOM_JSON "{\"level\":\"error\",\"msg\":\"out of memory formatting a log line\"}\n"

static int log_json;
static int log_verbosity;

int kl_log_parse_verbosity(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    return !*s || *end || v < 0 || v > 10 ? -1 : (int)v;
}

void kl_log_setup(int json, int verbosity)
{
    log_json = json;
    log_verbosity = verbosity;
}

int kl_log_enabled(int level) { return level <= log_verbosity; }

static const char *level_name(int level)
{
    switch (level) {
    case KL_LOG_ERROR: return "error";
    case KL_LOG_WARN: return "warning";
    case KL_LOG_INFO: return "info";
    default: return "debug";
    }
}

static void put_json_str(kl_buf *b, const char *s)
{
    kl_buf_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            kl_buf_putc(b, '\\');
            kl_buf_putc(b, (char)*p);
        } else if (*p < 0x20) {
            kl_buf_printf(b, "\\u%04x", *p);
        } else {
            kl_buf_putc(b, (char)*p);
        }
    }
    kl_buf_putc(b, '"');
}

static void put_text_val(kl_buf *b, const char *s)
{
    int quote = *s == '\0';
    for (const char *p = s; *p; p++)
        if (*p == ' ' || *p == '"' || *p == '=' || (unsigned char)*p < 0x20)
            quote = 1;
    if (quote)
        put_json_str(b, s);
    else
        kl_buf_puts(b, s);
}

void kl_log(int level, const char *msg, ...)
{
    if (!kl_log_enabled(level))
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct timespec now = {.tv_sec = tv.tv_sec, .tv_nsec = tv.tv_usec * 1000};
    char ts[40];
    kl_rfc3339(&now, 3, ts, sizeof ts);
    kl_buf b = KL_BUF_INIT;
    if (log_json) {
        kl_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts, level_name(level));
        put_json_str(&b, msg);
    } else {
        kl_buf_printf(&b, "%s %-5s ", ts, level_name(level));
        kl_buf_puts(&b, msg);
    }
    va_list ap;
    va_start(ap, msg);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (!k)
            break;
        const char *v = va_arg(ap, const char *);
        if (!v)
            v = "";
        int raw = k[0] == KL_LOG_RAW[0];
        k += raw;
        if (log_json) {
            kl_buf_putc(&b, ',');
            put_json_str(&b, k);
            kl_buf_putc(&b, ':');
            if (raw && *v)
                kl_buf_puts(&b, v);
            else
                put_json_str(&b, v);
        } else {
            kl_buf_printf(&b, " %s=", k);
            put_text_val(&b, v);
        }
    }
    va_end(ap);
    if (log_json)
        kl_buf_putc(&b, '}');
    kl_buf_putc(&b, '\n');
    /* The appends above are unchecked on purpose: the buffer's error is
     * sticky, so one check covers the line. A line that could not be built
     * whole is replaced, never written cut short. */
    const char *line = b.data;
    size_t len = b.len;
    if (kl_buf_failed(&b) || !line) {
        line = log_json ? OOM_JSON : OOM_TEXT;
        len = strlen(line);
    }
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(2, line + off, len - off);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    kl_buf_free(&b);
}
