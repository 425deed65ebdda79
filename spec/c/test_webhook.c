/* test_webhook.c - webhooks: JSON Patch computation, review decoding and
 * answers, Lua handlers (validate, mutate, convert, limits, read-only
 * ctx), the declaration keys, and the HTTPS server end to end (TLS with
 * generated development certificates, keep-alive, bad requests,
 * certificate rotation).
 */
#include "harness.h"

#include "http.h"
#include "json.h"
#include "loop.h"
#include "metrics.h"
#include "lua_ctx.h"
#include "lua_host.h"
#include "webhook_dev.h"
#include "webhook_lua.h"
#include "webhook_patch.h"
#include "webhook_review.h"
#include "webhook_server.h"

#include <arpa/inet.h>
#include <lauxlib.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ---- */

static char *diff(const char *a, const char *b, size_t *nops)
{
    kl_buf out = KL_BUF_INIT;
    kl_err err = {0};
    if (webhook_patch_diff(a, strlen(a), b, strlen(b), &out, nops, &err) != 0) {
        printf("# diff: %s\n", err.msg);
        kl_buf_free(&out);
        return NULL;
    }
    return kl_buf_take(&out);
}

/* The string at dotted path of a JSON text, or "" (static buffer). */
static const char *jget(const char *js, const char *path)
{
    static char out[2048];
    json_doc d = {0};
    out[0] = '\0';
    if (js && json_parse(&d, js, strlen(js), NULL) == 0) {
        int t = json_path(&d, 0, path);
        size_t n = 0;
        const char *raw = t >= 0 ? json_raw(&d, t, &n) : NULL;
        if (raw && d.toks[t].type == JSON_STRING) {
            char *s = json_str_dup(&d, t);
            snprintf(out, sizeof out, "%s", s ? s : "");
            free(s);
        } else if (raw) {
            snprintf(out, sizeof out, "%.*s", (int)n, raw);
        }
    }
    json_doc_free(&d);
    return out;
}

static char *b64dec(const char *s)
{
    size_t n = strlen(s);
    unsigned char *out = malloc(n + 1);
    int w = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
    if (w < 0) {
        free(out);
        return NULL;
    }
    while (n > 0 && s[n - 1] == '=') {
        n--;
        w--;
    }
    out[w] = '\0';
    return (char *)out;
}

/* ---- JSON Patch ---- */

TEST(patch_changes_only_what_changed)
{
    size_t n = 9;
    char *p = diff("{\"a\":1,\"b\":{\"c\":\"x\",\"d\":[1,2]},\"gone\":true}",
                   "{\"b\":{\"d\":[1,2],\"c\":\"y\"},\"a\":1.0,\"new\":{\"k\":null}}", &n);
    CHECK_STR(p, "[{\"op\":\"replace\",\"path\":\"/b/c\",\"value\":\"y\"},"
                 "{\"op\":\"remove\",\"path\":\"/gone\"},"
                 "{\"op\":\"add\",\"path\":\"/new\",\"value\":{\"k\":null}}]");
    CHECK(n == 3);
    free(p);
    p = diff("{\"x\":[1,{\"a\":1}]}", "{ \"x\" : [1, {\"a\": 1}] }", &n);
    CHECK_STR(p, "[]");
    CHECK(n == 0);
    free(p);
    p = diff("{\"x\":[1,2,3]}", "{\"x\":[1,2]}", NULL);
    CHECK_STR(p, "[{\"op\":\"replace\",\"path\":\"/x\",\"value\":[1,2]}]");
    free(p);
    /* a null that went away through klua.json is no change */
    p = diff("{\"metadata\":{\"creationTimestamp\":null,\"name\":\"a\"}}",
             "{\"metadata\":{\"name\":\"a\"}}", &n);
    CHECK_STR(p, "[]");
    free(p);
    p = diff("{\"s\":\"caf\\u00e9\"}", "{\"s\":\"caf\xc3\xa9\"}", &n);
    CHECK_STR(p, "[]");
    free(p);
}

TEST(patch_paths_are_escaped)
{
    char *p = diff("{\"metadata\":{\"annotations\":{\"a/b\":\"1\"}}}",
                   "{\"metadata\":{\"annotations\":{\"a/b\":\"2\",\"x~y\":\"3\"}}}", NULL);
    CHECK_STR(p, "[{\"op\":\"replace\",\"path\":\"/metadata/annotations/a~1b\",\"value\":\"2\"},"
                 "{\"op\":\"add\",\"path\":\"/metadata/annotations/x~0y\",\"value\":\"3\"}]");
    free(p);
    p = diff("[1]", "{}", NULL);
    CHECK_STR(p, "[{\"op\":\"replace\",\"path\":\"\",\"value\":{}}]");
    free(p);
    kl_buf out = KL_BUF_INIT;
    kl_err err = {0};
    CHECK(webhook_patch_diff("{", 1, "{}", 2, &out, NULL, &err) == -1);
    CHECK(strncmp(err.msg, "from", 4) == 0);
    kl_buf_free(&out);
}

