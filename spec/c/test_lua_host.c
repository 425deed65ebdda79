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

static lua_host *new_host_ms(size_t mem, uint64_t budget, uint64_t run_ms)
{
    lua_host_opts o = {GOOD, mem, budget, run_ms, NULL, NULL};
    kl_err err = {0};
    lua_host *h = lua_host_new(&o, &err);
    if (!h)
        printf("# lua_host_new: %s\n", err.msg);
    return h;
}

static lua_host *new_host(size_t mem, uint64_t budget) { return new_host_ms(mem, budget, 0); }

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
    /* a CPU deadline generous enough for the sanitizer build's allocator */
    lua_host *h = new_host_ms(8u << 20, 0, 5000);
    char msg[512], out[256];
    int st = run(h, "local t = {} for i = 1, 1e8 do t[i] = ('x'):rep(64) .. i end", msg,
                 sizeof msg, NULL, 0);
    if (st != LUA_ERRMEM)
        printf("# %d %s\n", st, msg);
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
    expect_load_error("reconclie.lua", BAD "/reconclie.lua:4: unknown field \"reconclie\" in the "
                                           "controller table (did you mean \"reconcile\"?");
    expect_load_error("returns_nothing.lua",
                      BAD "/returns_nothing.lua:1: the script must return a table");
    expect_load_error("endless.lua", BAD "/endless.lua:1: instruction budget exceeded");
    /* out of int range: refused without converting first (UBSan would stop here) */
    expect_load_error("huge_workers.lua",
                      BAD "/huge_workers.lua:4: workers must be an integer from 1 to 1024");
}

TEST(library_tables_are_read_only_and_modules_keep_their_globals)
{
    lua_host *h = new_host(0, 0);
    char msg[512], out[256];
    int st = run(h, "string.format = nil", msg, sizeof msg, NULL, 0);
    CHECK(st != LUA_OK && strstr(msg, "test:1: string is read-only"));
    st = run(h, "rawset(table, 'concat', print)", msg, sizeof msg, NULL, 0);
    CHECK(st != LUA_OK && strstr(msg, "read-only"));
    st = run(h, "setmetatable(math, nil)", msg, sizeof msg, NULL, 0);
    CHECK(st != LUA_OK && strstr(msg, "protected metatable"));
    st = run(h, "return tostring(getmetatable(os))", msg, sizeof msg, out, sizeof out);
    CHECK_STR(out, "false");
    /* reading and iterating still work, and methods on strings too */
    st = run(h,
             "local n = 0 for k, v in pairs(string) do n = n + 1 end\n"
             "return string.format('%d %s %s', n > 10 and 1 or 0, ('ab'):upper(), math.floor(2.5))",
             msg, sizeof msg, out, sizeof out);
    CHECK_STR(out, "1 AB 2");
    /* xpcall is still yieldable (ctx calls yield inside it) */
    st = run(h,
             "local co = coroutine.wrap(function()\n"
             "  return xpcall(function() coroutine.yield(1) return 2 end, print) end)\n"
             "local a = co() local ok, b = co() return tostring(a + b)",
             msg, sizeof msg, out, sizeof out);
    CHECK_STR(out, "3");
    /* a script that trashes its own globals does not break a module */
    st = run(h,
             "tostring = function() return 'hacked' end; string = nil; MODULE_GLOBAL = 'script'\n"
             "local m = require 'uses_globals'\n"
             "return m.describe('ab') .. ' ' .. MODULE_GLOBAL",
             msg, sizeof msg, out, sizeof out);
    if (st != LUA_OK)
        printf("# %s\n", msg);
    CHECK_STR(out, "ab-2-module script");
    lua_host_free(h);
}

TEST(c_functions_the_hook_cannot_see_are_bounded)
{
    lua_host *h = new_host(0, 0);
    char msg[512], out[256];
    uint64_t t0 = loop_time_ms();
    int st = run(h, "return '[' .. string.rep('', 1e12) .. (''):rep(1e12, '') .. ']'", msg,
                 sizeof msg, out, sizeof out);
    CHECK_STR(out, "[]");
    st = run(h, "table.move({}, 1, 1e15, 2)", msg, sizeof msg, NULL, 0);
    CHECK(st != LUA_OK && strstr(msg, "test:1: table.move:"));
    /* #t can be huge without the memory to match (__len, sparse borders) */
    st = run(h, "local t = setmetatable({}, {__len = function() return 1 << 40 end}) table.insert(t, 1, 'x')", msg,
             sizeof msg, NULL, 0);
    CHECK(st != LUA_OK && strstr(msg, "table.insert/remove"));
    st = run(h, "local t = setmetatable({}, {__len = function() return 1 << 40 end}) table.remove(t, 1)", msg,
             sizeof msg, NULL, 0);
    CHECK(st != LUA_OK && strstr(msg, "table.insert/remove"));
    st = run(h, "local t = setmetatable({}, {__len = function() return 1 << 40 end}) table.sort(t)", msg,
             sizeof msg, NULL, 0);
    CHECK(st != LUA_OK && strstr(msg, "table.sort: #t is"));
    /* ordinary use is untouched */
    st = run(h,
             "local t = {3, 1, 2} table.insert(t, 1, 9) table.remove(t) table.sort(t)\n"
             "return table.concat(table.move(t, 1, 3, 1, {}), ',')",
             msg, sizeof msg, out, sizeof out);
    CHECK_STR(out, "1,3,9");
    st = run(h, "setmetatable({}, { __gc = function() while true do end end })", msg, sizeof msg,
             NULL, 0);
    CHECK(st != LUA_OK && strstr(msg, "__gc metamethods are not allowed"));
    CHECK(loop_time_ms() - t0 < 3000);
    lua_host_free(h);
}

