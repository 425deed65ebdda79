/* lua_decl.h - the controller a script declares (internal).
 *
 * Provides: lua_decl_validate(), which reads the table a script returned
 * into h->decl (lua_controller_decl, lua_host.h), checking every field
 * (apiVersion and kind forms, controller name, workers range, label
 * selectors as the API server parses them, predicates, watches and their
 * map functions, the finalizer's qualified name, error_condition, reconcile
 * and finalize functions) and naming an unknown field with a "did you
 * mean" hint; errors are "file:line: message" with the line of the field
 * in the source. Defaults are filled in: watch.predicate is the
 * "changed" filter (status, resourceVersion, managedFields ignored),
 * owns[i] and watches[i] take "any", finalizer "klua.dev/<name>",
 * error_condition "Ready". lua_decl_reset() drops a declaration and its
 * refs.
 * Uses: lua_host_int, labels, err, Lua.
 */
#ifndef KLUA_LUA_DECL_H
#define KLUA_LUA_DECL_H

#include "err.h"
#include "lua_host_int.h"

/* Validate the table at index t of h->L (the script's text is src, for
 * line numbers). Returns 0, or -1 with err set (h->decl then partly set:
 * call lua_decl_reset). */
int lua_decl_validate(lua_host *h, int t, const char *src, kl_err *err);

/* Drop h->decl and the registry refs it holds (h->L may be NULL). */
void lua_decl_reset(lua_host *h);

#endif
