/* test_lua_limits.c - a script cannot outlive its CPU limits or escape its
 * memory cap (issue 9, items 1-3), tried as an attacker would.
 *
 * Each attack is bounded so that, on a host with the escape, it finishes
 * and returns 'survived' after a few seconds instead of running for ever;
 * a host without the escape kills it with the limit's message. CPU time is
 * only checked as "did it stop at all" (a generous multiple of the
 * deadline): the machine is shared and this runs under ASan.
 * No cluster needed. Run from the repository root.
 */
#include "harness.h"

#include "lua_host.h"

#include <lauxlib.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GOOD "spec/lua_fixtures/good"

static lua_host *new_host(size_t mem, uint64_t budget, uint64_t run_ms)
{
    lua_host_opts o = {GOOD, mem, budget, run_ms, NULL, NULL};
    kl_err err = {0};
    lua_host *h = lua_host_new(&o, &err);
    if (!h)
        printf("# lua_host_new: %s\n", err.msg);
    return h;
}

static uint64_t cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Run `code` as one task. Returns the resume status; the error goes to
 * msg, the first result (a string) to out; *cpu gets the CPU ms used. */
static int run(lua_host *h, const char *code, char *msg, size_t msgsz, char *out, size_t outsz,
               uint64_t *cpu)
{
    int ref;
    lua_State *co = lua_host_task_new(h, &ref);
    msg[0] = out[0] = '\0';
    if (luaL_loadbufferx(co, code, strlen(code), "=attack", "t") != LUA_OK) {
        snprintf(msg, msgsz, "%s", lua_tostring(co, -1));
        lua_host_task_release(h, co, ref);
        return LUA_ERRSYNTAX;
    }
    lua_host_budget b = {0};
    int nres = 0;
    uint64_t t0 = cpu_ms();
    int st = lua_host_resume(h, co, 0, &nres, &b);
    *cpu = cpu_ms() - t0;
    if (st != LUA_OK && st != LUA_YIELD)
        lua_host_error(h, co, st, &b, msg, msgsz);
    else if (nres > 0 && lua_type(co, -nres) == LUA_TSTRING)
        snprintf(out, outsz, "%s", lua_tostring(co, -nres));
    lua_host_task_release(h, co, ref);
    return st;
}

typedef struct attack {
    const char *name;
    const char *code;
} attack;

/* Run each attack; each must end with `limit` in the error, return
 * nothing, and use less than max_cpu ms. The host must still work. */
static void expect_killed(lua_host *h, const attack *a, size_t n, const char *limit,
                          uint64_t max_cpu)
{
    char msg[512], out[1024];
    for (size_t i = 0; i < n; i++) {
        uint64_t cpu = 0;
        int st = run(h, a[i].code, msg, sizeof msg, out, sizeof out, &cpu);
        int ok = st != LUA_OK && out[0] == '\0' && strstr(msg, limit) && cpu < max_cpu;
        printf("# %-28s %s after %llu ms CPU: %s%s\n", a[i].name, ok ? "killed" : "ESCAPED",
               (unsigned long long)cpu, out[0] ? out : msg, out[0] ? " (returned)" : "");
        fflush(stdout); /* seen even if a later attack never ends */
        CHECK(st != LUA_OK);
        CHECK(out[0] == '\0');
        CHECK(strstr(msg, limit) != NULL);
        CHECK(cpu < max_cpu);
    }
    uint64_t cpu;
    int st = run(h, "return 'alive'", msg, sizeof msg, out, sizeof out, &cpu);
    CHECK(st == LUA_OK);
    CHECK_STR(out, "alive");
}

/* A kill that fires in one coroutine, then a loop elsewhere that catches
 * the error each time. On a host with the escape every one of these runs
 * its 10,000 rounds and returns. */
