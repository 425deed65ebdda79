/* testkit_fake.h - the fake server's answers in `klua test` / `klua replay`.
 *
 * Provides: kt_fake_handler, the fakeapi handler of a run: every request
 * to the fake server is answered by the Lua handlers the test kit installs
 * (host.set_handlers): the API (klua.fakeapi, absent with --cluster) and
 * the ctx:http stand-in (a request through the server as an HTTP proxy:
 * CONNECT, or an absolute http:// target). kt_set_proxy_env points the
 * process's http_proxy variables at the server, no_proxy exempting the
 * local host and extra_host (the API server with --cluster; may be NULL).
 * Uses: fakeapi, testkit (kt_run), lua_json, buf.
 */
#ifndef KLUA_TESTKIT_FAKE_H
#define KLUA_TESTKIT_FAKE_H

#include "fakeapi.h"
#include "testkit.h"

fakeapi_handler kt_fake_handler(kt_run *r);
void kt_set_proxy_env(int port, const char *extra_host);

#endif
