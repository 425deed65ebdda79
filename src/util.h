/* util.h - small helpers that several modules need, written once.
 *
 * Provides: FNV-1a 64 hashing (kl_fnv1a, kl_fnv1a_more), reading a whole file
 * with a size cap (kl_read_file), RFC 3339 UTC timestamps (kl_rfc3339), the
 * standard HTTP reason phrase of a status code (kl_http_reason), and one
 * process-wide random source seeded once from the kernel (kl_rand_u64,
 * kl_rand_below), so replicas do not jitter in lockstep.
 * Uses: buf, err, libc.
 */
#ifndef KLUA_UTIL_H
#define KLUA_UTIL_H

#include "buf.h"
#include "err.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define KL_FNV_OFFSET 14695981039346656037ull
#define KL_FNV_PRIME 1099511628211ull

/* FNV-1a 64 of n bytes; kl_fnv1a_more continues from a previous hash. */
uint64_t kl_fnv1a(const void *p, size_t n);
uint64_t kl_fnv1a_more(uint64_t h, const void *p, size_t n);

/* Read the file at path into out (appending; out owns the bytes, which stay
 * NUL-terminated). Fails with "path: reason" in err when it cannot be read
 * or holds more than max bytes. Returns 0, or -1 with errno saying why
 * (ENOENT, EFBIG past max, ENOMEM, ...). The buffer grows with the
 * file, so a small file costs a small allocation. */
int kl_read_file(const char *path, size_t max, kl_buf *out, kl_err *err);

/* "2006-01-02T15:04:05Z" (frac_digits 0) or with 1..9 fractional digits
 * ("...05.123456Z"), for a UTC time; out needs 31 bytes. Returns out. */
char *kl_rfc3339(const struct timespec *t, int frac_digits, char *out, size_t outsz);
/* The same for the wall clock now. */
char *kl_rfc3339_now(int frac_digits, char *out, size_t outsz);

/* "Not Found" for 404; "Unknown" for a code with no standard phrase. */
const char *kl_http_reason(long code);

/* Uniformly random values from a generator seeded once per process from
 * getrandom(2) (the clock and pid when that fails). Not for secrets. */
uint64_t kl_rand_u64(void);
uint64_t kl_rand_below(uint64_t n);   /* [0, n); 0 when n is 0 */

#endif
