/* klua_home.h - where klua's own source tree is, seen from the binary.
 *
 * Provides: klua_home_dir(), the folder holding lua/types/klua.lua (the
 * API annotations), lua/lib/klua/ and deploy/: $KLUA_HOME when set, else
 * the first of <exe dir>/.. and <exe dir>/../.. that has lua/types/klua.lua
 * (bin/klua and build/asan/klua in a checkout). The developer tools (types,
 * init, check --types) point the type checker at it. Uses: buf, err.
 */
#ifndef KLUA_KLUA_HOME_H
#define KLUA_KLUA_HOME_H

#include "err.h"

/* A malloc'd absolute path (caller frees), or NULL with err set. */
char *klua_home_dir(kl_err *err);

/* A malloc'd relative path from the folder `from` to the folder `to`
 * (both existing), e.g. "../../deploy"; NULL with err set. */
char *klua_rel_path(const char *from, const char *to, kl_err *err);

#endif
