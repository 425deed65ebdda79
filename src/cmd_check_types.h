/* cmd_check_types.h - `klua check --types DIR`: the type-checking half of klua check.
 *
 * Provides: klua_check_cmd_main, the `klua check` entry point. Without
 * --types it is klua_check_main (run.c: load and validate each script).
 * With --types DIR (repeatable) it does that, then runs emmylua_check (an
 * EmmyLua analyzer reading LuaLS annotations; pinned and installed by
 * tools/emmylua.sh) over the script folders with DIR, klua's lua/types and
 * klua's own modules as libraries, and reports each finding as
 * "error: file:line:col: message (code)". Exit 0 only when both are clean.
 * argv[0] is the subcommand name; returns the exit code.
 * Uses: run, klua_home, json, buf, err.
 */
#ifndef KLUA_CMD_CHECK_TYPES_H
#define KLUA_CMD_CHECK_TYPES_H

int klua_check_cmd_main(int argc, char **argv);

#endif
