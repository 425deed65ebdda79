/* cmd_replay.c - `klua replay` (see cmd_replay.h).
 *
 * Provides: klua_replay_main. Uses: testkit (the run), testkit_fake (the
 * fake server's answers), testkit_host (the host table), fakeapi, loop,
 * tool_lua, lua_json, log.
 *
 * The same host as `klua test` drives klua.replay instead of klua.testkit.
 */
#include "cmd_replay.h"

#include "err.h"
#include "fakeapi.h"
#include "log.h"
#include "loop.h"
#include "lua_json.h"
#include "testkit.h"
#include "testkit_fake.h"
#include "testkit_host.h"
#include "tool_lua.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char replay_usage[] =
    "Usage: klua replay FILE --scripts DIR [-v N]\n"
    "\n"
    "Re-runs the informer events of a `klua run --record` FILE through DIR's scripts,\n"
    "with no cluster: each recorded object state is handed to the controllers in order\n"
    "(in memory), their writes are answered as dry runs, their ctx:http calls with the\n"
    "recorded answers. Prints, per key, the writes and HTTP calls the scripts make now\n"
    "as a diff against the recording ('-' recorded only, '+' made now only).\n"
    "Exit 0 when nothing differs, 1 when something does, 2 on bad usage.\n";

int klua_replay_main(int argc, char **argv)
{
    kt_run r = {0};
    r.ref_api = r.ref_http = r.ref_closed = r.ref_tap = LUA_NOREF;
    const char *file = NULL;
    int loglevel = -1, rc = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(replay_usage, stdout);
            return 0;
        } else if (i + 1 < argc && !strcmp(a, "--scripts")) {
            r.scripts = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "-v")) {
            if ((loglevel = kl_log_parse_verbosity(argv[++i])) < 0) {
                fprintf(stderr, "klua: -v wants a number from 0 to 10\n");
                return 2;
            }
        } else if (a[0] != '-' && !file) {
            file = a;
        } else {
            fprintf(stderr, "klua replay: unexpected argument %s (see klua replay --help)\n", a);
            return 2;
        }
    }
    if (!file || !r.scripts) {
        fputs(replay_usage, stderr);
        return 2;
    }
    kl_log_setup(0, loglevel < 0 ? KL_LOG_WARN : loglevel);
    kl_err err = {0};
    if (!(r.L = tool_lua_new(&err)) || !(r.l = loop_new(&err)))
        goto out;
    loop_set_clock(r.l, kt_clock, &r);
    fakeapi_handler fh = kt_fake_handler(&r);
    if (!(r.fake = fakeapi_start(r.l, &fh, &err)))
        goto out;
    kt_set_proxy_env(fakeapi_port(r.fake), NULL);
    luaL_requiref(r.L, "klua.json", luaopen_klua_json, 0);
    lua_pop(r.L, 1);
    kt_push_host(r.L, &r);
    lua_pushstring(r.L, file);
    if (tool_lua_call(r.L, "klua.replay", "main", 2, 1, &err) != 0)
        goto out;
    rc = (int)lua_tointeger(r.L, -1);
    fflush(stdout);
out:
    if (err.msg[0]) {
        fprintf(stderr, "error: %s\n", err.msg);
        rc = 2;
    }
    kt_runtime_free(&r);
    fakeapi_free(r.fake);
    loop_free(r.l);
    if (r.L)
        lua_close(r.L);
    return rc;
}