TEST(pathological_patterns_are_refused_quickly)
{
    lua_host *h = new_host(0, 0);
    char msg[512], out[256];
    uint64_t t0 = loop_time_ms();
    int st = run(h, "local s = string.rep('a', 5000) return s:find('.-.-.-.-b')", msg, sizeof msg,
                 NULL, 0);
    CHECK(st != LUA_OK && strstr(msg, "test:1: string.find: the pattern"));
    CHECK(strstr(msg, "matching steps") != NULL);
    st = run(h, "return string.match(string.rep('a', 5000), '(a*)*b')", msg, sizeof msg, NULL, 0);
    CHECK(st != LUA_OK && strstr(msg, "string.match"));
    st = run(h, "for w in string.rep('a', 5000):gmatch('a-a-a-a-b') do end", msg, sizeof msg,
             NULL, 0);
    CHECK(st != LUA_OK && strstr(msg, "string.gmatch"));
    st = run(h, "return (string.rep(' ', 100000) .. 'x'):gsub('%s+y', '')", msg, sizeof msg,
             NULL, 0);
    CHECK(st != LUA_OK && strstr(msg, "string.gsub"));
    st = run(h, "local s = string.rep('a', 1e6) return s:find(string.rep('a', 5e5) .. 'b', 1, true)",
             msg, sizeof msg, NULL, 0);
    CHECK(st != LUA_OK && strstr(msg, "plain search"));
    CHECK(loop_time_ms() - t0 < 5000);
    /* ordinary patterns give Lua's answers */
    st = run(h,
             "local text = string.rep('word  other\\n', 20000)\n"
             "local squeezed, n = text:gsub('%s+', ' ')\n"
             "local words = 0 for w in text:gmatch('%a+') do words = words + 1 end\n"
             "local a, b = ('key=value'):match('^(%w+)=(%w+)$')\n"
             "local i, j = ('hello world'):find('o w', 1, true)\n"
             "local k = ('x(a(b)c)y'):find('%b()')\n"
             "local f = ('THE (quick) fox'):find('%f[%a]%a+', 5)\n"
             "return table.concat({n, words, a, b, i, j, k, f, ('abcabc'):match('(a)(b)c%1%2')}, ',')",
             msg, sizeof msg, out, sizeof out);
    if (st != LUA_OK)
        printf("# %s\n", msg);
    CHECK_STR(out, "40000,40000,key,value,5,7,2,6,a,b");
    /* a malformed pattern still gets Lua's own message */
    st = run(h, "return ('abc'):find('[a')", msg, sizeof msg, NULL, 0);
    CHECK(st != LUA_OK && strstr(msg, "missing ']'"));
    lua_host_free(h);
}

TEST(an_endless_loop_is_cut_by_the_cpu_deadline_whatever_catches_it)
{
    /* budget out of reach: only the 100 ms deadline can stop these */
    lua_host *h = new_host_ms(0, 1ull << 60, 100);
    char msg[512], out[256];
    const char *loops[] = {
        "while true do end",
        "xpcall(function() while true do end end, function(e) while true do end end) return 'x'",
        "local f = coroutine.wrap(function() pcall(function() while true do end end) end)\n"
        "f() return 'x'",
        "local ok = pcall(string.gsub, 'aaa', 'a', function() while true do end end) return 'x'",
        "local x <close> = setmetatable({}, { __close = function() while true do end end })\n"
        "while true do end",
        "local co = coroutine.create(function()\n"
        "  local x <close> = setmetatable({}, { __close = function() while true do end end })\n"
        "  while true do end end)\n"
        "coroutine.resume(co) coroutine.close(co) return 'x'",
    };
    for (size_t i = 0; i < sizeof loops / sizeof *loops; i++) {
        uint64_t t0 = loop_time_ms();
        int st = run(h, loops[i], msg, sizeof msg, out, sizeof out);
        uint64_t took = loop_time_ms() - t0;
        if (st == LUA_OK || !strstr(msg, "deadline exceeded") || took > 2000)
            printf("# loop %zu: st %d, %llu ms, %s / %s\n", i, st, (unsigned long long)took, msg,
                   out);
        CHECK(st != LUA_OK && out[0] == '\0');
        CHECK(strstr(msg, "test:") && strstr(msg, "deadline exceeded"));
        CHECK(took < 2000);
    }
    lua_host_free(h);
}

