/* lua_ctx_secret.h - named secrets for ctx:secret, and keeping them out of
 * what klua writes.
 *
 * Provides: the shared ctx's secrets (lua_ctx_shared_set_secret and
 * lua_ctx_shared_add_secret_file in lua_ctx.h), lookup with re-reading of
 * a file that changed (a rotated Kubernetes Secret volume swaps a symlink:
 * the file is stat()ed on each lookup, read again when its identity, size
 * or modification time differs; a failed re-read keeps the last value and
 * warns once), and redaction of secret values from text that klua logs or
 * sends to the API server on a script's behalf.
 * Values are never logged; errors name the secret and its file only.
 * Uses: lua_ctx_op (the shared struct), util (kl_read_file), log, buf.
 */
#ifndef KLUA_LUA_CTX_SECRET_H
#define KLUA_LUA_CTX_SECRET_H

#include "lua_ctx_op.h"

/* A secret file holds at most this much (a Kubernetes Secret's limit). */
#define LUA_CTX_SECRET_MAX (1u << 20)
/* Values shorter than this are not redacted (they would mangle any text). */
#define LUA_CTX_SECRET_REDACT_MIN 4

/* The value of secret `name` (NUL-terminated, *len bytes), or NULL when
 * there is none. Valid until the next lookup or the shared state's end. */
const char *lua_ctx_secret_get(lua_ctx_shared *s, const char *name, size_t *len);

/* Where the first secret value starts in text[0..n) (n when none); *len
 * receives its length (the longest value starting there). */
size_t lua_ctx_secret_find(const lua_ctx_shared *s, const char *text, size_t n, size_t *len);
#define LUA_CTX_REDACTED "[redacted]"

/* Push text[0..n) with secret values replaced by LUA_CTX_REDACTED, cut to
 * max bytes (on a UTF-8 boundary, marked "...(cut)"). Lua memory, so the
 * script's cap bounds it; may raise (memory). Returns the pushed string. */
const char *lua_ctx_push_redacted(lua_State *L, const lua_ctx_shared *s, const char *text,
                                  size_t n, size_t max);

void lua_ctx_secrets_free(lua_ctx_shared *s);

#endif
