/* test_types.c - what klua types and klua init stand on: YAML documents as Lua
 * values (tool_lua), the generated-file writer, relative paths (klua_home),
 * and klua.typegen's output for a schema written here. */
#include "harness.h"

#include "klua_home.h"
#include "tool_lua.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[64];

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Evaluate a Lua expression over the value at the top (as `v`): its tostring. */
static const char *eval(lua_State *L, const char *expr)
{
    char code[512];
    snprintf(code, sizeof code, "local v = ... return tostring(%s)", expr);
    if (luaL_loadstring(L, code) != LUA_OK)
        return "(bad expression)";
    lua_pushvalue(L, -2);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        lua_pop(L, 1);
        return "(error)";
    }
    static char out[256];
    snprintf(out, sizeof out, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return out;
}

TEST(yaml_documents_become_lua_values_typed_as_yaml_1_2_core)
{
    char path[128];
    snprintf(path, sizeof path, "%s/a.yaml", tmp);
    write_text(path, "a: 1\nb: \"1\"\nc: true\nd: ~\ne: 1.5\nf: [x, 2, null]\ng: v1\n"
                     "h: 0x1F\n---\n---\nkind: Second\n");
    kl_err err = {0};
    lua_State *L = tool_lua_new(&err);
    CHECK(L != NULL);
    CHECK(tool_lua_push_yaml_file(L, path, &err) == 0);
    CHECK_STR(eval(L, "#v"), "2"); /* the empty document is dropped */
    CHECK_STR(eval(L, "math.type(v[1].a)"), "integer");
    CHECK_STR(eval(L, "type(v[1].b)"), "string");
    CHECK_STR(eval(L, "v[1].c"), "true");
    CHECK_STR(eval(L, "v[1].d"), "nil");
    CHECK_STR(eval(L, "math.type(v[1].e)"), "float");
    CHECK_STR(eval(L, "#v[1].f .. v[1].f[1] .. v[1].f[2] .. tostring(v[1].f[3])"), "3x2false");
    CHECK_STR(eval(L, "v[1].g"), "v1");
    CHECK_STR(eval(L, "v[1].h"), "31");
    CHECK_STR(eval(L, "v[2].kind"), "Second");
    lua_close(L);
}

TEST(malformed_yaml_is_an_error_with_file_and_line)
{
    char path[128];
    snprintf(path, sizeof path, "%s/bad.yaml", tmp);
    write_text(path, "a: 1\nb: [unclosed\n");
    kl_err err = {0};
    lua_State *L = tool_lua_new(&err);
    int top = lua_gettop(L);
    CHECK(tool_lua_push_yaml_file(L, path, &err) == -1);
    CHECK(lua_gettop(L) == top);
    char want[160];
    snprintf(want, sizeof want, "%s:", path);
    CHECK(strncmp(err.msg, want, strlen(want)) == 0);
    CHECK(tool_lua_push_yaml_file(L, "/nonexistent/x.yaml", &err) == -1);
    CHECK(strstr(err.msg, "/nonexistent/x.yaml") != NULL);
    lua_close(L);
}