/* ---- reviews ---- */

typedef struct stub {
    int calls;
    webhook_op op;
    char name[64], kind[64], av[128], operation[32];
    int dry_run;
} stub;

static int stub_admit(void *ud, webhook_op op, const char *name, const webhook_admission *r,
                      webhook_verdict *v)
{
    stub *s = ud;
    s->calls++;
    s->op = op;
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->kind, sizeof s->kind, "%s", r->kind);
    snprintf(s->av, sizeof s->av, "%s", r->api_version);
    snprintf(s->operation, sizeof s->operation, "%s", r->operation);
    s->dry_run = r->dry_run;
    v->allowed = !strstr(r->object ? r->object : "", "bad");
    if (!v->allowed)
        v->message = strdup("it is \"bad\"");
    webhook_verdict_warn(v, "careful");
    if (op == WEBHOOK_MUTATE)
        v->patch = strdup("[{\"op\":\"add\",\"path\":\"/x\",\"value\":1}]");
    return 0;
}

static int stub_convert(void *ud, const char *name, const char *desired, const char *obj,
                        size_t len, kl_buf *out, char *msg, size_t msgsz)
{
    stub *s = ud;
    s->calls++;
    if (memmem(obj, len, "fail", 4)) {
        snprintf(msg, msgsz, "cannot convert that");
        return -1;
    }
    kl_buf_printf(out, "{\"apiVersion\":\"%s\"}", desired);
    return 0;
}

static char *review(stub *s, const char *path, const char *body, int *status)
{
    webhook_handlers h = {stub_admit, stub_convert, s};
    kl_buf out = KL_BUF_INIT;
    *status = webhook_review_handle(&h, path, strlen(path), body, body ? strlen(body) : 0, &out);
    return kl_buf_take(&out);
}

