/* test_lua_host.c - the Lua host: sandbox, limits, require, script
 * validation, and a reconcile coroutine that waits on the event loop.
 * No cluster needed. Run from the repository root (fixtures in
 * spec/lua_fixtures/).
 */
#include "harness.h"

#include "loop.h"
#include "lua_ctx.h"
#include "lua_host.h"
#include "lua_json.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GOOD "spec/lua_fixtures/good"
#define BAD "spec/lua_fixtures/bad"

static lua_host *new_host(size_t mem, uint64_t budget)
{
    lua_host_opts o = {GOOD, mem, budget, 0};
    kl_err err = {0};
    lua_host *h = lua_host_new(&o, &err);
    if (!h)
        printf("# lua_host_new: %s\n", err.msg);
    return h;
}

/* Run `code` as a task (like a reconcile, without waiting). Returns the
 * resume status; the error (if any) goes to msg; the first result, if a
 * string, to out. */
static int run(lua_host *h, const char *code, char *msg, size_t msgsz, char *out, size_t outsz)
{
    lua_State *L = lua_host_state(h);
    int ref;
    lua_State *co = lua_host_task_new(h, &ref);
    msg[0] = '\0';
    if (out)
        out[0] = '\0';
    if (luaL_loadbufferx(co, code, strlen(code), "=test", "t") != LUA_OK) {
        snprintf(msg, msgsz, "%s", lua_tostring(co, -1));
        lua_host_task_release(h, co, ref);
        return LUA_ERRSYNTAX;
    }
    lua_host_budget b = {0};
    int nres = 0;
    int st = lua_host_resume(h, co, 0, &nres, &b);
    if (st != LUA_OK && st != LUA_YIELD)
        lua_host_error(h, co, st, &b, msg, msgsz);
    else if (out && nres > 0 && lua_type(co, -nres) == LUA_TSTRING)
        snprintf(out, outsz, "%s", lua_tostring(co, -nres));
    lua_host_task_release(h, co, ref);
    (void)L;
    return st;
}

TEST(sandbox_has_no_dangerous_functions)
{
    lua_host *h = new_host(0, 0);
    char msg[512], out[256];
    int st = run(h,
                 "return tostring(io) .. tostring(debug) .. tostring(dofile) .. tostring(loadfile)"
                 " .. tostring(os.execute) .. tostring(os.getenv) .. tostring(os.remove)"
                 " .. tostring(package)",
                 msg, sizeof msg, out, sizeof out);
    CHECK(st == LUA_OK);
    CHECK_STR(out, "nilnilnilnilnilnilnilnil");
    /* what stays */
    st = run(h, "return type(os.time()) .. type(os.clock()) .. type(string.format) .. "
                "type(table.concat) .. type(math.floor) .. type(utf8.char) .. type(coroutine.wrap)",
             msg, sizeof msg, out, sizeof out);
    CHECK_STR(out, "numbernumberfunctionfunctionfunctionfunctionfunction");
    st = run(h, "collectgarbage('collect')", msg, sizeof msg, NULL, 0);
    CHECK(st != LUA_OK && strstr(msg, "not allowed"));
    st = run(h, "return type(collectgarbage('count'))", msg, sizeof msg, out, sizeof out);
    CHECK_STR(out, "number");
    st = run(h, "return tostring(getmetatable(''))", msg, sizeof msg, out, sizeof out);
    CHECK_STR(out, "false");
    lua_host_free(h);
}

TEST(binary_chunks_are_refused)
{
    lua_host *h = new_host(0, 0);
    char msg[512], out[256];
    int st = run(h,
                 "local f, err = load(string.dump(function() return 1 end))\n"
                 "return tostring(f) .. ' ' .. tostring(err)",
                 msg, sizeof msg, out, sizeof out);
    CHECK(st == LUA_OK);
    CHECK(strncmp(out, "nil ", 4) == 0 && strstr(out, "binary"));
    st = run(h, "load('return 1', 'x', 'b')", msg, sizeof msg, NULL, 0);
    CHECK(st != LUA_OK && strstr(msg, "only text chunks"));
    st = run(h, "return tostring(load('return 7')())", msg, sizeof msg, out, sizeof out);
    CHECK_STR(out, "7");
    lua_host_free(h);
}