#define ROUNDS "10000"
#define KILLER_IN_COROUTINE "pcall(coroutine.wrap(function() while true do end end))\n"
#define BUSY "for j = 1, 3000 do end"
static const attack after_kill[] = {
    {"coroutine", KILLER_IN_COROUTINE
     "for i = 1, " ROUNDS " do pcall(function() " BUSY " end) end return 'survived'"},
    {"nested coroutine",
     "local outer = coroutine.wrap(function()\n"
     "  local inner = coroutine.wrap(function() while true do end end)\n"
     "  pcall(inner)\n"
     "  for i = 1, " ROUNDS " do pcall(function() " BUSY " end) end\n"
     "  return 'survived' end)\n"
     "local ok, r = pcall(outer) if ok then return r end\n"
     "for i = 1, " ROUNDS " do pcall(function() " BUSY " end) end return 'survived'"},
    {"coroutine.resume loop",
     "for i = 1, " ROUNDS " do\n"
     "  coroutine.resume(coroutine.create(function() while true do end end))\n"
     "end return 'survived'"},
    {"pcall", KILLER_IN_COROUTINE
     "local n = 0 while n < " ROUNDS " do n = n + 1 pcall(pcall, function() " BUSY " end) end\n"
     "return 'survived'"},
    {"xpcall, looping handler", KILLER_IN_COROUTINE
     "for i = 1, " ROUNDS " do\n"
     "  xpcall(function() " BUSY " end, function(e) " BUSY " return e end)\n"
     "end return 'survived'"},
    {"xpcall in the coroutine",
     "pcall(coroutine.wrap(function()\n"
     "  xpcall(function() while true do end end, function(e) while true do end end) end))\n"
     "for i = 1, " ROUNDS " do pcall(function() " BUSY " end) end return 'survived'"},
    {"coroutine.wrap", KILLER_IN_COROUTINE
     "for i = 1, " ROUNDS " do pcall(coroutine.wrap(function() " BUSY " end)) end\n"
     "return 'survived'"},
    {"__close", KILLER_IN_COROUTINE
     "for i = 1, " ROUNDS " do pcall(function()\n"
     "  local x <close> = setmetatable({}, { __close = function() " BUSY " end })\n"
     "  " BUSY " end) end return 'survived'"},
    {"metamethods", KILLER_IN_COROUTINE
     "local t = setmetatable({}, { __index = function() " BUSY " end,\n"
     "                             __add = function() " BUSY " end })\n"
     "for i = 1, " ROUNDS " do pcall(function() return t.x end) pcall(function() return t + 1 end)\n"
     "end return 'survived'"},
    {"gsub callback",
     "pcall(coroutine.wrap(function() ('aaa'):gsub('a', function() while true do end end) end))\n"
     "for i = 1, " ROUNDS " do pcall(string.gsub, 'aa', 'a', function() " BUSY " end) end\n"
     "return 'survived'"},
    {"sort comparator",
     "pcall(coroutine.wrap(function()\n"
     "  table.sort({3, 2, 1}, function(a, b) while true do end end) end))\n"
     "for i = 1, " ROUNDS " do\n"
     "  pcall(table.sort, {3, 2, 1}, function(a, b) " BUSY " return a < b end)\n"
     "end return 'survived'"},
    /* last: on a host with the escape, this one never ends */
    {"__close in a dead coroutine",
     "local f = coroutine.wrap(function()\n"
     "  local x <close> = setmetatable({}, { __close = function() while true do end end })\n"
     "  while true do end end)\n"
     "pcall(f) return 'survived'"},
};

TEST(a_deadline_kill_stops_every_coroutine_of_the_run)
{
    /* budget out of reach: only the 50 ms deadline can stop these */
    lua_host *h = new_host(0, 1ull << 60, 50);
    expect_killed(h, after_kill, sizeof after_kill / sizeof *after_kill, "deadline exceeded",
                  1000);
    lua_host_free(h);
}