#define ADM(obj)                                                                              \
    "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":"      \
    "{\"uid\":\"u-1\",\"kind\":{\"group\":\"github.klua.dev\",\"version\":\"v1\",\"kind\":"  \
    "\"Comment\"},\"operation\":\"CREATE\",\"namespace\":\"ns\",\"name\":\"n\",\"dryRun\":" \
    "true,\"userInfo\":{\"username\":\"ada\"},\"object\":" obj ",\"oldObject\":null}}"

TEST(review_admission_routed_and_answered)
{
    stub s = {0};
    int st;
    char *r = review(&s, "/validate/comment", ADM("{\"spec\":\"bad\"}"), &st);
    CHECK(st == 200);
    CHECK(s.calls == 1 && s.op == WEBHOOK_VALIDATE);
    CHECK_STR(s.name, "comment");
    CHECK_STR(s.av, "github.klua.dev/v1");
    CHECK_STR(s.kind, "Comment");
    CHECK_STR(s.operation, "CREATE");
    CHECK(s.dry_run == 1);
    CHECK_STR(jget(r, "kind"), "AdmissionReview");
    CHECK_STR(jget(r, "response.uid"), "u-1");
    CHECK_STR(jget(r, "response.allowed"), "false");
    CHECK_STR(jget(r, "response.status.code"), "403");
    CHECK_STR(jget(r, "response.status.message"), "it is \"bad\"");
    CHECK_STR(jget(r, "response.warnings"), "[\"careful\"]");
    free(r);
    r = review(&s, "/mutate/comment", ADM("{\"spec\":\"good\"}"), &st);
    CHECK(s.op == WEBHOOK_MUTATE);
    CHECK_STR(jget(r, "response.allowed"), "true");
    CHECK_STR(jget(r, "response.patchType"), "JSONPatch");
    char *patch = b64dec(jget(r, "response.patch"));
    CHECK_STR(patch, "[{\"op\":\"add\",\"path\":\"/x\",\"value\":1}]");
    free(patch);
    free(r);
}

TEST(review_bad_requests_get_wellformed_errors)
{
    stub s = {0};
    int st;
    static const char *bodies[] = {
        "", "not json", "[]", "{\"apiVersion\":\"admission.k8s.io/v1beta1\",\"kind\":"
        "\"AdmissionReview\",\"request\":{}}",
        "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}",
        "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":"
        "{\"uid\":\"u-2\"}}",
        NULL};
    for (int i = 0; bodies[i]; i++) {
        char *r = review(&s, "/validate/comment", bodies[i], &st);
        CHECK(st == 400);
        CHECK_STR(jget(r, "apiVersion"), "admission.k8s.io/v1");
        CHECK_STR(jget(r, "response.allowed"), "false");
        CHECK_STR(jget(r, "response.status.code"), "400");
        CHECK(strlen(jget(r, "response.status.message")) > 10);
        if (i == 5)
            CHECK_STR(jget(r, "response.uid"), "u-2");
        free(r);
    }
    CHECK(s.calls == 0);
    char *r = review(&s, "/nope", ADM("{}"), &st);
    CHECK(st == 404);
    CHECK_STR(jget(r, "response.status.code"), "404");
    free(r);
    r = review(&s, "/validate/Bad%20Name", ADM("{}"), &st);
    CHECK(st == 404);
    free(r);
    r = review(&s, "/convert/comment", "{}", &st);
    CHECK(st == 400);
    CHECK_STR(jget(r, "kind"), "ConversionReview");
    CHECK_STR(jget(r, "response.result.status"), "Failure");
    free(r);
}

#define CONV(objs)                                                                            \
    "{\"apiVersion\":\"apiextensions.k8s.io/v1\",\"kind\":\"ConversionReview\",\"request\":"  \
    "{\"uid\":\"c-1\",\"desiredAPIVersion\":\"g/v2\",\"objects\":" objs "}}"

TEST(review_conversion)
{
    stub s = {0};
    int st;
    char *r = review(&s, "/convert/comment", CONV("[{\"a\":1},{\"b\":2}]"), &st);
    CHECK(st == 200);
    CHECK(s.calls == 2);
    CHECK_STR(jget(r, "response.uid"), "c-1");
    CHECK_STR(jget(r, "response.result.status"), "Success");
    CHECK_STR(jget(r, "response.convertedObjects"),
              "[{\"apiVersion\":\"g/v2\"},{\"apiVersion\":\"g/v2\"}]");
    free(r);
    r = review(&s, "/convert/comment", CONV("[{\"a\":1},{\"fail\":2}]"), &st);
    CHECK(st == 500);
    CHECK_STR(jget(r, "response.result.status"), "Failure");
    CHECK_STR(jget(r, "response.result.message"), "cannot convert that");
    CHECK_STR(jget(r, "response.convertedObjects"), "[]");
    free(r);
}

TEST(route)
{
    webhook_op op;
    char name[WEBHOOK_MAX_NAME];
    CHECK(webhook_route("/validate/a-b.c", 15, &op, name) == 0 && op == WEBHOOK_VALIDATE);
    CHECK_STR(name, "a-b.c");
    CHECK(webhook_route("/convert/x", 10, &op, name) == 0 && op == WEBHOOK_CONVERT);
    CHECK(webhook_route("/validate/", 10, &op, name) == -1);
    CHECK(webhook_route("/validate/A", 11, &op, name) == -1);
    CHECK(webhook_route("/validate/a/b", 13, &op, name) == -1);
}

/* ---- Lua handlers ---- */

static char tmpdir[64];

static const char *write_script(const char *name, const char *src)
{
    static char path[256];
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/klua-test-webhook-XXXXXX");
        if (!mkdtemp(tmpdir))
            return NULL;
    }
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return NULL;
    fputs(src, f);
    fclose(f);
    return path;
}

static const char script[] =
    "return {\n"
    "  watch = { apiVersion = 'github.klua.dev/v1', kind = 'Comment' },\n"
    "  reconcile = function(ctx, obj) end,\n"
    "  validate = function(ctx, req)\n"
    "    local spec = req.object.spec or {}\n"
    "    if spec.mode == 'loop' then while true do end end\n"
    "    if spec.mode == 'error' then error('boom') end\n"
    "    if spec.mode == 'write' then ctx:patch(req.object, {}) end\n"
    "    if spec.mode == 'wait' then ctx:sleep(1) end\n"
    "    if spec.mode == 'odd' then return 'yes' end\n"
    "    if spec.mode == 'event' then ctx:event(req.object, 'Normal', 'R', 'm') end\n"
    "    if spec.mode == 'http' then ctx:http({ url = 'http://127.0.0.1:1/' }) end\n"
    "    if spec.mode == 'unknown' then return ctx.no_such_method == nil, 'nil' end\n"
    "    if spec.mode == 'get' then\n"
    "      local o, err = ctx:get({ apiVersion = 'v1', kind = 'ConfigMap' }, 'ns', 'x')\n"
    "      return o == nil, 'got ' .. tostring(o)\n"
    "    end\n"
    "    table.insert(req.warnings, 'seen by ' .. ctx.controller)\n"
    "    if not spec.repository or not spec.repository:match('^[^/]+/[^/]+$') then\n"
    "      return false, 'spec.repository must be owner/name, got ' .. tostring(spec.repository)\n"
    "    end\n"
    "    return true\n"
    "  end,\n"
    "  mutate = function(ctx, req)\n"
    "    req.object.spec.deletionPolicy = req.object.spec.deletionPolicy or 'Retain'\n"
    "    req.object.metadata.labels = { ['a/b'] = req.userInfo.username }\n"
    "  end,\n"
    "  convert = function(ctx, obj, to)\n"
    "    if to == 'github.klua.dev/v1alpha1' then\n"
    "      obj.spec = { text = obj.spec.message }\n"
    "    else\n"
    "      obj.spec = { message = obj.spec.text }\n"
    "    end\n"
    "    obj.apiVersion = nil\n"
    "    return obj\n"
    "  end,\n"
    "}\n";