TEST(require_only_finds_lib_and_klua_modules)
{
    lua_host *h = new_host(0, 0);
    char msg[512], out[256];
    int st = run(h, "return tostring(require('helper').answer())", msg, sizeof msg, out,
                 sizeof out);
    CHECK(st == LUA_OK);
    CHECK_STR(out, "41");
    st = run(h, "return tostring(require('util').one)", msg, sizeof msg, out, sizeof out);
    CHECK_STR(out, "1");
    /* hello.lua is beside lib/, not in it */
    st = run(h, "require 'hello'", msg, sizeof msg, NULL, 0);
    CHECK(st != LUA_OK && strstr(msg, "module 'hello' not found"));
    st = run(h, "require '../hello'", msg, sizeof msg, NULL, 0);
    CHECK(st != LUA_OK && strstr(msg, "invalid module name"));
    st = run(h, "require 'os'", msg, sizeof msg, NULL, 0);
    CHECK(st != LUA_OK && strstr(msg, "not found"));
    st = run(h, "return package and package.loadlib and 'yes' or 'no'", msg, sizeof msg, out,
             sizeof out);
    CHECK_STR(out, "no");
    lua_host_free(h);
}

TEST(klua_json_round_trips)
{
    lua_host *h = new_host(0, 0);
    char msg[512], out[256];
    int st = run(h,
                 "local json = require 'klua.json'\n"
                 "local t = json.decode('{\"a\":5,\"b\":[],\"c\":{},\"d\":null,\"e\":[1,null]}')\n"
                 "assert(math.type(t.a) == 'integer' and tostring(t.a) == '5')\n"
                 "assert(t.d == nil and t.e[2] == json.null)\n"
                 "local s = json.encode({ b = t.b, x = json.empty_array, n = 1234567890123456 })\n"
                 "assert(s:find('\"b\":%[%]') and s:find('\"x\":%[%]'), s)\n"
                 "assert(s:find('1234567890123456', 1, true), s)\n"
                 "assert(json.encode(t.c) == '{}')\n"
                 "local deep = string.rep('[', 1000) .. string.rep(']', 1000)\n"
                 "local v, err = json.decode(deep)\n"
                 "assert(v == nil and err:find('deep') or err:find('nest'), tostring(err))\n"
                 "local cyc = {} cyc.self = cyc\n"
                 "assert(not pcall(json.encode, cyc))\n"
                 "return 'ok'",
                 msg, sizeof msg, out, sizeof out);
    if (st != LUA_OK)
        printf("# %s\n", msg);
    CHECK(st == LUA_OK);
    CHECK_STR(out, "ok");
    lua_host_free(h);
}

TEST(endless_loop_is_stopped_and_pcall_cannot_catch_it)
{
    lua_host *h = new_host(0, 1000000);
    char msg[512], out[256];
    int st = run(h, "while true do end", msg, sizeof msg, NULL, 0);
    CHECK(st == LUA_ERRRUN);
    CHECK(strstr(msg, "test:1: instruction budget exceeded") != NULL);
    st = run(h,
             "for i = 1, 100 do pcall(function() while true do end end) end\n"
             "return 'survived'",
             msg, sizeof msg, out, sizeof out);
    CHECK(st != LUA_OK);
    CHECK(out[0] == '\0');
    CHECK(strstr(msg, "instruction budget exceeded") != NULL);
    /* a coroutine the script makes inherits the budget */
    st = run(h, "local co = coroutine.wrap(function() while true do end end) co() return 'x'",
             msg, sizeof msg, out, sizeof out);
    CHECK(st != LUA_OK && strstr(msg, "instruction budget exceeded"));
    /* and the state still works afterwards */
    st = run(h, "return 'alive'", msg, sizeof msg, out, sizeof out);
    CHECK_STR(out, "alive");
    lua_host_free(h);
}

