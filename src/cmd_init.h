/* cmd_init.h - the `klua init` command.
 *
 * Provides: klua_init_main: scaffolds a controller in DIR (a CRD with an
 * OpenAPI schema and status subresource in crds/, a reconciler script, its
 * spec file, an example object, a .luarc.json, a kustomize overlay adding
 * the kind to klua's RBAC) from klua.scaffold, never over an existing file,
 * then writes DIR/types with `klua types`. argv[0] is the subcommand name;
 * returns the exit code.
 * Uses: tool_lua, cmd_types, klua_home, Lua.
 */
#ifndef KLUA_CMD_INIT_H
#define KLUA_CMD_INIT_H

int klua_init_main(int argc, char **argv);

#endif