typedef struct fixture {
    lua_host *h;
    loop *l;
    lua_ctx_shared *shared;
    webhook_lua w;
} fixture;

static int find_one(void *ud, const char *name, webhook_target *out)
{
    fixture *f = ud;
    if (strcmp(name, "comment") != 0)
        return -1;
    memset(out, 0, sizeof *out);
    out->host = f->h;
    return 0;
}

static int fixture_open(fixture *f, const char *src)
{
    memset(f, 0, sizeof *f);
    kl_err err = {0};
    lua_host_opts o = {0};
    o.run_ms = 100;
    o.budget = 10000000;
    const char *p = write_script("comment.lua", src);
    f->h = lua_host_new(&o, &err);
    if (!p || !f->h || lua_host_load(f->h, p, &err) != 0) {
        printf("# load: %s\n", err.msg);
        return -1;
    }
    f->l = loop_new(&err);
    f->shared = lua_ctx_shared_new(f->l, NULL, NULL, &err);
    f->w.shared = f->shared;
    f->w.find = find_one;
    f->w.find_ud = f;
    return f->l && f->shared ? 0 : -1;
}

static void fixture_close(fixture *f)
{
    lua_host_free(f->h);
    lua_ctx_shared_free(f->shared);
    loop_free(f->l);
}

static char *lua_review(fixture *f, const char *path, const char *body)
{
    webhook_handlers h = webhook_lua_handlers(&f->w);
    kl_buf out = KL_BUF_INIT;
    webhook_review_handle(&h, path, strlen(path), body, strlen(body), &out);
    return kl_buf_take(&out);
}

#define COMMENT(spec)                                                                        \
    ADM("{\"apiVersion\":\"github.klua.dev/v1\",\"kind\":\"Comment\",\"metadata\":{\"name\":" \
        "\"n\"},\"spec\":" spec "}")

TEST(lua_validate)
{
    fixture f;
    CHECK(fixture_open(&f, script) == 0);
    char *r = lua_review(&f, "/validate/comment", COMMENT("{\"repository\":\"nope\"}"));
    CHECK_STR(jget(r, "response.allowed"), "false");
    CHECK_STR(jget(r, "response.status.code"), "403");
    CHECK_STR(jget(r, "response.status.message"), "spec.repository must be owner/name, got nope");
    CHECK_STR(jget(r, "response.warnings"), "[\"seen by comment\"]");
    free(r);
    r = lua_review(&f, "/validate/comment", COMMENT("{\"repository\":\"a/b\"}"));
    CHECK_STR(jget(r, "response.allowed"), "true");
    free(r);
    r = lua_review(&f, "/validate/other", COMMENT("{}"));
    CHECK_STR(jget(r, "response.allowed"), "false");
    CHECK(strstr(jget(r, "response.status.message"), "no controller named \"other\""));
    free(r);
    /* the script watches v1 Comments: another kind is refused, not handled */
    r = lua_review(&f, "/validate/comment",
                   "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\","
                   "\"request\":{\"uid\":\"u\",\"kind\":{\"group\":\"\",\"version\":\"v1\","
                   "\"kind\":\"Pod\"},\"operation\":\"CREATE\",\"object\":{}}}");
    CHECK_STR(jget(r, "response.status.code"), "400");
    CHECK(strstr(jget(r, "response.status.message"), "handles github.klua.dev/v1 Comment"));
    free(r);
    fixture_close(&f);
}