TEST(yaml_aliases_that_expand_without_end_are_refused)
{
    /* a "billion laughs": 9 levels of 10 aliases each, about 10^9 values
     * from a file of a few hundred bytes */
    char path[128];
    snprintf(path, sizeof path, "%s/laughs.yaml", tmp);
    char doc[2048] = "a0: &a0 [lol]\n";
    for (int i = 1; i <= 9; i++) {
        char line[160];
        snprintf(line, sizeof line, "a%d: &a%d [*a%d,*a%d,*a%d,*a%d,*a%d,*a%d,*a%d,*a%d,*a%d,*a%d]\n",
                 i, i, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
        strcat(doc, line);
    }
    write_text(path, doc);
    kl_err err = {0};
    lua_State *L = tool_lua_new(&err);
    int top = lua_gettop(L);
    CHECK(tool_lua_push_yaml_file(L, path, &err) == -1);
    CHECK(lua_gettop(L) == top);
    CHECK(strstr(err.msg, "laughs.yaml:") != NULL);
    CHECK(strstr(err.msg, "aliases") != NULL);
    /* a few aliases are fine */
    snprintf(path, sizeof path, "%s/anchors.yaml", tmp);
    write_text(path, "base: &b {x: 1}\nuse: *b\n");
    CHECK(tool_lua_push_yaml_file(L, path, &err) == 0);
    CHECK_STR(eval(L, "v[1].use.x"), "1");
    lua_close(L);
}

TEST(write_files_creates_folders_and_never_clobbers_when_told)
{
    char dir[128], p[192];
    snprintf(dir, sizeof dir, "%s/out", tmp);
    kl_err err = {0};
    lua_State *L = tool_lua_new(&err);
    CHECK(luaL_dostring(L, "return { ['a/b/c.txt'] = 'deep', ['top.txt'] = 'top' }") == LUA_OK);
    int n = 0;
    CHECK(tool_lua_write_files(L, dir, 1, &n, &err) == 0);
    CHECK(n == 2);
    CHECK(lua_gettop(L) == 0);
    snprintf(p, sizeof p, "%s/a/b/c.txt", dir);
    CHECK_STR(read_text(p), "deep");
    /* no-clobber: one existing path fails the whole write, nothing changes */
    CHECK(luaL_dostring(L, "return { ['new.txt'] = 'new', ['top.txt'] = 'other' }") == LUA_OK);
    CHECK(tool_lua_write_files(L, dir, 1, &n, &err) == -1);
    CHECK(strstr(err.msg, "exists already") != NULL);
    snprintf(p, sizeof p, "%s/new.txt", dir);
    CHECK(access(p, F_OK) != 0);
    /* overwrite allowed */
    CHECK(luaL_dostring(L, "return { ['top.txt'] = 'other' }") == LUA_OK);
    CHECK(tool_lua_write_files(L, dir, 0, &n, &err) == 0);
    snprintf(p, sizeof p, "%s/top.txt", dir);
    CHECK_STR(read_text(p), "other");
    /* a name that leaves the folder is refused */
    CHECK(luaL_dostring(L, "return { ['../escape.txt'] = 'x' }") == LUA_OK);
    CHECK(tool_lua_write_files(L, dir, 0, &n, &err) == -1);
    snprintf(p, sizeof p, "%s/escape.txt", tmp);
    CHECK(access(p, F_OK) != 0);
    lua_close(L);
}

TEST(relative_paths_between_folders)
{
    char a[128], b[128], c[128];
    snprintf(a, sizeof a, "%s/x/y", tmp);
    snprintf(b, sizeof b, "%s/x/z/deploy", tmp);
    snprintf(c, sizeof c, "%s/x", tmp);
    char p[128];
    snprintf(p, sizeof p, "%s/x", tmp);
    mkdir(p, 0700);
    mkdir(a, 0700);
    snprintf(p, sizeof p, "%s/x/z", tmp);
    mkdir(p, 0700);
    mkdir(b, 0700);
    kl_err err = {0};
    char *r = klua_rel_path(a, b, &err);
    CHECK_STR(r, "../z/deploy");
    free(r);
    r = klua_rel_path(c, b, &err);
    CHECK_STR(r, "z/deploy");
    free(r);
    r = klua_rel_path(b, c, &err);
    CHECK_STR(r, "../..");
    free(r);
    r = klua_rel_path(a, a, &err);
    CHECK_STR(r, ".");
    free(r);
    CHECK(klua_rel_path("/nonexistent/q", a, &err) == NULL);
}

static const char *crd =
    "apiVersion: apiextensions.k8s.io/v1\n"
    "kind: CustomResourceDefinition\n"
    "metadata: {name: things.t.klua.dev}\n"
    "spec:\n"
    "  group: t.klua.dev\n"
    "  names: {kind: Thing, plural: things}\n"
    "  scope: Namespaced\n"
    "  versions:\n"
    "  - name: v1\n"
    "    served: true\n"
    "    storage: true\n"
    "    schema:\n"
    "      openAPIV3Schema:\n"
    "        type: object\n"
    "        properties:\n"
    "          spec:\n"
    "            type: object\n"
    "            required: [size]\n"
    "            properties:\n"
    "              size: {type: integer, description: \"How big,\\n  in units.\"}\n"
    "              mode: {type: string, enum: [Fast, Slow]}\n"
    "              labels: {type: object, additionalProperties: {type: string}}\n"
    "              ports:\n"
    "                type: array\n"
    "                items: {type: object, properties: {port: {type: integer}}}\n"
    "              port: {x-kubernetes-int-or-string: true}\n"
    "              x-extra: {type: boolean}\n"
    "              q: {oneOf: [{type: string}, {type: number}]}\n"
    "              pct: {type: string, format: int-or-string}\n"
    "              raw: {x-kubernetes-preserve-unknown-fields: true}\n"
    "              obj: {type: object}\n";

TEST(typegen_renders_a_crd_schema)
{
    char path[128];
    snprintf(path, sizeof path, "%s/thing.yaml", tmp);
    write_text(path, crd);
    kl_err err = {0};
    lua_State *L = tool_lua_new(&err);
    CHECK(luaL_dostring(L, "local tg = require 'klua.typegen'\n"
                           "local m = tg.new_model()\n"
                           "return function(docs) tg.add_crds(m, docs) return tg.render(m) end")
          == LUA_OK);
    CHECK(tool_lua_push_yaml_file(L, path, &err) == 0);
    CHECK(lua_pcall(L, 1, 1, 0) == LUA_OK);
    lua_getfield(L, -1, "t.klua.dev.lua");
    const char *g = lua_tostring(L, -1);
    CHECK(g != NULL);
    if (g) {
        CHECK(strstr(g, "---@class t.klua.dev.v1.Thing: klua.Object\n") != NULL);
        CHECK(strstr(g, "---@field spec? t.klua.dev.v1.Thing.spec\n") != NULL);
        CHECK(strstr(g, "---@field size integer # How big, in units.\n") != NULL);
        CHECK(strstr(g, "---@field mode? \"Fast\"|\"Slow\"\n") != NULL);
        CHECK(strstr(g, "---@field labels? table<string, string>\n") != NULL);
        CHECK(strstr(g, "---@field ports? t.klua.dev.v1.Thing.spec.ports.item[]\n") != NULL);
        CHECK(strstr(g, "---@class t.klua.dev.v1.Thing.spec.ports.item\n---@field port? integer\n")
              != NULL);
        CHECK(strstr(g, "---@field port? integer|string\n") != NULL);
        CHECK(strstr(g, "---@field [\"x-extra\"]? boolean\n") != NULL);
        CHECK(strstr(g, "---@field q? string|number\n") != NULL);
        CHECK(strstr(g, "---@field pct? integer|string\n") != NULL);
        CHECK(strstr(g, "---@field raw? any\n") != NULL);
        CHECK(strstr(g, "---@field obj? table<string, any>\n") != NULL);
    }
    lua_close(L);
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/klua-test-types-XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    RUN(yaml_documents_become_lua_values_typed_as_yaml_1_2_core);
    RUN(malformed_yaml_is_an_error_with_file_and_line);
    RUN(yaml_aliases_that_expand_without_end_are_refused);
    RUN(write_files_creates_folders_and_never_clobbers_when_told);
    RUN(relative_paths_between_folders);
    RUN(typegen_renders_a_crd_schema);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmp);
    DONE();
}
