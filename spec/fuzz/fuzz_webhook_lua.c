/* fuzz_webhook_lua.c - libFuzzer target for webhook reviews answered by Lua
 * handlers (webhook_lua): the first byte picks validate, mutate or convert,
 * the rest is the review body. The script's handlers read and change what
 * they get (nested tables, arrays, numbers, strings with '/' and '~' in
 * keys, removals), so every decoded request goes through klua.json to Lua
 * and back, and mutations through webhook_patch_diff. The answer must be a
 * JSON review with a response; a patch must decode from base64 and parse
 * as a JSON array. Uses: webhook_lua, webhook_review, lua_host, lua_ctx,
 * loop, json, OpenSSL (base64). Only the libFuzzer entry points are
 * exported. */
#include "json.h"
#include "loop.h"
#include "lua_ctx.h"
#include "lua_host.h"
#include "webhook_lua.h"
#include "webhook_review.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char script[] =
    "return {\n"
    "  watch = { apiVersion = 'github.klua.dev/v1', kind = 'Comment' },\n"
    "  reconcile = function() end,\n"
    "  validate = function(ctx, req)\n"
    "    local o = req.object or {}\n"
    "    local n = 0\n"
    "    for k, v in pairs(o) do\n"
    "      n = n + 1; req.warnings[#req.warnings + 1] = tostring(k)\n"
    "    end\n"
    "    if type(o.spec) == 'table' and o.spec.deny then return false, tostring(o.spec.deny) end\n"
    "    if type(o.spec) == 'table' and o.spec.error then error(o.spec.error) end\n"
    "    return n % 2 == 0\n"
    "  end,\n"
    "  mutate = function(ctx, req)\n"
    "    local o = req.object\n"
    "    if type(o) ~= 'table' then return end\n"
    "    o.metadata = type(o.metadata) == 'table' and o.metadata or {}\n"
    "    o.metadata.labels = type(o.metadata.labels) == 'table' and o.metadata.labels or {}\n"
    "    o.metadata.labels['a/b~c'] = 'x'\n"
    "    for k, v in pairs(o) do\n"
    "      if type(v) == 'number' then o[k] = v + 1\n"
    "      elseif type(v) == 'string' then o[k] = nil end\n"
    "    end\n"
    "    if type(o.spec) == 'table' then o.spec.list = { 1, 'two', { three = 3 } } end\n"
    "  end,\n"
    "  convert = function(ctx, obj, to)\n"
    "    if type(obj.spec) == 'table' then obj.spec.text, obj.spec.message = obj.spec.message, nil end\n"
    "    obj.apiVersion = nil\n"
    "    return obj\n"
    "  end,\n"
    "}\n";

static lua_host *host;
static loop *lp;
static lua_ctx_shared *shared;
static webhook_lua wl;

static int find(void *ud, const char *name, webhook_target *out)
{
    (void)ud;
    if (strcmp(name, "comment") != 0)
        return -1;
    memset(out, 0, sizeof *out);
    out->host = host;
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char path[] = "/tmp/klua-fuzz-webhook-XXXXXX.lua";
    int fd = mkstemps(path, 4);
    if (fd < 0 || write(fd, script, sizeof script - 1) != (ssize_t)(sizeof script - 1))
        abort();
    close(fd);
    kl_err err = {0};
    lua_host_opts o = {0};
    o.run_ms = 50;
    o.budget = 1000000;
    o.mem_limit = 32u << 20;
    if (!(host = lua_host_new(&o, &err)) || lua_host_load(host, path, &err) != 0) {
        fprintf(stderr, "load: %s\n", err.msg);
        abort();
    }
    unlink(path);
    lp = loop_new(&err);
    shared = lua_ctx_shared_new(lp, NULL, NULL, &err);
    if (!lp || !shared)
        abort();
    wl.shared = shared;
    wl.find = find;
    return 0;
}

static void check_patch(const json_doc *d)
{
    int p = json_path(d, 0, "response.patch");
    if (p < 0)
        return;
    char *b64 = json_str_dup(d, p);
    if (!b64)
        abort();
    size_t n = strlen(b64);
    unsigned char *raw = malloc(n + 1);
    int w = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)n);
    if (w < 0)
        abort();
    while (n > 0 && b64[n - 1] == '=') {
        n--;
        w--;
    }
    json_doc pd = {0};
    if (json_parse(&pd, (const char *)raw, (size_t)w, NULL) != 0 || pd.toks[0].type != JSON_ARRAY)
        abort();
    json_doc_free(&pd);
    free(raw);
    free(b64);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const paths[] = {"/validate/comment", "/mutate/comment",
                                        "/convert/comment", "/mutate/other"};
    if (size < 1)
        return 0;
    const char *path = paths[data[0] % 4];
    char *body = malloc(size);
    if (!body)
        return 0;
    memcpy(body, data + 1, size - 1);
    webhook_handlers h = webhook_lua_handlers(&wl);
    kl_buf out = KL_BUF_INIT;
    webhook_review_handle(&h, path, strlen(path), body, size - 1, &out);
    json_doc d = {0};
    if (json_parse(&d, out.data, out.len, NULL) != 0 || json_obj_get(&d, 0, "response") < 0)
        abort();
    check_patch(&d);
    json_doc_free(&d);
    kl_buf_free(&out);
    free(body);
    return 0;
}