TEST(lua_handler_failures_deny_and_the_host_goes_on)
{
    fixture f;
    CHECK(fixture_open(&f, script) == 0);
    static const struct {
        const char *mode, *want;
    } cases[] = {
        {"loop", "comment.lua:6"},
        {"error", "comment.lua:7: boom"},
        {"write", "comment.lua:8: webhook handlers cannot write (ctx:patch)"},
        {"wait", "comment.lua:9: webhook handlers cannot wait (ctx:sleep)"},
        {"odd", "validate returned string; return true, or false and a message"},
        {"event", "comment.lua:11: webhook handlers cannot write (ctx:event)"},
        {"http", "comment.lua:12: webhook handlers cannot wait (ctx:http)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[1024];
        snprintf(body, sizeof body, COMMENT("{\"mode\":\"%s\"}"), cases[i].mode);
        uint64_t t0 = loop_time_ms();
        char *r = lua_review(&f, "/validate/comment", body);
        uint64_t ms = loop_time_ms() - t0;
        const char *msg = jget(r, "response.status.message");
        if (!strstr(msg, cases[i].want))
            printf("# %s: %s\n", cases[i].mode, msg);
        CHECK(strstr(msg, cases[i].want) != NULL);
        CHECK_STR(jget(r, "response.allowed"), "false");
        CHECK_STR(jget(r, "response.status.code"), "500");
        CHECK(ms < 5000);   /* the loop is cut by the 100 ms CPU deadline */
        free(r);
    }
    /* still serving after all that */
    char *r = lua_review(&f, "/validate/comment", COMMENT("{\"repository\":\"a/b\"}"));
    CHECK_STR(jget(r, "response.allowed"), "true");
    free(r);
    r = lua_review(&f, "/validate/comment", COMMENT("{\"mode\":\"unknown\"}"));
    CHECK_STR(jget(r, "response.allowed"), "true");
    free(r);
    /* reads pass through (no API server here: nil, err) */
    r = lua_review(&f, "/validate/comment", COMMENT("{\"mode\":\"get\"}"));
    CHECK_STR(jget(r, "response.allowed"), "true");
    free(r);
    fixture_close(&f);
}

TEST(lua_mutate_sends_a_patch)
{
    fixture f;
    CHECK(fixture_open(&f, script) == 0);
    char *r = lua_review(&f, "/mutate/comment", COMMENT("{\"message\":\"hi\"}"));
    CHECK_STR(jget(r, "response.allowed"), "true");
    char *patch = b64dec(jget(r, "response.patch"));
    CHECK_STR(patch, "[{\"op\":\"add\",\"path\":\"/metadata/labels\",\"value\":{\"a/b\":"
                     "\"ada\"}},{\"op\":\"add\",\"path\":\"/spec/deletionPolicy\",\"value\":"
                     "\"Retain\"}]");
    free(patch);
    free(r);
    fixture_close(&f);
}

TEST(lua_convert)
{
    fixture f;
    CHECK(fixture_open(&f, script) == 0);
    webhook_handlers h = webhook_lua_handlers(&f.w);
    static const char body[] =
        "{\"apiVersion\":\"apiextensions.k8s.io/v1\",\"kind\":\"ConversionReview\",\"request\":"
        "{\"uid\":\"c\",\"desiredAPIVersion\":\"github.klua.dev/v1alpha1\",\"objects\":"
        "[{\"apiVersion\":\"github.klua.dev/v1\",\"kind\":\"Comment\",\"metadata\":{\"name\":"
        "\"n\"},\"spec\":{\"message\":\"hello\"}}]}}";
    kl_buf out = KL_BUF_INIT;
    CHECK(webhook_review_handle(&h, "/convert/comment", 16, body, sizeof body - 1, &out) == 200);
    char *r = kl_buf_take(&out);
    CHECK_STR(jget(r, "response.result.status"), "Success");
    char *obj = strdup(jget(r, "response.convertedObjects"));
    CHECK(obj[0] == '[');
    char *one = obj + 1;
    one[strlen(one) - 1] = '\0';
    CHECK_STR(jget(one, "apiVersion"), "github.klua.dev/v1alpha1");
    CHECK_STR(jget(one, "kind"), "Comment");
    CHECK_STR(jget(one, "metadata.name"), "n");
    CHECK_STR(jget(one, "spec"), "{\"text\":\"hello\"}");
    free(obj);
    free(r);
    /* another kind is not this script's to convert */
    static const char pods[] =
        "{\"apiVersion\":\"apiextensions.k8s.io/v1\",\"kind\":\"ConversionReview\",\"request\":"
        "{\"uid\":\"c\",\"desiredAPIVersion\":\"github.klua.dev/v1alpha1\",\"objects\":"
        "[{\"apiVersion\":\"other.dev/v1\",\"kind\":\"Comment\",\"spec\":{}}]}}";
    CHECK(webhook_review_handle(&h, "/convert/comment", 16, pods, sizeof pods - 1, &out) == 500);
    r = kl_buf_take(&out);
    CHECK_STR(jget(r, "response.result.message"), "controller comment converts "
              "github.klua.dev/v1 Comment (any version), not other.dev/v1 Comment");
    free(r);
    fixture_close(&f);
}

TEST(decl_webhook_keys)
{
    kl_err err = {0};
    lua_host *h = lua_host_new(NULL, &err);
    const char *p = write_script("bad.lua", "return {\n watch = { apiVersion = 'v1', kind = "
                                            "'ConfigMap' },\n reconcile = function() end,\n"
                                            " validate = 5,\n}\n");
    CHECK(lua_host_load(h, p, &err) == -1);
    CHECK(strstr(err.msg, "bad.lua:4: validate must be a function(ctx, req)") != NULL);
    lua_host_free(h);
    h = lua_host_new(NULL, &err);
    p = write_script("typo.lua", "return {\n watch = { apiVersion = 'v1', kind = 'ConfigMap' },"
                                 "\n reconcile = function() end,\n mutat = function() end,\n}\n");
    CHECK(lua_host_load(h, p, &err) == -1);
    CHECK(strstr(err.msg, "typo.lua:4: unknown field \"mutat\"") != NULL);
    CHECK(strstr(err.msg, "did you mean \"mutate\"") != NULL);
    lua_host_free(h);
    h = lua_host_new(NULL, &err);
    p = write_script("ok.lua", script);
    CHECK(lua_host_load(h, p, &err) == 0);
    const lua_controller_decl *d = lua_host_decl(h);
    CHECK(d->validate_ref != LUA_NOREF && d->mutate_ref != LUA_NOREF &&
          d->convert_ref != LUA_NOREF);
    lua_host_free(h);
}

/* ---- development mode: the configuration ---- */

static const kube_resource comments_res = {"github.klua.dev", "v1", "comments", "Comment", 1, 1};

static const store *fake_lookup(void *ud, const char *api_version, const char *kind,
                                const kube_resource **res)
{
    (void)ud;
    if (!strcmp(api_version, "github.klua.dev/v1") && !strcmp(kind, "Comment"))
        *res = &comments_res;
    return NULL;
}

static int resolved = 1;

static void each_one(void *ud, webhook_visit_fn visit, void *visit_ud)
{
    fixture *f = ud;
    webhook_target t = {f->h, {resolved ? fake_lookup : NULL, NULL, NULL}};
    visit(visit_ud, "comment", &t);
}

TEST(dev_render)
{
    fixture f;
    CHECK(fixture_open(&f, script) == 0);
    webhook_dev_opts o = {"https://127.0.0.1:9443", "-----BEGIN CERTIFICATE-----\nx\n", "team-a",
                          each_one, &f};
    kl_buf v = KL_BUF_INIT, m = KL_BUF_INIT, c = KL_BUF_INIT;
    int pending = 1;
    CHECK(webhook_dev_render(&o, &v, &m, &c, &pending) == 1);
    CHECK(pending == 0);
    CHECK_STR(jget(v.data, "kind"), "ValidatingWebhookConfiguration");
    CHECK_STR(jget(v.data, "metadata.name"), "klua-dev");
    char *hooks = strdup(jget(v.data, "webhooks"));
    char *one = hooks + 1;
    one[strlen(one) - 1] = '\0';
    CHECK_STR(jget(one, "name"), "comment.validate.klua.dev");
    CHECK_STR(jget(one, "clientConfig.url"), "https://127.0.0.1:9443/validate/comment");
    CHECK_STR(jget(one, "failurePolicy"), "Fail");
    CHECK_STR(jget(one, "namespaceSelector.matchLabels"),
              "{\"kubernetes.io/metadata.name\":\"team-a\"}");
    CHECK(strstr(one, "\"resources\":[\"comments\"]") && strstr(one, "\"apiVersions\":[\"v1\"]"));
    free(hooks);
    CHECK(strstr(m.data, "\"url\":\"https://127.0.0.1:9443/mutate/comment\"") != NULL);
    CHECK(strncmp(c.data, "comments.github.klua.dev\n{", 26) == 0);
    CHECK(strstr(c.data, "\"url\":\"https://127.0.0.1:9443/convert/comment\"") != NULL);
    kl_buf_free(&v);
    kl_buf_free(&m);
    kl_buf_free(&c);
    /* not resolved yet: nothing to install, try later */
    resolved = 0;
    CHECK(webhook_dev_render(&o, &v, &m, &c, &pending) == 0);
    CHECK(pending == 1);
    resolved = 1;
    kl_buf_free(&v);
    kl_buf_free(&m);
    kl_buf_free(&c);
    fixture_close(&f);
}

/* ---- the HTTPS server ---- */

typedef struct client {
    int done;
    long status;
    char body[4096];
    char err[256];
} client;

static void on_done(void *ud, http_response *r)
{
    client *c = ud;
    c->done = 1;
    c->status = r->status;
    snprintf(c->err, sizeof c->err, "%s", r->error);
    snprintf(c->body, sizeof c->body, "%.*s", (int)r->body.len, r->body.data ? r->body.data : "");
}

static void post(loop *l, http_client *hc, int port, const char *ca, const char *method,
                 const char *path, const char *body, client *c)
{
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%d%s", port, path);
    http_tls tls = {0};
    tls.ca_file = ca;
    http_request_opts o = {0};
    o.method = method;
    o.url = url;
    o.body = body;
    o.body_len = body ? strlen(body) : 0;
    o.timeout_ms = 10000;
    o.tls = &tls;
    o.on_done = on_done;
    o.ud = c;
    memset(c, 0, sizeof *c);
    kl_err err = {0};
    if (!http_start(hc, &o, &err)) {
        printf("# http_start: %s\n", err.msg);
        return;
    }
    uint64_t end = loop_time_ms() + 15000;
    while (!c->done && loop_time_ms() < end)
        loop_run_once(l, 100);
}

static char certdir[64];

TEST(server_serves_reviews_over_tls)
{
    fixture f;
    CHECK(fixture_open(&f, script) == 0);
    snprintf(certdir, sizeof certdir, "/tmp/klua-test-certs-XXXXXX");
    CHECK(mkdtemp(certdir) != NULL);
    kl_buf ca = KL_BUF_INIT;
    kl_err err = {0};
    CHECK(webhook_dev_certs(certdir, &ca, &err) == 0);
    CHECK(ca.len > 100 && strstr(ca.data, "BEGIN CERTIFICATE"));
    struct stat st;
    char p[128];
    snprintf(p, sizeof p, "%s/tls.key", certdir);
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600);
    webhook_server_opts o = {0};
    o.addr = "127.0.0.1:0";
    o.cert_dir = certdir;
    o.handlers = webhook_lua_handlers(&f.w);
    o.max_conns = 4;
    webhook_server *s = webhook_server_start(f.l, &o, &err);
    CHECK(s != NULL);
    if (!s) {
        printf("# %s\n", err.msg);
        fixture_close(&f);
        return;
    }
    http_client *hc = http_client_new(f.l, &err);
    char cafile[128];
    snprintf(cafile, sizeof cafile, "%s/ca.crt", certdir);
    client c;
    post(f.l, hc, webhook_server_port(s), cafile, "POST", "/validate/comment",
         COMMENT("{\"repository\":\"x\"}"), &c);
    if (c.err[0])
        printf("# %s\n", c.err);
    CHECK(c.status == 200);
    CHECK_STR(jget(c.body, "response.allowed"), "false");
    CHECK_STR(jget(c.body, "response.uid"), "u-1");
    /* keep-alive: the second request reuses the connection */
    post(f.l, hc, webhook_server_port(s), cafile, "POST", "/validate/comment",
         COMMENT("{\"repository\":\"a/b\"}"), &c);
    CHECK_STR(jget(c.body, "response.allowed"), "true");
    CHECK(webhook_server_requests(s) == 2);
    {
        const char *tv[] = {"200", "/validate/comment"}, *lv[] = {"/validate/comment"};
        metrics_registry *reg = metrics_default();
        CHECK(metrics_value(metrics_find(reg, "controller_runtime_webhook_requests_total"), tv) ==
              2);
        CHECK(metrics_value(metrics_find(reg, "controller_runtime_webhook_latency_seconds"),
                            lv) == 2);
    }
    post(f.l, hc, webhook_server_port(s), cafile, "GET", "/validate/comment", NULL, &c);
    CHECK(c.status == 405);
    post(f.l, hc, webhook_server_port(s), cafile, "POST", "/validate/comment", "{", &c);
    CHECK(c.status == 200);
    CHECK_STR(jget(c.body, "response.status.code"), "400");

    /* rotation: new files (another CA) are used by new connections */
    kl_buf ca2 = KL_BUF_INIT;
    CHECK(webhook_dev_certs(certdir, &ca2, &err) == 0);
    CHECK(strcmp(ca.data, ca2.data) != 0);
    http_client_free(hc);   /* drop the kept-alive connection */
    uint64_t end = loop_time_ms() + 3000;
    while (webhook_server_connections(s) > 0 && loop_time_ms() < end)
        loop_run_once(f.l, 50);
    hc = http_client_new(f.l, &err);
    /* the check runs at most once a second: retry until the new CA verifies */
    end = loop_time_ms() + 5000;
    do {
        post(f.l, hc, webhook_server_port(s), cafile, "POST", "/validate/comment",
             COMMENT("{\"repository\":\"a/b\"}"), &c);
    } while (c.status != 200 && loop_time_ms() < end);
    CHECK(c.status == 200);
    http_client_free(hc);
    webhook_server_free(s);
    kl_buf_free(&ca);
    kl_buf_free(&ca2);
    fixture_close(&f);
}

