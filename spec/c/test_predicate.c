/* test_predicate.c - which updates pass a declared predicate: the built-in
 * filters compare old and new structurally; a Lua predicate and a map
 * function run in the script's state, and their failures are reported. */
#include "harness.h"
#include "lua_host.h"
#include "predicate.h"
#include "store.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static store_obj *obj(const char *json)
{
    kl_err err;
    store_obj *o = store_obj_new(json, strlen(json), &err);
    if (!o)
        printf("# store_obj_new: %s\n", err.msg);
    return o;
}

#define BASE_MD "\"name\":\"a\",\"namespace\":\"ns\",\"uid\":\"u\",\"generation\":1"

static int passes(unsigned bits, const char *a, const char *b)
{
    store_obj *o = obj(a), *n = obj(b);
    lua_predicate p = {bits, LUA_NOREF};
    kl_err err = {0};
    int r = o && n ? predicate_passes(NULL, &p, o, n, &err) : -1;
    store_obj_free(o);
    store_obj_free(n);
    return r;
}

TEST(changed_ignores_status_resource_version_and_managed_fields)
{
    const char *a = "{\"metadata\":{" BASE_MD ",\"resourceVersion\":\"1\",\"managedFields\":[1]},"
                    "\"spec\":{\"x\":1,\"y\":[1,2]},\"status\":{\"s\":1}}";
    const char *status = "{\"status\":{\"s\":2},\"spec\":{\"y\":[1,2],\"x\":1},"
                         "\"metadata\":{\"managedFields\":[2]," BASE_MD ",\"resourceVersion\":\"2\"}}";
    const char *spec = "{\"metadata\":{" BASE_MD ",\"resourceVersion\":\"3\"},"
                       "\"spec\":{\"x\":2,\"y\":[1,2]},\"status\":{\"s\":1}}";
    const char *label = "{\"metadata\":{" BASE_MD ",\"resourceVersion\":\"4\",\"managedFields\":[1],"
                        "\"labels\":{\"a\":\"b\"}},\"spec\":{\"x\":1,\"y\":[1,2]},\"status\":{\"s\":1}}";
    const char *extra = "{\"metadata\":{" BASE_MD ",\"resourceVersion\":\"5\",\"managedFields\":[1]},"
                        "\"spec\":{\"x\":1,\"y\":[1,2]},\"status\":{\"s\":1},\"data\":{}}";
    CHECK(passes(LUA_PRED_CHANGED, a, status) == 0);   /* member order does not matter */
    CHECK(passes(LUA_PRED_CHANGED, a, spec) == 1);
    CHECK(passes(LUA_PRED_CHANGED, a, label) == 1);
    CHECK(passes(LUA_PRED_CHANGED, a, extra) == 1);    /* a member only the new one has */
    CHECK(passes(LUA_PRED_CHANGED, extra, a) == 1);    /* and only the old one */
    CHECK(passes(LUA_PRED_ANY, a, status) == 1);
}

TEST(generation_labels_annotations)
{
    const char *a = "{\"metadata\":{" BASE_MD ",\"labels\":{\"k\":\"v\"}}}";
    const char *gen = "{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\",\"uid\":\"u\","
                      "\"generation\":2,\"labels\":{\"k\":\"v\"}}}";
    const char *fin = "{\"metadata\":{" BASE_MD ",\"labels\":{\"k\":\"v\"},\"finalizers\":[\"f\"]}}";
    const char *del = "{\"metadata\":{" BASE_MD ",\"labels\":{\"k\":\"v\"},"
                      "\"deletionTimestamp\":\"2026-01-01T00:00:00Z\"}}";
    const char *lab = "{\"metadata\":{" BASE_MD ",\"labels\":{\"k\":\"w\"}}}";
    const char *ann = "{\"metadata\":{" BASE_MD ",\"labels\":{\"k\":\"v\"},"
                      "\"annotations\":{\"n\":\"1\"}}}";
    CHECK(passes(LUA_PRED_GENERATION, a, gen) == 1);
    CHECK(passes(LUA_PRED_GENERATION, a, fin) == 1);
    CHECK(passes(LUA_PRED_GENERATION, a, del) == 1);
    CHECK(passes(LUA_PRED_GENERATION, a, lab) == 0);
    CHECK(passes(LUA_PRED_LABELS, a, lab) == 1);
    CHECK(passes(LUA_PRED_LABELS, a, ann) == 0);
    CHECK(passes(LUA_PRED_ANNOTATIONS, a, ann) == 1);
    CHECK(passes(LUA_PRED_LABELS | LUA_PRED_ANNOTATIONS, a, ann) == 1);
    CHECK(passes(LUA_PRED_LABELS | LUA_PRED_ANNOTATIONS, a, gen) == 0);
}