TEST(a_budget_kill_stops_every_coroutine_of_the_run)
{
    /* deadline out of reach: only the 1e6-instruction budget can stop these */
    lua_host *h = new_host(0, 1000000, 1ull << 30);
    expect_killed(h, after_kill, sizeof after_kill / sizeof *after_kill,
                  "instruction budget exceeded", 1000);
    lua_host_free(h);
}

TEST(a_coroutine_killed_in_one_run_cannot_loop_in_the_next)
{
    /* A coroutine that died of a kill keeps its __close handlers unrun:
     * closing it later would run them with hooks off. */
    lua_host *h = new_host(0, 1ull << 60, 50);
    char msg[512], out[128];
    uint64_t cpu;
    int st = run(h,
                 "stash = coroutine.create(function()\n"
                 "  local x <close> = setmetatable({}, { __close = function() while true do end end })\n"
                 "  while true do end end)\n"
                 "coroutine.resume(stash) while true do end",
                 msg, sizeof msg, out, sizeof out, &cpu);
    CHECK(st != LUA_OK && strstr(msg, "deadline exceeded"));
    st = run(h, "local ok, e = pcall(coroutine.close, stash) return tostring(ok and e)",
             msg, sizeof msg, out, sizeof out, &cpu);
    printf("# close in the next run: %s%s, %llu ms\n", out, msg, (unsigned long long)cpu);
    CHECK(cpu < 1000);
    CHECK(strncmp(out, "false", 5) == 0 || (st != LUA_OK && strstr(msg, "deadline exceeded")));
    lua_host_free(h);
}

/* C calls the count hook cannot see into, repeated under pcall: each is
 * allowed alone, but together they must stay within a small multiple of
 * the deadline. Few enough rounds that the hook alone (which reads the
 * clock every 10,000 instructions) never looks at the clock. */
static const attack c_work[] = {
    {"pattern probe", "local s = string.rep('a', 2e6)\n"
     "for i = 1, 200 do pcall(string.find, s, '.-.-b') end return 'survived'"},
    {"plain find", "local s, n = string.rep('a', 1e6), string.rep('a', 300) .. 'b'\n"
     "for i = 1, 200 do pcall(string.find, s, n, 1, true) end return 'survived'"},
    {"table.sort", "local t = {} for i = 1, 5000 do t[i] = (i * 7919) % 5003 end\n"
     "local big = table.move(t, 1, 5000, 1, {})\n"
     "for i = 1, 150 do big = table.move(big, 1, #big, #big + 1) if #big >= 1e5 then break end end\n"
     "for i = 1, 200 do pcall(table.sort, big, nil) end return 'survived'"},
    {"table.move", "local a, b = {}, {} for i = 1, 1e6 do a[i] = i end\n"
     "for i = 1, 400 do table.move(a, 1, #a, 1, b) end return 'survived'"},
    {"table.insert/remove", "local a = {} for i = 1, 1e6 do a[i] = i end\n"
     "for i = 1, 200 do table.insert(a, 1, 0) table.remove(a, 1) end return 'survived'"},
    {"string.rep", "for i = 1, 600 do pcall(string.rep, 'x', 16e6) end return 'survived'"},
    {"string.upper", "local s = string.rep('a', 8e6)\n"
     "for i = 1, 400 do local u = s:upper() end return 'survived'"},
    {"utf8.len", "local s = string.rep('a', 8e6)\n"
     "for i = 1, 200 do utf8.len(s) end return 'survived'"},
    {"utf8.offset", "local s = string.rep('a', 8e6)\n"
     "for i = 1, 200 do utf8.offset(s, -1) utf8.offset(s, 8e6) end return 'survived'"},
    {"utf8.codes", "local s = 'a' .. string.rep('\\x80', 8e6)\n"
     "for i = 1, 200 do pcall(function() for p, c in utf8.codes(s) do end end) end\n"
     "return 'survived'"},
    {"gsub output", "local s = string.rep('a', 4e5)\n"
     "for i = 1, 200 do pcall(string.gsub, s, 'a', 'bb') end return 'survived'"},
    {"klua.json.encode", "local json = require 'klua.json'\n"
     "local t = {} for i = 1, 3e5 do t[i] = 'item' end\n"
     "for i = 1, 200 do json.encode(t) end return 'survived'"},
    {"klua.json.decode", "local json = require 'klua.json'\n"
     "local s = '[' .. string.rep('1,', 2e5) .. '1]'\n"
     "for i = 1, 200 do json.decode(s) end return 'survived'"},
};