TEST(server_binds_every_interface)
{
    fixture f;
    CHECK(fixture_open(&f, script) == 0);
    kl_err err = {0};
    webhook_server_opts o = {0};
    o.addr = ":0";
    o.cert_dir = certdir;
    o.handlers = webhook_lua_handlers(&f.w);
    webhook_server *s = webhook_server_start(f.l, &o, &err);
    CHECK(s != NULL && webhook_server_port(s) > 0);
    http_client *hc = http_client_new(f.l, &err);
    char cafile[128];
    snprintf(cafile, sizeof cafile, "%s/ca.crt", certdir);
    client c;
    post(f.l, hc, webhook_server_port(s), cafile, "POST", "/validate/comment",
         COMMENT("{\"repository\":\"a/b\"}"), &c);   /* IPv4, through the wildcard */
    CHECK(c.status == 200);
    CHECK_STR(jget(c.body, "response.allowed"), "true");
    http_client_free(hc);
    webhook_server_free(s);
    o.addr = "127.0.0.1";
    CHECK(webhook_server_start(f.l, &o, &err) == NULL);
    CHECK(strstr(err.msg, "want host:port or :port") != NULL);
    fixture_close(&f);
}

/* A client that sends a conversion with a large object, reads the start of
 * the answer and resets the connection while the server is still writing
 * (a webhook call the API server gave up on). */