TEST(memory_hog_gets_an_error_and_the_state_survives)
{
    lua_host *h = new_host(8u << 20, 0);
    char msg[512], out[256];
    int st = run(h, "local t = {} for i = 1, 1e8 do t[i] = ('x'):rep(64) .. i end", msg,
                 sizeof msg, NULL, 0);
    CHECK(st == LUA_ERRMEM);
    CHECK(strstr(msg, "memory limit exceeded") != NULL);
    st = run(h, "return ('y'):rep(10)", msg, sizeof msg, out, sizeof out);
    CHECK(st == LUA_OK);
    CHECK_STR(out, "yyyyyyyyyy");
    CHECK(lua_host_mem_used(h) < (8u << 20));
    st = run(h, "return string.rep('x', 1e9)", msg, sizeof msg, NULL, 0);
    if (!strstr(msg, "string.rep"))
        printf("# %s\n", msg);
    CHECK(st != LUA_OK && strstr(msg, "string.rep"));
    lua_host_free(h);
}

TEST(scripts_do_not_see_each_other)
{
    lua_host *a = new_host(0, 0), *b = new_host(0, 0);
    char msg[512], out[256];
    run(a, "shared = 'from a'; string.upper = nil", msg, sizeof msg, NULL, 0);
    run(b, "return tostring(shared) .. ' ' .. type(string.upper)", msg, sizeof msg, out,
        sizeof out);
    CHECK_STR(out, "nil function");
    run(a, "return shared", msg, sizeof msg, out, sizeof out);
    CHECK_STR(out, "from a");
    lua_host_free(a);
    lua_host_free(b);
}

TEST(a_valid_script_declares_its_controller)
{
    lua_host *h = new_host(0, 0);
    kl_err err = {0};
    int rc = lua_host_load(h, GOOD "/hello.lua", &err);
    if (rc != 0)
        printf("# %s\n", err.msg);
    CHECK(rc == 0);
    const lua_controller_decl *d = lua_host_decl(h);
    CHECK_STR(d->name, "hello");
    CHECK_STR(d->watch.api_version, "v1");
    CHECK_STR(d->watch.kind, "ConfigMap");
    CHECK(d->nowns == 1 && !strcmp(d->owns[0].kind, "Deployment"));
    CHECK(d->workers == 2);
    CHECK(d->has_finalize);
    lua_host_free(h);
}

static void expect_load_error(const char *file, const char *want)
{
    lua_host *h = new_host(0, 1000000);
    kl_err err = {0};
    char path[256];
    snprintf(path, sizeof path, BAD "/%s", file);
    int rc = lua_host_load(h, path, &err);
    CHECK(rc != 0);
    if (!strstr(err.msg, want))
        printf("#   got: %s\n#   want: %s\n", err.msg, want);
    CHECK(strstr(err.msg, want) != NULL);
    lua_host_free(h);
}

TEST(invalid_scripts_are_reported_with_file_and_line)
{
    expect_load_error("missing_reconcile.lua",
                      BAD "/missing_reconcile.lua:2: the controller has no reconcile function");
    expect_load_error("bad_watch.lua", BAD "/bad_watch.lua:4: watch.kind \"configmap\" is not a "
                                           "valid kind");
    expect_load_error("bad_api_version.lua",
                      BAD "/bad_api_version.lua:2: watch.apiVersion \"Apps/V1\" is not a valid");
    expect_load_error("syntax.lua", BAD "/syntax.lua:5:");
    expect_load_error("typo_field.lua", BAD "/typo_field.lua:4: unknown field \"worker\"");
    expect_load_error("returns_nothing.lua",
                      BAD "/returns_nothing.lua:1: the script must return a table");
    expect_load_error("endless.lua", BAD "/endless.lua:1: instruction budget exceeded");
}

/* ---- a reconcile that waits on the loop ---- */

typedef struct sleeper {
    lua_host *h;
    loop *l;
    lua_State *co;
    lua_host_budget b;
    int status, nres, resumes;
} sleeper;