TEST(guarded_c_work_counts_against_the_deadline)
{
    lua_host *h = new_host(0, 1ull << 60, 100);
    expect_killed(h, c_work, sizeof c_work / sizeof *c_work, "deadline exceeded", 2000);
    lua_host_free(h);
}

TEST(guarded_c_work_counts_against_the_instruction_budget)
{
    /* 20M instructions: the attacks above do far more work than that in C */
    lua_host *h = new_host(0, 20000000, 1ull << 30);
    expect_killed(h, c_work, sizeof c_work / sizeof *c_work, "instruction budget exceeded",
                  5000);
    lua_host_free(h);
}

/* Under ASan, freed memory waits in a quarantine (256 MB by default)
 * before it is reused, which would read as RSS growth; keep it small so
 * that the RSS figures mean what they say. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "quarantine_size_mb=4"; }

/* Peak RSS of this process, in MiB. */
static long max_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

TEST(json_encode_output_is_bounded_by_the_memory_cap)
{
    /* A table that is its own two children 24 levels deep: 2^24 leaves,
     * ~80 MB of JSON from 24 tables, encoded under a 16 MiB cap, 10 times
     * (each test runs in its own process: the peak RSS is this test's). */
    lua_host *h = new_host(16u << 20, 1ull << 60, 1ull << 30);
    char msg[512], out[128];
    uint64_t cpu;
    long rss0 = max_rss_mb(), rss1 = 0;
    for (int i = 0; i < 10; i++) {
        int st = run(h,
                     "local json = require 'klua.json'\n"
                     "local t = {} for i = 1, 24 do t = {t, t} end\n"
                     "return 'encoded ' .. #json.encode(t)",
                     msg, sizeof msg, out, sizeof out, &cpu);
        if (i == 0) {
            rss1 = max_rss_mb();
            printf("# encode bomb: %s%s, %llu ms CPU, peak RSS +%ld MiB\n", out, msg,
                   (unsigned long long)cpu, rss1 - rss0);
        }
        CHECK(st != LUA_OK && strstr(msg, "memory limit exceeded"));
        if (st == LUA_OK)
            break;
    }
    long rss2 = max_rss_mb();
    printf("# after 10 failures: peak RSS +%ld MiB\n", rss2 - rss0);
    /* 16 MiB of output at most, held once and copied once, plus the
     * sanitizer's quarantine: far below what the bomb asks for; and
     * failures do not pile up */
    CHECK(rss1 - rss0 < 48);
    CHECK(rss2 - rss1 < 32);
    lua_host_free(h);
}

TEST(json_encode_output_counts_against_the_cap)
{
    /* ~20 MB of JSON under a 32 MiB cap: the C buffer and the Lua string
     * together are more than the cap, so encode fails and the state lives */
    lua_host *h = new_host(32u << 20, 1ull << 60, 1ull << 30);
    char msg[512], out[128];
    uint64_t cpu;
    size_t before = lua_host_mem_used(h);
    int st = run(h,
                 "local json = require 'klua.json'\n"
                 "local t = {} for i = 1, 22 do t = {t, t} end\n"
                 "return 'encoded ' .. #json.encode(t)",
                 msg, sizeof msg, out, sizeof out, &cpu);
    printf("# 2^22 leaves under 32 MiB: %s%s\n", out, msg);
    CHECK(st != LUA_OK && strstr(msg, "memory limit exceeded"));
    /* what a failed encode charged is given back */
    lua_State *L = lua_host_state(h);
    lua_gc(L, LUA_GCCOLLECT);
    CHECK(lua_host_mem_used(h) < before + (1u << 20));
    /* an ordinary encode still works */
    st = run(h, "return require('klua.json').encode({a = {1, 2}, b = 'x'})", msg, sizeof msg, out,
             sizeof out, &cpu);
    CHECK(st == LUA_OK && (strcmp(out, "{\"a\":[1,2],\"b\":\"x\"}") == 0 ||
                           strcmp(out, "{\"b\":\"x\",\"a\":[1,2]}") == 0));
    lua_host_free(h);
}

