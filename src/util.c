/* util.c - see util.h. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

uint64_t kl_fnv1a_more(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= KL_FNV_PRIME;
    }
    return h;
}

uint64_t kl_fnv1a(const void *p, size_t n) { return kl_fnv1a_more(KL_FNV_OFFSET, p, n); }

int kl_read_file(const char *path, size_t max, kl_buf *out, kl_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        kl_err_set(err, KL_EIO, "%s: %s", path, strerror(e));
        errno = e;
        return -1;
    }
    size_t start = out->len;
    int rc = 0, why = 0;
    for (;;) {
        size_t room = out->cap > out->len + 1 ? out->cap - out->len - 1 : 0;
        if (room < 4096) {
            size_t want = out->len - start < 4096 ? 4096 : out->len - start;
            if (kl_buf_reserve(out, want) != 0) {
                why = ENOMEM;
                rc = kl_err_set(err, KL_ENOMEM, "%s: out of memory", path);
                break;
            }
            room = out->cap - out->len - 1;
            out->data[out->len] = '\0';
        }
        ssize_t n = read(fd, out->data + out->len, room);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            why = errno;
            rc = kl_err_set(err, KL_EIO, "%s: %s", path, strerror(why));
            break;
        }
        if (n == 0)
            break;
        out->len += (size_t)n;
        out->data[out->len] = '\0';
        if (out->len - start > max) {
            why = EFBIG;
            rc = kl_err_set(err, KL_EINVAL, "%s: file larger than %zu bytes", path, max);
            break;
        }
    }
    close(fd);
    if (rc != 0) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        errno = why;
    }
    return rc;
}

char *kl_rfc3339(const struct timespec *t, int frac_digits, char *out, size_t outsz)
{
    struct tm tm;
    time_t secs = t->tv_sec;
    if (outsz == 0)
        return out;
    out[0] = '\0';
    if (!gmtime_r(&secs, &tm))
        return out;
    size_t n = strftime(out, outsz, "%Y-%m-%dT%H:%M:%S", &tm);
    if (n == 0)
        return out;
    if (frac_digits > 9)
        frac_digits = 9;
    if (frac_digits > 0) {
        long div = 1;
        for (int i = frac_digits; i < 9; i++)
            div *= 10;
        int w = snprintf(out + n, outsz - n, ".%0*ld", frac_digits, t->tv_nsec / div);
        if (w < 0 || (size_t)w >= outsz - n)
            return out;
        n += (size_t)w;
    }
    if (n + 1 < outsz) {
        out[n] = 'Z';
        out[n + 1] = '\0';
    }
    return out;
}

char *kl_rfc3339_now(int frac_digits, char *out, size_t outsz)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return kl_rfc3339(&ts, frac_digits, out, outsz);
}

const char *kl_http_reason(long code)
{
    switch (code) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* xoshiro256** state, seeded on first use (the process has one thread). */
static uint64_t rng[4];
static int rng_seeded;

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rng_seed(void)
{
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^
               ((uint64_t)getpid() << 32);
    }
    for (int i = 0; i < 4; i++)
        rng[i] = splitmix(&seed);
    rng_seeded = 1;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t kl_rand_u64(void)
{
    if (!rng_seeded)
        rng_seed();
    uint64_t r = rotl(rng[1] * 5, 7) * 9;
    uint64_t t = rng[1] << 17;
    rng[2] ^= rng[0];
    rng[3] ^= rng[1];
    rng[1] ^= rng[2];
    rng[0] ^= rng[3];
    rng[2] ^= t;
    rng[3] = rotl(rng[3], 45);
    return r;
}

uint64_t kl_rand_below(uint64_t n)
{
    if (n == 0)
        return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;   /* reject the biased tail */
    uint64_t r;
    do
        r = kl_rand_u64();
    while (r >= limit);
    return r % n;
}