static void sleeper_resume(void *ud)
{
    sleeper *s = ud;
    s->resumes++;
    s->status = lua_host_resume(s->h, s->co, 0, &s->nres, &s->b);
    if (s->status != LUA_YIELD)
        loop_stop(s->l);
}

static void on_guard(loop *l, void *ud)
{
    (void)ud;
    loop_stop(l);
}

TEST(a_reconcile_yields_on_sleep_and_resumes)
{
    kl_err err = {0};
    sleeper s = {0};
    s.l = loop_new(&err);
    s.h = new_host(0, 0);
    lua_ctx_shared *sh = lua_ctx_shared_new(s.l, NULL, NULL, &err);
    CHECK(s.l && s.h && sh);
    CHECK(lua_host_load(s.h, GOOD "/Sleeper_Test.lua", &err) == 0);
    const lua_controller_decl *d = lua_host_decl(s.h);
    CHECK_STR(d->name, "sleeper-test");
    lua_State *L = lua_host_state(s.h);
    int ref;
    s.co = lua_host_task_new(s.h, &ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, d->reconcile_ref);
    lua_ctx *ctx = lua_ctx_push(L, sh, NULL, d->name, "ns1", "obj1", sleeper_resume, &s);
    int ctx_ref;
    lua_pushvalue(L, -1);
    ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    const char *obj = "{\"metadata\":{\"name\":\"obj1\",\"namespace\":\"ns1\"}}";
    CHECK(lua_json_push(L, obj, strlen(obj), &err) == 0);
    lua_xmove(L, s.co, 3);
    lua_ctx_bind(ctx, s.co);
    uint64_t t0 = loop_time_ms();
    s.status = lua_host_resume(s.h, s.co, 2, &s.nres, &s.b);
    CHECK(s.status == LUA_YIELD);
    CHECK(lua_ctx_waiting(ctx));
    loop_timer_add(s.l, 5000, on_guard, NULL);
    loop_run(s.l);
    CHECK(s.status == LUA_OK);
    CHECK(s.resumes == 2);  /* one sleep, then the sleep inside pcall */
    CHECK(loop_time_ms() - t0 >= 60);
    CHECK(s.nres == 1 && lua_istable(s.co, -1));
    if (s.nres == 1 && lua_istable(s.co, -1)) {
        lua_getfield(s.co, -1, "requeue_after");
        CHECK(lua_tonumber(s.co, -1) >= 0.05);
        lua_getfield(s.co, -2, "key");
        CHECK_STR(lua_tostring(s.co, -1), "ns1/obj1");
        lua_getfield(s.co, -3, "ok");
        CHECK(lua_toboolean(s.co, -1));
        lua_getfield(s.co, -4, "name");
        CHECK_STR(lua_tostring(s.co, -1), "obj1");
        lua_pop(s.co, 4);
    }
    lua_ctx_end(ctx);
    /* a ctx used after its reconcile ended raises */
    lua_rawgeti(L, LUA_REGISTRYINDEX, ctx_ref);
    lua_setglobal(L, "old_ctx");
    char msg[512];
    int st = run(s.h, "old_ctx:sleep(0)", msg, sizeof msg, NULL, 0);
    CHECK(st != LUA_OK && strstr(msg, "reconcile that has ended"));
    luaL_unref(L, LUA_REGISTRYINDEX, ctx_ref);
    lua_host_task_release(s.h, s.co, ref);
    lua_host_free(s.h);
    lua_ctx_shared_free(sh);
    loop_free(s.l);
}

int main(void)
{
    RUN(sandbox_has_no_dangerous_functions);
    RUN(binary_chunks_are_refused);
    RUN(require_only_finds_lib_and_klua_modules);
    RUN(klua_json_round_trips);
    RUN(endless_loop_is_stopped_and_pcall_cannot_catch_it);
    RUN(memory_hog_gets_an_error_and_the_state_survives);
    RUN(scripts_do_not_see_each_other);
    RUN(a_valid_script_declares_its_controller);
    RUN(invalid_scripts_are_reported_with_file_and_line);
    RUN(a_reconcile_yields_on_sleep_and_resumes);
    DONE();
}