TEST(json_decode_tokens_count_against_the_cap)
{
    /* 1e6 numbers: 2 MB of text, ~20 MB of tokens in C, ~16 MB of table.
     * Under a 32 MiB cap the tokens and the table together are too much. */
    lua_host *h = new_host(32u << 20, 1ull << 60, 1ull << 30);
    char msg[512], out[128];
    uint64_t cpu;
    lua_State *L = lua_host_state(h);
    lua_gc(L, LUA_GCCOLLECT);
    size_t before = lua_host_mem_used(h);
    for (int i = 0; i < 3; i++) {
        int st = run(h,
                     "local json = require 'klua.json'\n"
                     "local t = json.decode('[' .. string.rep('1,', 1e6) .. '1]')\n"
                     "return 'decoded ' .. #t",
                     msg, sizeof msg, out, sizeof out, &cpu);
        if (i == 0)
            printf("# 1e6 numbers under 32 MiB: %s%s\n", out, msg);
        CHECK(st != LUA_OK && strstr(msg, "memory limit exceeded"));
    }
    /* what the failed decodes charged is given back, whichever way they failed */
    lua_gc(L, LUA_GCCOLLECT);
    CHECK(lua_host_mem_used(h) < before + (1u << 20));
    int st = run(h, "local t = require('klua.json').decode('[' .. string.rep('1,', 1e5) .. '1]')"
                    " return 'decoded ' .. #t",
                 msg, sizeof msg, out, sizeof out, &cpu);
    CHECK(st == LUA_OK);
    CHECK_STR(out, "decoded 100001");
    lua_gc(L, LUA_GCCOLLECT);
    CHECK(lua_host_mem_used(h) < before + (1u << 20));
    lua_host_free(h);
}

TEST(coroutines_still_behave_as_in_lua)
{
    /* coroutine.resume and coroutine.wrap are klua's own now: the answers
     * of the standard ones (checked against lua5.4 itself) */
    lua_host *h = new_host(0, 0, 0);
    char msg[512], out[1024];
    uint64_t cpu;
    int st = run(h,
    "local cases = {\n"
    " function() local g = coroutine.wrap(function() for i=1,3 do coroutine.yield(i) end end) return g()..g()..g() end,\n"
    " function() local g = coroutine.wrap(function() error('boom') end) local ok, e = pcall(g) return e end,\n"
    " function() local g = coroutine.wrap(function() error('boom') end) local ok, e = pcall(function() return g() end) return e end,\n"
    " function() local g = coroutine.wrap(function() error({}) end) local ok, e = pcall(g) return type(e) end,\n"
    " function() local co = coroutine.create(function() end) coroutine.resume(co) return tostring(select(2, coroutine.resume(co))) end,\n"
    " function() local co = coroutine.create(function(a, b) local c = coroutine.yield(a + b) return c * 2 end) local _, x = coroutine.resume(co, 1, 2) local _, y = coroutine.resume(co, 10) return x .. ',' .. y .. ',' .. coroutine.status(co) end,\n"
    " function() local g = coroutine.wrap(function() end) g() local ok, e = pcall(g) return e end,\n"
    " function() local closed = false local g = coroutine.wrap(function() local x <close> = setmetatable({}, {__close=function() closed = true end}) error('x') end) pcall(g) return tostring(closed) end,\n"
    " function() return coroutine.wrap(function() return tostring(coroutine.isyieldable()) end)() end,\n"
    " function() local co co = coroutine.create(function() return select(2, coroutine.resume(co)) end) local _, m = coroutine.resume(co) return m end,\n"
    " function() local ok, e = pcall(coroutine.resume, 42) return e:match('bad argument #1') end,\n"
    " function() local ok, e = pcall(coroutine.wrap, 42) return e:match('bad argument #1') end,\n"
    " function() local co = coroutine.create(function() error('in co') end) local ok, e = coroutine.resume(co) return tostring(ok) .. ' ' .. e .. ' ' .. coroutine.status(co) end,\n"
    " function() local g = coroutine.wrap(function(...) return select('#', ...), ... end) return table.concat({g(1, nil, 3)}, ',', 1, 2) end,\n"
    "}\n"
    "local out = {}\n"
    "for i, f in ipairs(cases) do local ok, r = pcall(f) out[#out+1] = i .. '=' .. tostring(r) end\n"
    "return table.concat(out, '|')\n",
                 msg, sizeof msg, out, sizeof out, &cpu);
    if (st != LUA_OK)
        printf("# %s\n", msg);
    CHECK_STR(out, "1=123|2=attack:3: boom|3=attack:4: attack:4: boom|4=table|"
                   "5=cannot resume dead coroutine|6=3,20,dead|7=cannot resume dead coroutine|"
                   "8=true|9=true|10=cannot resume non-suspended coroutine|11=bad argument #1|"
                   "12=bad argument #1|13=false attack:14: in co dead|14=3,1");
    lua_host_free(h);
}