typedef struct leaver_args {
    int port;
    int done;
} leaver_args;

static void *leaver(void *ud)
{
    leaver_args *a = ud;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)a->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && SSL_set_fd(ssl, fd) == 1 &&
        SSL_connect(ssl) == 1) {
        size_t big = 3u << 20;
        kl_buf body = KL_BUF_INIT;
        kl_buf_puts(&body, "{\"apiVersion\":\"apiextensions.k8s.io/v1\",\"kind\":"
                           "\"ConversionReview\",\"request\":{\"uid\":\"c\","
                           "\"desiredAPIVersion\":\"g/v2\",\"objects\":[{\"s\":\"");
        kl_buf_reserve(&body, big);
        memset(body.data + body.len, 'x', big);
        body.len += big;
        kl_buf_puts(&body, "\"}]}}");
        char head[256];
        int hn = snprintf(head, sizeof head, "POST /convert/echo HTTP/1.1\r\nHost: x\r\n"
                                             "Content-Length: %zu\r\n\r\n", body.len);
        SSL_write(ssl, head, hn);
        SSL_write(ssl, body.data, (int)body.len);
        char one[1024];
        SSL_read(ssl, one, sizeof one);
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        kl_buf_free(&body);
    }
    close(fd);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    __atomic_store_n(&a->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static int echo_convert(void *ud, const char *name, const char *desired, const char *obj,
                        size_t len, kl_buf *out, char *msg, size_t msgsz)
{
    (void)ud;
    (void)name;
    (void)desired;
    (void)msg;
    (void)msgsz;
    return kl_buf_append(out, obj, len);
}

TEST(server_survives_a_client_that_leaves_mid_answer)
{
    kl_err err = {0};
    loop *l = loop_new(&err);
    webhook_server_opts o = {0};
    o.addr = "127.0.0.1:0";
    o.cert_dir = certdir;
    o.handlers.convert = echo_convert;
    webhook_server *s = webhook_server_start(l, &o, &err);
    CHECK(s != NULL);
    if (!s) {
        loop_free(l);
        return;
    }
    for (int round = 0; round < 3; round++) {
        leaver_args a = {webhook_server_port(s), 0};
        pthread_t t;
        CHECK(pthread_create(&t, NULL, leaver, &a) == 0);
        uint64_t end = loop_time_ms() + 20000;
        while ((!__atomic_load_n(&a.done, __ATOMIC_SEQ_CST) || webhook_server_connections(s)) &&
               loop_time_ms() < end)
            loop_run_once(l, 20);
        pthread_join(t, NULL);
        CHECK(webhook_server_connections(s) == 0);
    }
    CHECK(webhook_server_requests(s) == 3);
    webhook_server_free(s);
    loop_free(l);
}

static void remove_dir(const char *dir, const char *const *files)
{
    char p[256];
    for (; dir[0] && *files; files++) {
        snprintf(p, sizeof p, "%s/%s", dir, *files);
        unlink(p);
    }
    if (dir[0])
        rmdir(dir);
}

int main(void)
{
    RUN(patch_changes_only_what_changed);
    RUN(patch_paths_are_escaped);
    RUN(review_admission_routed_and_answered);
    RUN(review_bad_requests_get_wellformed_errors);
    RUN(review_conversion);
    RUN(route);
    RUN(lua_validate);
    RUN(lua_handler_failures_deny_and_the_host_goes_on);
    RUN(lua_mutate_sends_a_patch);
    RUN(lua_convert);
    RUN(decl_webhook_keys);
    RUN(dev_render);
    RUN(server_serves_reviews_over_tls);
    RUN(server_binds_every_interface);
    RUN(server_survives_a_client_that_leaves_mid_answer);
    static const char *const scripts[] = {"comment.lua", "bad.lua", "typo.lua", "ok.lua", NULL};
    static const char *const certs[] = {"tls.crt", "tls.key", "ca.crt", NULL};
    remove_dir(tmpdir, scripts);
    remove_dir(certdir, certs);
    metrics_default_free();
    DONE();
}
