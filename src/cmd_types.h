/* cmd_types.h - the `klua types` command.
 *
 * Provides: klua_types_main: reads OpenAPI v3 schemas (CustomResourceDefinition
 * files with --crds, and/or every CRD and built-in kind from the API
 * server's /openapi/v3 with --from-cluster), turns them into LuaLS/EmmyLua
 * annotations with klua.typegen, and writes them into -o DIR (the same
 * schemas give the same bytes; files an earlier run wrote that this one
 * does not are removed). argv[0] is the subcommand name; returns the exit
 * code.
 * Uses: tool_lua, kubeconfig, kube, http, loop, json, Lua.
 */
#ifndef KLUA_CMD_TYPES_H
#define KLUA_CMD_TYPES_H

int klua_types_main(int argc, char **argv);

#endif
