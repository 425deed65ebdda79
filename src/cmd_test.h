/* cmd_test.h - `klua test`: run reconciler specs against the real runtime.
 *
 * Provides: klua_test_main (argv[0] is "test"). It finds the *_spec.lua
 * files of DIR (beside the scripts and in DIR/spec/), and runs each `it`
 * with a fresh runtime built from DIR's scripts as `klua run` builds it
 * (reload_set, controllers, informers, workqueue, sandbox, ctx), against
 * the in-memory fake API (fakeapi.c + klua.fakeapi, the default) or the
 * real cluster (--cluster). ctx:http reaches a stand-in (fakeapi.c in its
 * HTTP-proxy role, driven by klua.testkit), and the loop's clock is the
 * monotonic clock plus an offset that kt.advance moves. Prints one block per
 * failing test with file:line and ends with "N passed, N failed"; returns
 * 0 when all passed, 1 otherwise, 2 on bad usage.
 * `klua replay` shares this host (cmd_replay.h; included below).
 * Uses: testkit (the run and one test's runtime), testkit_fake (the fake
 * server's answers), testkit_host (the host table), fakeapi, kube,
 * kubeconfig, http, loop, tool_lua, lua_json, log, klua.testkit.
 */
#ifndef KLUA_CMD_TEST_H
#define KLUA_CMD_TEST_H

int klua_test_main(int argc, char **argv);

/* klua_replay_main moved to cmd_replay.h; included here for this header's
 * callers. */
#include "cmd_replay.h"

#endif