TEST(errors_are_described_with_the_place_they_come_from)
{
    /* A generous CPU deadline: deep recursion under ASan on a loaded
     * machine must reach the stack limit, not the deadline. */
    lua_host *h = new_host_ms(0, 0, 20000);
    char msg[512];
    run(h, "\nerror({})", msg, sizeof msg, NULL, 0);
    CHECK_STR(msg, "test:2: error raised with a table value (use error(\"text\"))");
    run(h, "error(nil)", msg, sizeof msg, NULL, 0);
    CHECK_STR(msg, "test:1: error raised with a nil value (use error(\"text\"))");
    run(h, "local t = setmetatable({}, {__index = function() error('x') end})\n"
           "error({ reason = 'Conflict', message = 'try again' })",
        msg, sizeof msg, NULL, 0);
    CHECK_STR(msg, "test:2: Conflict: try again");
    run(h, "error(42)", msg, sizeof msg, NULL, 0);
    CHECK_STR(msg, "test:1: error 42");
    run(h, "local function f(n) return 1 + f(n + 1) end\nreturn f(1)", msg, sizeof msg, NULL, 0);
    if (!(strstr(msg, "test:1:") && strstr(msg, "stack overflow")))
        printf("#   got: %s\n", msg);
    CHECK(strstr(msg, "test:1:") && strstr(msg, "stack overflow"));
    run(h, "error('plain', 0)", msg, sizeof msg, NULL, 0);
    CHECK(strstr(msg, "plain") != NULL);
    lua_host_free(h);
}

static char warnings[1024];
static void collect_warning(void *ud, const char *where, const char *msg)
{
    (void)ud;
    size_t n = strlen(warnings);
    snprintf(warnings + n, sizeof warnings - n, "%s: %s\n", where, msg);
}

TEST(warnings_are_reported_with_file_and_line)
{
    lua_host_opts o = {"spec/lua_fixtures/warnings", 0, 0, 0, collect_warning, NULL};
    kl_err err = {0};
    lua_host *h = lua_host_new(&o, &err);
    warnings[0] = '\0';
    CHECK(lua_host_load(h, "spec/lua_fixtures/warnings/noisy.lua", &err) == 0);
    CHECK(strstr(warnings, "spec/lua_fixtures/warnings/noisy.lua:3: assigns the global 'counter'"));
    CHECK(strstr(warnings, "spec/lua_fixtures/warnings/noisy.lua:4: noisy: this controller is only"));
    /* globals assigned later (in a reconcile) are the script's business */
    warnings[0] = '\0';
    char msg[256];
    run(h, "late = 1 warn('@on')", msg, sizeof msg, NULL, 0);
    CHECK_STR(warnings, "");
    lua_host_free(h);
}

TEST(the_host_knows_which_files_a_script_came_from)
{
    char dir[] = "/tmp/klua-deps-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char cmd[512], path[600];
    snprintf(cmd, sizeof cmd, "cp -r " GOOD "/hello.lua " GOOD "/lib %s/", dir);
    CHECK(system(cmd) == 0);
    lua_host_opts o = {dir, 0, 0, 0, NULL, NULL};
    kl_err err = {0};
    lua_host *h = lua_host_new(&o, &err);
    snprintf(path, sizeof path, "%s/hello.lua", dir);
    CHECK(lua_host_load(h, path, &err) == 0);
    size_t n = 0;
    const lua_host_dep *d = lua_host_deps(h, &n);
    CHECK(n == 3);
    if (n == 3) {
        CHECK_STR(d[0].path, path);
        CHECK(strstr(d[1].path, "/lib/helper.lua") != NULL);
        CHECK(strstr(d[2].path, "/lib/util/init.lua") != NULL);
    }
    CHECK(lua_host_deps_changed(d, n) == 0);
    lua_host_dep *copy = NULL;
    CHECK(lua_host_deps_copy(d, n, &copy) == 0);
    snprintf(cmd, sizeof cmd, "echo '-- edited' >> %s/lib/util/init.lua", dir);
    CHECK(system(cmd) == 0);
    CHECK(lua_host_deps_changed(copy, n) == 1);
    lua_host_deps_free(copy, n);
    lua_host_free(h);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
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
    RUN(library_tables_are_read_only_and_modules_keep_their_globals);
    RUN(c_functions_the_hook_cannot_see_are_bounded);
    RUN(pathological_patterns_are_refused_quickly);
    RUN(an_endless_loop_is_cut_by_the_cpu_deadline_whatever_catches_it);
    RUN(errors_are_described_with_the_place_they_come_from);
    RUN(warnings_are_reported_with_file_and_line);
    RUN(the_host_knows_which_files_a_script_came_from);
    DONE();
}