/* A script in a temporary folder, loaded into a host. */
static lua_host *load(const char *src, char *path, size_t pathsz)
{
    char dir[] = "/tmp/klua-test-predicate-XXXXXX";
    if (!mkdtemp(dir))
        return NULL;
    snprintf(path, pathsz, "%s/p.lua", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return NULL;
    fputs(src, f);
    fclose(f);
    kl_err err = {0};
    lua_host *h = lua_host_new(NULL, &err);
    if (h && lua_host_load(h, path, &err) != 0) {
        printf("# load: %s\n", err.msg);
        lua_host_free(h);
        h = NULL;
    }
    return h;
}

static void unload(lua_host *h, const char *path)
{
    lua_host_free(h);
    unlink(path);
    char dir[256];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = 0;
    rmdir(dir);
}

static char keys[256];
static void collect(void *ud, const char *key)
{
    (void)ud;
    strncat(keys, key, sizeof keys - strlen(keys) - 2);
    strcat(keys, ";");
}

TEST(lua_predicate_and_map)
{
    char path[256];
    lua_host *h = load("return {\n"
                       "  watch = { apiVersion = 'v1', kind = 'ConfigMap',\n"
                       "    predicate = function(old, new) return old.data.x ~= new.data.x end },\n"
                       "  watches = {\n"
                       "    { apiVersion = 'v1', kind = 'Secret', map = function(o)\n"
                       "        return { o.metadata.namespace .. '/' .. o.data.x, 'ns/b' } end },\n"
                       "    { apiVersion = 'v1', kind = 'Pod', map = function(o) error('boom') end },\n"
                       "  },\n"
                       "  reconcile = function() end,\n"
                       "}\n", path, sizeof path);
    CHECK(h != NULL);
    if (!h)
        return;
    const lua_controller_decl *d = lua_host_decl(h);
    store_obj *a = obj("{\"metadata\":{" BASE_MD "},\"data\":{\"x\":\"1\"}}");
    store_obj *b = obj("{\"metadata\":{" BASE_MD "},\"data\":{\"x\":\"2\"}}");
    kl_err err = {0};
    CHECK(predicate_passes(h, &d->watch.predicate, a, a, &err) == 0 && !err.msg[0]);
    CHECK(predicate_passes(h, &d->watch.predicate, a, b, &err) == 1 && !err.msg[0]);
    keys[0] = 0;
    CHECK(predicate_map(h, d->watches[0].map_ref, b, collect, NULL, &err) == 2);
    CHECK_STR(keys, "ns/2;ns/b;");
    keys[0] = 0;
    CHECK(predicate_map(h, d->watches[1].map_ref, b, collect, NULL, &err) == -1);
    CHECK(strstr(err.msg, "p.lua:7: boom") != NULL);
    CHECK_STR(keys, "");
    store_obj_free(a);
    store_obj_free(b);
    unload(h, path);
}

int main(void)
{
    RUN(changed_ignores_status_resource_version_and_managed_fields);
    RUN(generation_labels_annotations);
    RUN(lua_predicate_and_map);
    DONE();
}