/* Run a test in a child process with an alarm: an escape this file looks
 * for can be an endless loop, which must fail the test, not hang the suite.
 * The child exits normally so that LeakSanitizer checks it. */
#define RUN_ISOLATED(name, secs)                                                          \
    do {                                                                                  \
        fflush(stdout);                                                                   \
        pid_t th_pid = fork();                                                            \
        if (th_pid == 0) {                                                                \
            alarm(secs);                                                                  \
            th_cur_failed = 0;                                                            \
            test_##name();                                                                \
            fflush(stdout);                                                               \
            exit(th_cur_failed ? 1 : 0);                                                  \
        }                                                                                 \
        int th_st = 0;                                                                    \
        int th_bad = th_pid < 0 || waitpid(th_pid, &th_st, 0) != th_pid ||                \
                     !WIFEXITED(th_st) || WEXITSTATUS(th_st) != 0;                        \
        if (th_pid > 0 && WIFSIGNALED(th_st))                                             \
            printf("#   killed by signal %d (%s)\n", WTERMSIG(th_st),                     \
                   WTERMSIG(th_st) == SIGALRM ? "still running after " #secs " s"         \
                                              : "a crash");                               \
        th_count++;                                                                       \
        th_failed_tests += th_bad;                                                        \
        printf("%s %d - %s\n", th_bad ? "not ok" : "ok", th_count, #name);                \
        fflush(stdout);                                                                   \
    } while (0)

int main(void)
{
    RUN_ISOLATED(json_encode_output_is_bounded_by_the_memory_cap, 120);
    RUN_ISOLATED(json_encode_output_counts_against_the_cap, 120);
    RUN_ISOLATED(json_decode_tokens_count_against_the_cap, 120);
    RUN_ISOLATED(a_deadline_kill_stops_every_coroutine_of_the_run, 120);
    RUN_ISOLATED(a_budget_kill_stops_every_coroutine_of_the_run, 120);
    RUN_ISOLATED(a_coroutine_killed_in_one_run_cannot_loop_in_the_next, 60);
    RUN_ISOLATED(guarded_c_work_counts_against_the_deadline, 180);
    RUN_ISOLATED(guarded_c_work_counts_against_the_instruction_budget, 180);
    RUN_ISOLATED(coroutines_still_behave_as_in_lua, 60);
    DONE();
}
