/* test_kube.c - unit tests of the transport (kube.c), request building
 * (rest.c) and exec credential plugins (execcred.c) that need no API server.
 * Run from the repository root (the exec plugin fixtures are found by a
 * relative path: spec/support/execplugin-fixtures). */
#include "harness.h"

#include "execcred.h"
#include "http.h"
#include "kube.h"
#include "loop.h"
#include "rest.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIX "spec/support/execplugin-fixtures/"

TEST(retry_after_parsing)
{
    CHECK(kube_retry_after_ms("5", 0) == 5000);
    CHECK(kube_retry_after_ms(" 0 ", 0) == 0);
    CHECK(kube_retry_after_ms("120", 0) == 60000);          /* capped */
    CHECK(kube_retry_after_ms("soon", 0) == -1);
    CHECK(kube_retry_after_ms("5s", 0) == -1);
    CHECK(kube_retry_after_ms("", 0) == -1);
    CHECK(kube_retry_after_ms(NULL, 0) == -1);
    /* HTTP-date form: Wed, 21 Oct 2015 07:28:00 GMT is 1445412480. */
    CHECK(kube_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480L - 7) == 7000);
    CHECK(kube_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480L + 100) == 0);
}

TEST(retry_policy)
{
    /* Refused or unresolvable: the server never saw it, any verb may repeat. */
    CHECK(kube_retryable("POST", CURLE_COULDNT_CONNECT, 0, 0));
    CHECK(kube_retryable("DELETE", CURLE_COULDNT_RESOLVE_HOST, 0, 0));
    /* A reset or timeout may have been after the server acted: GET only. */
    CHECK(kube_retryable("GET", CURLE_RECV_ERROR, 0, 0));
    CHECK(!kube_retryable("POST", CURLE_RECV_ERROR, 0, 0));
    CHECK(!kube_retryable("PUT", CURLE_OPERATION_TIMEDOUT, 0, 0));
    /* Certificate trouble never fixes itself. */
    CHECK(!kube_retryable("GET", CURLE_PEER_FAILED_VERIFICATION, 0, 0));
    /* Throttling and server errors. */
    CHECK(kube_retryable("GET", 0, 429, 0));
    CHECK(kube_retryable("GET", 0, 503, 0));
    CHECK(!kube_retryable("POST", 0, 503, 0));
    CHECK(kube_retryable("POST", 0, 429, 1));
    CHECK(kube_retryable("PATCH", 0, 500, 1));
    CHECK(!kube_retryable("GET", 0, 501, 0));
    CHECK(!kube_retryable("GET", 0, 404, 1));
    CHECK(!kube_retryable("GET", 0, 409, 0));
}

TEST(backoff_grows_with_jitter_and_cap)
{
    for (int i = 0; i < 50; i++) {
        uint64_t a0 = kube_backoff_ms(0), a3 = kube_backoff_ms(3), a30 = kube_backoff_ms(30);
        CHECK(a0 >= 200 && a0 <= 300);
        CHECK(a3 >= 1600 && a3 <= 2400);
        CHECK(a30 == 10000);
    }
    int differ = 0;
    uint64_t first = kube_backoff_ms(4);
    for (int i = 0; i < 20; i++)
        differ |= kube_backoff_ms(4) != first;
    CHECK(differ);   /* jitter */
}

TEST(token_bucket)
{
    kube_bucket b;
    kube_bucket_init(&b, 10, 2, 1000);
    CHECK(kube_bucket_reserve(&b, 1000) == 0);   /* burst */
    CHECK(kube_bucket_reserve(&b, 1000) == 0);
    CHECK(kube_bucket_reserve(&b, 1000) == 100);  /* then qps apart, in order */
    CHECK(kube_bucket_reserve(&b, 1000) == 200);
    CHECK(kube_bucket_reserve(&b, 1050) == 250);
    /* A quiet second refills at most burst tokens. */
    CHECK(kube_bucket_reserve(&b, 5000) == 0);
    CHECK(kube_bucket_reserve(&b, 5000) == 0);
    CHECK(kube_bucket_reserve(&b, 5000) == 100);
    kube_bucket_init(&b, -1, 1, 0);              /* disabled */
    for (int i = 0; i < 1000; i++)
        CHECK(kube_bucket_reserve(&b, 0) == 0);
}

TEST(status_decoding)
{
    kube_result r;
    memset(&r, 0, sizeof r);
    const char *st = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
                     "\"message\":\"widgets.itest.klua.dev \\\"a\\\" already exists\","
                     "\"reason\":\"AlreadyExists\",\"code\":409}";
    kube_result_set_status(&r, 409, st, strlen(st));
    CHECK(r.http_code == 409);
    CHECK_STR(r.reason, "AlreadyExists");
    CHECK_STR(r.message, "widgets.itest.klua.dev \"a\" already exists");
    CHECK(kube_result_is(&r, "AlreadyExists"));
    CHECK(!kube_result_is(&r, "Conflict"));       /* as client-go */
    CHECK(!kube_result_ok(&r));

    char html[400];
    memset(html, 'x', sizeof html);
    memcpy(html, "<html>\nBad\tGateway", 18);
    kube_result_set_status(&r, 502, html, sizeof html);
    CHECK_STR(r.reason, "InternalError");
    CHECK(strlen(r.message) == 200);             /* the first 200 bytes, one line */
    CHECK(strncmp(r.message, "<html> Bad Gateway", 18) == 0);

    kube_result_set_status(&r, 404, "", 0);
    CHECK_STR(r.reason, "NotFound");
    CHECK_STR(r.message, "the server answered HTTP 404 (NotFound)");
    CHECK(kube_result_is(&r, "NotFound"));

    const char *gone = "{\"kind\":\"Status\",\"reason\":\"Expired\",\"message\":\"too old resource "
                       "version: 1 (5)\",\"code\":410}";
    kube_result_set_status(&r, 410, gone, strlen(gone));
    CHECK(kube_result_is(&r, "Gone"));
    CHECK(kube_result_is(&r, "Expired"));
    const char *conf = "{\"kind\":\"Status\",\"reason\":\"Conflict\",\"code\":409}";
    kube_result_set_status(&r, 409, conf, strlen(conf));
    CHECK(kube_result_is(&r, "Conflict"));
    CHECK_STR(r.message, "the server answered HTTP 409 (Conflict)");
}

static kube_resource res_of(const char *g, const char *v, const char *plural, int ns)
{
    kube_resource r = {(char *)g, (char *)v, (char *)plural, (char *)"K", ns, 0};
    return r;
}

TEST(paths_and_queries)
{
    kl_buf b = KL_BUF_INIT;
    kube_resource pods = res_of("", "v1", "pods", 1);
    kube_resource nodes = res_of("", "v1", "nodes", 0);
    kube_resource widgets = res_of("itest.klua.dev", "v1", "widgets", 1);

    CHECK(kube_resource_path(&pods, "kube-system", "p 1", "status", &b) == 0);
    CHECK_STR(b.data, "/api/v1/namespaces/kube-system/pods/p%201/status");
    kl_buf_reset(&b);
    CHECK(kube_resource_path(&pods, NULL, NULL, NULL, &b) == 0);
    CHECK_STR(b.data, "/api/v1/pods");
    kl_buf_reset(&b);
    CHECK(kube_resource_path(&nodes, "ignored", "n1", NULL, &b) == 0);
    CHECK_STR(b.data, "/api/v1/nodes/n1");
    kl_buf_reset(&b);
    CHECK(kube_resource_path(&pods, "ns", NULL, "status", &b) == -1); /* subresource needs a name */
    kl_buf_reset(&b);

    kube_list_opts lo = {"app in (a,b),tier!=db", "metadata.name=x", 10, "tok/=+", "0",
                         "NotOlderThan"};
    CHECK(kube_list_path(&widgets, "default", &lo, &b) == 0);
    CHECK_STR(b.data, "/apis/itest.klua.dev/v1/namespaces/default/widgets"
                      "?labelSelector=app%20in%20%28a%2Cb%29%2Ctier%21%3Ddb"
                      "&fieldSelector=metadata.name%3Dx&limit=10&continue=tok%2F%3D%2B"
                      "&resourceVersion=0&resourceVersionMatch=NotOlderThan");
    kl_buf_reset(&b);
    kube_watch_opts wo = {NULL, NULL, "123", 1, 30, 0};
    CHECK(kube_watch_path(&widgets, NULL, &wo, &b) == 0);
    CHECK_STR(b.data, "/apis/itest.klua.dev/v1/widgets?watch=1&resourceVersion=123"
                      "&allowWatchBookmarks=true&timeoutSeconds=30");
    kl_buf_reset(&b);
    kube_watch_opts si = {"a=b", NULL, "", 1, 0, 1};
    CHECK(kube_watch_path(&pods, "ns", &si, &b) == 0);
    CHECK_STR(b.data, "/api/v1/namespaces/ns/pods?watch=1&labelSelector=a%3Db&resourceVersion="
                      "&allowWatchBookmarks=true&sendInitialEvents=true"
                      "&resourceVersionMatch=NotOlderThan");
    kl_buf_reset(&b);
    kube_write_opts w = {"my manager", 1, 1, "status"};
    CHECK(kube_write_path(&widgets, "ns", "w1", &w, 1, &b) == 0);
    CHECK_STR(b.data, "/apis/itest.klua.dev/v1/namespaces/ns/widgets/w1/status"
                      "?fieldManager=my%20manager&force=true&dryRun=All");
    kl_buf_reset(&b);
    CHECK(kube_write_path(&widgets, "ns", NULL, NULL, 0, &b) == 0);
    CHECK_STR(b.data, "/apis/itest.klua.dev/v1/namespaces/ns/widgets?fieldManager=klua");
    kl_buf_reset(&b);
    w.subresource = NULL;
    CHECK(kube_write_path(&widgets, "ns", "w1", &w, 0, &b) == 0);   /* force is apply-only */
    CHECK_STR(b.data, "/apis/itest.klua.dev/v1/namespaces/ns/widgets/w1"
                      "?fieldManager=my%20manager&dryRun=All");
    kl_buf_reset(&b);

    kube_delete_opts d = {"Foreground", "u-1", "42", 0};
    CHECK(kube_delete_body(&d, &b) == 0);
    CHECK_STR(b.data, "{\"apiVersion\":\"v1\",\"kind\":\"DeleteOptions\",\"propagationPolicy\":"
                      "\"Foreground\",\"gracePeriodSeconds\":0,\"preconditions\":{\"uid\":\"u-1\","
                      "\"resourceVersion\":\"42\"}}");
    kl_buf_reset(&b);
    kube_delete_opts none = {NULL, NULL, NULL, -1};
    CHECK(kube_delete_body(&none, &b) == 0 && b.len == 0);
    CHECK_STR(kube_patch_content_type(KUBE_PATCH_APPLY), "application/apply-patch+yaml");
    CHECK_STR(kube_patch_content_type(KUBE_PATCH_JSON), "application/json-patch+json");
    CHECK_STR(kube_patch_content_type(KUBE_PATCH_MERGE), "application/merge-patch+json");
    CHECK_STR(kube_patch_content_type(KUBE_PATCH_STRATEGIC),
              "application/strategic-merge-patch+json");

    char *av = kube_resource_api_version(&widgets);
    CHECK_STR(av, "itest.klua.dev/v1");
    free(av);
    av = kube_resource_api_version(&pods);
    CHECK_STR(av, "v1");
    free(av);
    kl_buf_free(&b);
}

TEST(rfc3339)
{
    int64_t t = 0;
    CHECK(execcred_parse_time("2015-10-21T07:28:00Z", &t) == 0 && t == 1445412480);
    CHECK(execcred_parse_time("2015-10-21T09:28:00.123456+02:00", &t) == 0 && t == 1445412480);
    CHECK(execcred_parse_time("2015-10-21T02:28:00-05:00", &t) == 0 && t == 1445412480);
    CHECK(execcred_parse_time("2015-10-21 07:28:00", &t) == -1);     /* no zone */
    CHECK(execcred_parse_time("2015-13-21T07:28:00Z", &t) == -1);
    CHECK(execcred_parse_time("yesterday", &t) == -1);
    CHECK(execcred_parse_time("2015-10-21T07:28:00Zjunk", &t) == -1);
}

TEST(exec_credential_parsing)
{
    execcred c;
    kl_err err = {0};
    const char *ok = "{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":"
                     "\"ExecCredential\",\"status\":{\"token\":\"abc\"}}";
    CHECK(execcred_parse(ok, strlen(ok), "client.authentication.k8s.io/v1", &c, &err) == 0);
    CHECK_STR(c.token, "abc");
    CHECK(c.expires_at == 0);
    CHECK(execcred_fresh(&c, 4000000000LL));     /* no expiry: good for the process life */
    execcred_free(&c);

    const char *exp = "{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":"
                      "\"ExecCredential\",\"status\":{\"token\":\"abc\","
                      "\"expirationTimestamp\":\"2015-10-21T07:28:00Z\"}}";
    CHECK(execcred_parse(exp, strlen(exp), NULL, &c, &err) == 0);
    CHECK(c.expires_at == 1445412480);
    CHECK(execcred_fresh(&c, 1445412480 - 60));
    CHECK(!execcred_fresh(&c, 1445412480 - 5));  /* about to expire: refresh now */
    execcred_free(&c);

    CHECK(execcred_parse(ok, strlen(ok), "client.authentication.k8s.io/v1beta1", &c, &err) == -1);
    CHECK_STR(err.msg, "apiVersion is \"client.authentication.k8s.io/v1\", want "
                       "\"client.authentication.k8s.io/v1beta1\"");
    const char *nostatus = "{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":"
                           "\"ExecCredential\"}";
    CHECK(execcred_parse(nostatus, strlen(nostatus), NULL, &c, &err) == -1);
    CHECK_STR(err.msg, "no status object");
    const char *halfcert = "{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":"
                           "\"ExecCredential\",\"status\":{\"clientCertificateData\":\"x\"}}";
    CHECK(execcred_parse(halfcert, strlen(halfcert), NULL, &c, &err) == -1);
    CHECK_STR(err.msg, "status has clientCertificateData without clientKeyData");
    const char *kind = "{\"apiVersion\":\"v1\",\"kind\":\"Pod\"}";
    CHECK(execcred_parse(kind, strlen(kind), NULL, &c, &err) == -1);
    CHECK_STR(err.msg, "kind is \"Pod\", want \"ExecCredential\"");
    const char *badts = "{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":"
                        "\"ExecCredential\",\"status\":{\"token\":\"t\","
                        "\"expirationTimestamp\":\"tomorrow\"}}";
    CHECK(execcred_parse(badts, strlen(badts), NULL, &c, &err) == -1);
    CHECK_STR(err.msg, "expirationTimestamp \"tomorrow\" is not an RFC 3339 time");
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    static char buf[8192];
    size_t n = 0;
    if (!f)
        return NULL;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* Run a plugin on a loop of its own until it answers: execcred_start's
 * result as the old synchronous call gave it. */
typedef struct plugin_run {
    int done, rc;
    execcred cred;
    kl_err err;
    loop *l;
    int ticks;              /* timer ticks seen while the plugin ran */
    char go[96];            /* the file a tick creates (wait-file.sh), or "" */
} plugin_run;

static void plugin_done(void *ud, int rc, execcred *cred, const kl_err *err)
{
    plugin_run *r = ud;
    r->done = 1;
    r->rc = rc;
    if (rc == 0) {
        r->cred = *cred;
        memset(cred, 0, sizeof *cred);
    } else {
        r->err = *err;
    }
}

/* Every 10 ms while the plugin runs; the third tick lets wait-file.sh go. */
static void plugin_tick(loop *l, void *ud)
{
    plugin_run *r = ud;
    if (r->done)
        return;
    if (++r->ticks == 3 && r->go[0]) {
        FILE *f = fopen(r->go, "w");
        if (f)
            fclose(f);
    }
    loop_timer_add(l, 10, plugin_tick, r);
}

static int run_plugin_opts(const kube_exec_config *cfg, const execcred_cluster *cl,
                           const execcred_opts *o, plugin_run *r)
{
    kl_err err = {0};
    r->l = loop_new(&err);
    if (!r->l)
        return -1;
    execcred_proc *p = execcred_start(r->l, cfg, cl, o, plugin_done, r, &r->err);
    if (!p) {
        loop_free(r->l);
        return -1;
    }
    CHECK(!r->done);            /* never called back from inside execcred_start */
    loop_timer_add(r->l, 10, plugin_tick, r);
    while (!r->done)
        loop_run_once(r->l, 1000);
    loop_free(r->l);
    return r->rc;
}

static int run_plugin(const kube_exec_config *cfg, const execcred_cluster *cl, execcred *out,
                      kl_err *err)
{
    plugin_run r;
    memset(&r, 0, sizeof r);
    int rc = run_plugin_opts(cfg, cl, NULL, &r);
    *out = r.cred;
    *err = r.err;
    return rc;
}

TEST(exec_plugin_runs)
{
    char out[64];
    snprintf(out, sizeof out, "/tmp/klua-test-kube-%d.out", (int)getpid());
    char envout[96], extra[] = "FIXTURE_EXTRA=from-kubeconfig";
    snprintf(envout, sizeof envout, "FIXTURE_OUT=%s", out);
    char *env[] = {envout, extra};
    char *args[] = {(char *)"--flag", (char *)"two words"};
    kube_exec_config cfg = {0};
    cfg.api_version = (char *)"client.authentication.k8s.io/v1";
    cfg.command = (char *)FIX "token.sh";
    cfg.args = args;
    cfg.nargs = 2;
    cfg.env = env;
    cfg.nenv = 2;
    cfg.provide_cluster_info = 1;
    execcred_cluster cl = {"https://127.0.0.1:6443", "klua-test.local", 0, "PEM", 3};
    execcred c;
    kl_err err = {0};
    CHECK(run_plugin(&cfg, &cl, &c, &err) == 0);
    CHECK_STR(c.token, "fixture-token");
    CHECK(c.expires_at == 4070908800LL);
    execcred_free(&c);
    char *seen = slurp(out);
    CHECK(seen != NULL);
    if (seen) {
        CHECK(strstr(seen, "args=--flag two words\n") != NULL);
        CHECK(strstr(seen, "extra=from-kubeconfig\n") != NULL);
        CHECK(strstr(seen, "stdin=\n") != NULL);   /* stdin is /dev/null */
        CHECK(strstr(seen, "info={\"apiVersion\":\"client.authentication.k8s.io/v1\","
                           "\"kind\":\"ExecCredential\",\"spec\":{\"cluster\":{\"server\":"
                           "\"https://127.0.0.1:6443\",\"tls-server-name\":\"klua-test.local\","
                           "\"certificate-authority-data\":\"UEVN\"},\"interactive\":false}}\n") !=
              NULL);
    }
    cfg.provide_cluster_info = 0;
    CHECK(run_plugin(&cfg, &cl, &c, &err) == 0);
    execcred_free(&c);
    seen = slurp(out);
    CHECK(seen && strstr(seen, "info={\"apiVersion\":\"client.authentication.k8s.io/v1\","
                               "\"kind\":\"ExecCredential\",\"spec\":{\"interactive\":false}}\n"));
    unlink(out);

    kube_exec_config cert = {0};
    cert.api_version = (char *)"client.authentication.k8s.io/v1beta1";
    cert.command = (char *)FIX "cert.sh";
    CHECK(run_plugin(&cert, NULL, &c, &err) == 0);
    CHECK(c.token == NULL);
    CHECK(c.cert_pem && strstr(c.cert_pem, "BEGIN CERTIFICATE-----\nAAAA\n"));
    CHECK(c.key_pem && c.key_len == strlen(c.key_pem));
    CHECK(c.expires_at == 1903860000LL);       /* 2030-05-01T10:00:00Z */
    execcred_free(&c);
}

TEST(exec_plugin_failures)
{
    kube_exec_config cfg = {0};
    execcred c;
    kl_err err = {0};
    cfg.api_version = (char *)"client.authentication.k8s.io/v1";
    cfg.command = (char *)FIX "fail.sh";
    CHECK(run_plugin(&cfg, NULL, &c, &err) == -1);
    CHECK_STR(err.msg, "exec plugin " FIX "fail.sh failed: exit status 3: cannot reach the "
                       "identity provider; second line");
    cfg.command = (char *)FIX "garbage.sh";
    CHECK(run_plugin(&cfg, NULL, &c, &err) == -1);
    CHECK(strncmp(err.msg, "exec plugin " FIX "garbage.sh returned invalid ExecCredential: "
                  "invalid JSON", strlen("exec plugin " FIX "garbage.sh returned invalid "
                                         "ExecCredential: invalid JSON")) == 0);
    cfg.command = (char *)"klua-no-such-plugin";
    cfg.install_hint = (char *)"install klua-no-such-plugin from https://example.invalid";
    CHECK(run_plugin(&cfg, NULL, &c, &err) == -1);
    CHECK_STR(err.msg, "exec plugin klua-no-such-plugin not found: install klua-no-such-plugin "
                       "from https://example.invalid");
}

/* The loop goes on while a plugin runs: wait-file.sh answers only once a
 * loop timer has created its file, which a blocking run could never do. */
TEST(exec_plugin_runs_while_the_loop_goes_on)
{
    for (int nopid = 0; nopid < 2; nopid++) {   /* pidfd, then the timer fallback */
        plugin_run r;
        memset(&r, 0, sizeof r);
        char calls[96], go_env[128], calls_env[128];
        snprintf(r.go, sizeof r.go, "/tmp/klua-test-kube-go-%d-%d", (int)getpid(), nopid);
        snprintf(calls, sizeof calls, "/tmp/klua-test-kube-calls-%d-%d", (int)getpid(), nopid);
        unlink(r.go);
        unlink(calls);
        snprintf(go_env, sizeof go_env, "FIXTURE_GO=%s", r.go);
        snprintf(calls_env, sizeof calls_env, "FIXTURE_CALLS=%s", calls);
        char *env[] = {go_env, calls_env};
        kube_exec_config cfg = {0};
        cfg.command = (char *)FIX "wait-file.sh";
        cfg.env = env;
        cfg.nenv = 2;
        execcred_opts o = {0, 0, nopid};
        CHECK(run_plugin_opts(&cfg, NULL, &o, &r) == 0);
        CHECK_STR(r.cred.token, "fixture-token");
        CHECK(r.ticks >= 3);
        char *seen = slurp(calls);
        CHECK(seen && strcmp(seen, "started\nanswered\n") == 0);
        execcred_free(&r.cred);
        unlink(r.go);
        unlink(calls);
    }
}

static int gone(pid_t pid)
{
    char path[64], st[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 1;
    size_t n = fread(st, 1, sizeof st - 1, f);
    fclose(f);
    st[n] = '\0';
    char *p = strrchr(st, ')');
    return p && p[1] == ' ' && p[2] == 'Z';   /* a zombie waiting for init */
}

/* A plugin that never answers is killed at the timeout, with what it
 * started; the loop ran meanwhile. */
TEST(exec_plugin_timeout_kills_it_and_its_children)
{
    char out[96], out_env[128];
    snprintf(out, sizeof out, "/tmp/klua-test-kube-hang-%d", (int)getpid());
    unlink(out);
    snprintf(out_env, sizeof out_env, "FIXTURE_OUT=%s", out);
    char *env[] = {out_env};
    kube_exec_config cfg = {0};
    cfg.command = (char *)FIX "hang.sh";
    cfg.env = env;
    cfg.nenv = 1;
    execcred_opts o = {300, 0, 0};
    plugin_run r;
    memset(&r, 0, sizeof r);
    CHECK(run_plugin_opts(&cfg, NULL, &o, &r) == -1);
    CHECK_STR(r.err.msg, "exec plugin " FIX "hang.sh failed: no answer within 300 ms (killed)");
    CHECK(r.ticks >= 3);
    char *pidtext = slurp(out);
    pid_t pid = pidtext ? (pid_t)strtol(pidtext, NULL, 10) : 0;
    CHECK(pid > 0);
    /* SIGKILL is delivered at once, but /proc may show it for a moment. */
    for (int i = 0; pid > 0 && i < 500 && !gone(pid); i++) {
        loop *l = loop_new(&r.err);
        loop_run_once(l, 10);
        loop_free(l);
    }
    CHECK(pid > 0 && gone(pid));
    if (pid > 0 && !gone(pid))
        kill(pid, SIGKILL);
    unlink(out);
}

static uint64_t jumpy_now(void *ud)
{
    return loop_time_ms() + *(uint64_t *)ud;
}

/* The timeout is real time: a loop whose clock a test moves ahead (klua
 * test jumps to the next timer when idle) does not kill a plugin early. */
TEST(exec_plugin_timeout_is_real_time)
{
    plugin_run r;
    memset(&r, 0, sizeof r);
    char calls[96], go_env[128], calls_env[128];
    snprintf(r.go, sizeof r.go, "/tmp/klua-test-kube-jgo-%d", (int)getpid());
    snprintf(calls, sizeof calls, "/tmp/klua-test-kube-jcalls-%d", (int)getpid());
    unlink(r.go);
    unlink(calls);
    snprintf(go_env, sizeof go_env, "FIXTURE_GO=%s", r.go);
    snprintf(calls_env, sizeof calls_env, "FIXTURE_CALLS=%s", calls);
    char *env[] = {go_env, calls_env};
    kube_exec_config cfg = {0};
    cfg.command = (char *)FIX "wait-file.sh";
    cfg.env = env;
    cfg.nenv = 2;
    kl_err err = {0};
    uint64_t offset = 0;
    loop *l = loop_new(&err);
    loop_set_clock(l, jumpy_now, &offset);
    execcred_opts o = {5000, 0, 0};
    CHECK(execcred_start(l, &cfg, NULL, &o, plugin_done, &r, &err) != NULL);
    char *seen = NULL;
    while (!(seen = slurp(calls)) || !strstr(seen, "started"))
        loop_run_once(l, 10);
    offset += 60000;                           /* the clock jumps a minute */
    for (int i = 0; i < 10; i++)
        loop_run_once(l, 0);
    CHECK(!r.done);                            /* not killed: 5 s have not passed */
    FILE *f = fopen(r.go, "w");
    if (f)
        fclose(f);
    while (!r.done)
        loop_run_once(l, 100);
    CHECK(r.rc == 0 && r.cred.token && strcmp(r.cred.token, "fixture-token") == 0);
    execcred_free(&r.cred);
    loop_free(l);
    unlink(r.go);
    unlink(calls);
}

/* Output past the cap ends the run at once, with a clear error; memory
 * never holds more than the cap. */
TEST(exec_plugin_huge_output_is_refused)
{
    kube_exec_config cfg = {0};
    plugin_run r;
    memset(&r, 0, sizeof r);
    cfg.command = (char *)"yes";               /* prints for ever */
    CHECK(run_plugin_opts(&cfg, NULL, NULL, &r) == -1);
    CHECK_STR(r.err.msg, "exec plugin yes printed more than 1048576 bytes on stdout (killed)");

    char *args[] = {(char *)"-c", (char *)"yes 'noise on stderr' >&2"};
    memset(&r, 0, sizeof r);
    cfg.command = (char *)"/bin/sh";
    cfg.args = args;
    cfg.nargs = 2;
    execcred_opts o = {0, 4096, 0};
    CHECK(run_plugin_opts(&cfg, NULL, &o, &r) == -1);
    CHECK_STR(r.err.msg, "exec plugin /bin/sh printed more than 4096 bytes on stderr (killed)");
}

/* A credential bigger than a pipe is read whole; and when the exit is seen
 * before the last of stdout is read, what is in the pipe then is still part
 * of the answer (the loop usually reads the pipe first, so this does not
 * catch a final drain that reads nothing every time). */
TEST(exec_plugin_output_is_read_whole_after_the_exit)
{
    kube_exec_config cfg = {0};
    cfg.command = (char *)FIX "big.sh";
    int ok = 0;
    for (int i = 0; i < 6; i++) {
        plugin_run r;
        memset(&r, 0, sizeof r);
        execcred_opts o = {0, 0, i % 2};
        if (run_plugin_opts(&cfg, NULL, &o, &r) == 0 && r.cred.token &&
            strcmp(r.cred.token, "big-token") == 0)
            ok++;
        else
            printf("#   run %d: %s\n", i, r.err.msg);
        execcred_free(&r.cred);
    }
    CHECK(ok == 6);
}

/* A plugin that prints a token but fails: the message has its first stderr
 * lines in plain words, never the token. */
TEST(exec_plugin_error_has_stderr_not_the_token)
{
    kube_exec_config cfg = {0};
    execcred c;
    kl_err err = {0};
    cfg.command = (char *)FIX "broken.sh";
    CHECK(run_plugin(&cfg, NULL, &c, &err) == -1);
    CHECK_STR(err.msg, "exec plugin " FIX "broken.sh failed: exit status 1: broken-plugin: the "
                       "identity provider said no; try again later");
    CHECK(strstr(err.msg, "s3cr3t") == NULL);
}

static void done_store(void *ud, kube_result *r)
{
    kube_result *out = ud;
    out->http_code = r->http_code;
    memcpy(out->reason, r->reason, sizeof out->reason);
    memcpy(out->message, r->message, sizeof out->message);
    out->body.len = 1;   /* "done ran" */
}

/* A refused connection: retried with backoff (it cannot have reached a
 * server), then reported naming the server. No API server needed. */
TEST(refused_connection_is_retried_then_reported)
{
    kl_err err = {0};
    loop *l = loop_new(&err);
    http_client *h = l ? http_client_new(l, &err) : NULL;
    CHECK(h != NULL);
    if (!h) {
        loop_free(l);
        return;
    }
    kube_rest_config cfg = {0};
    cfg.server = strdup("https://127.0.0.1:1");
    cfg.token = strdup("secret-token-never-shown");
    kube_client_opts o = {0, 0, 2, 5000};
    kube_client *c = kube_client_new(l, h, &cfg, &o, &err);
    CHECK(c != NULL && cfg.server == NULL);   /* ownership taken */
    kube_result r;
    memset(&r, 0, sizeof r);
    uint64_t t0 = loop_time_ms();
    CHECK(kube_request(c, "POST", "/api/v1/namespaces/x/configmaps", NULL, "{}", 2, done_store,
                       &r) != NULL);
    CHECK(r.body.len == 0);                   /* never called back synchronously */
    while (r.body.len == 0)
        loop_run_once(l, 1000);
    uint64_t took = loop_time_ms() - t0;
    CHECK(r.http_code == 0);
    CHECK_STR(r.reason, "ConnectionError");
    CHECK(strncmp(r.message, "cannot connect to https://127.0.0.1:1: ", 39) == 0);
    CHECK(strstr(r.message, "secret-token") == NULL);
    kube_stats st = kube_client_stats(c);
    CHECK(st.requests == 3 && st.retries == 2);
    CHECK(took >= 600);                       /* 200 ms + 400 ms at least */

    /* The LIST counter. */
    kube_result sr;
    memset(&sr, 0, sizeof sr);
    CHECK(kube_request(c, "GET", "/api/v1/namespaces/x/pods?limit=1", NULL, NULL, 0, done_store,
                       &sr) != NULL);
    while (sr.body.len == 0)
        loop_run_once(l, 1000);
    CHECK_STR(sr.reason, "ConnectionError");
    kl_buf_free(&sr.body);
    st = kube_client_stats(c);
    CHECK(st.lists == 1);

    /* A cancelled call never calls back. */
    memset(&r, 0, sizeof r);
    kube_call *call = kube_request(c, "GET", "/api", NULL, NULL, 0, done_store, &r);
    kube_cancel(call);
    for (int i = 0; i < 5; i++)
        loop_run_once(l, 50);
    CHECK(r.body.len == 0);
    kube_client_free(c);
    http_client_free(h);
    loop_free(l);
}

static int count_of(const char *text, const char *what)
{
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

static kube_client *exec_client(loop *l, http_client *h, const char *command, char **env,
                                size_t nenv)
{
    kl_err err = {0};
    kube_rest_config cfg = {0};
    cfg.server = strdup("https://127.0.0.1:1");   /* refused: no API server needed */
    cfg.exec = calloc(1, sizeof *cfg.exec);
    cfg.exec->command = strdup(command);
    cfg.exec->env = calloc(nenv + 1, sizeof *cfg.exec->env);
    for (size_t i = 0; i < nenv; i++)
        cfg.exec->env[i] = strdup(env[i]);
    cfg.exec->nenv = nenv;
    kube_client_opts o = {0, 0, -1, 5000};        /* no retries */
    return kube_client_new(l, h, &cfg, &o, &err);
}

/* Requests that need the credential while the plugin runs wait for it: one
 * run for all of them, then they go out with its token. */
TEST(exec_plugin_run_is_shared_by_waiting_requests)
{
    kl_err err = {0};
    loop *l = loop_new(&err);
    http_client *h = l ? http_client_new(l, &err) : NULL;
    CHECK(h != NULL);
    if (!h) {
        loop_free(l);
        return;
    }
    char go[96], calls[96], go_env[128], calls_env[128];
    snprintf(go, sizeof go, "/tmp/klua-test-kube-sgo-%d", (int)getpid());
    snprintf(calls, sizeof calls, "/tmp/klua-test-kube-scalls-%d", (int)getpid());
    unlink(go);
    unlink(calls);
    snprintf(go_env, sizeof go_env, "FIXTURE_GO=%s", go);
    snprintf(calls_env, sizeof calls_env, "FIXTURE_CALLS=%s", calls);
    char *env[] = {go_env, calls_env};
    kube_client *c = exec_client(l, h, FIX "wait-file.sh", env, 2);
    CHECK(c != NULL);
    if (!c) {
        http_client_free(h);
        loop_free(l);
        return;
    }
    kube_result r[4];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 3; i++)
        CHECK(kube_request(c, "GET", "/api", NULL, NULL, 0, done_store, &r[i]) != NULL);
    char *seen = NULL;
    while (!(seen = slurp(calls)) || !strstr(seen, "started"))
        loop_run_once(l, 20);
    /* The plugin waits for its file: the loop turns, the requests wait. */
    for (int i = 0; i < 5; i++)
        loop_run_once(l, 20);
    CHECK(r[0].body.len == 0 && r[1].body.len == 0 && r[2].body.len == 0);
    FILE *f = fopen(go, "w");
    if (f)
        fclose(f);
    while (r[0].body.len == 0 || r[1].body.len == 0 || r[2].body.len == 0)
        loop_run_once(l, 1000);
    for (int i = 0; i < 3; i++)   /* sent, with the token: the refusal is the server's */
        CHECK_STR(r[i].reason, "ConnectionError");
    seen = slurp(calls);
    CHECK(seen && strcmp(seen, "started\nanswered\n") == 0);
    CHECK(kube_client_stats(c).requests == 3);
    /* No expiry: the next request uses the cached credential. */
    CHECK(kube_request(c, "GET", "/api", NULL, NULL, 0, done_store, &r[3]) != NULL);
    while (r[3].body.len == 0)
        loop_run_once(l, 1000);
    CHECK_STR(r[3].reason, "ConnectionError");
    seen = slurp(calls);
    CHECK(seen && strcmp(seen, "started\nanswered\n") == 0);
    kube_client_free(c);
    http_client_free(h);
    loop_free(l);
    unlink(go);
    unlink(calls);
}

/* A failing plugin: every waiting request fails with its error; the error
 * is logged once; during the backoff requests fail at once without a new
 * run; after it the plugin runs again. */
TEST(exec_plugin_failure_is_shared_logged_once_and_backed_off)
{
    kl_err err = {0};
    loop *l = loop_new(&err);
    http_client *h = l ? http_client_new(l, &err) : NULL;
    CHECK(h != NULL);
    if (!h) {
        loop_free(l);
        return;
    }
    char calls[96], calls_env[128], logf[96];
    snprintf(calls, sizeof calls, "/tmp/klua-test-kube-fcalls-%d", (int)getpid());
    snprintf(logf, sizeof logf, "/tmp/klua-test-kube-flog-%d", (int)getpid());
    unlink(calls);
    snprintf(calls_env, sizeof calls_env, "FIXTURE_CALLS=%s", calls);
    char *env[] = {calls_env};
    kube_client *c = exec_client(l, h, FIX "broken.sh", env, 1);
    CHECK(c != NULL);
    /* Capture our stderr (the log) for the section. */
    fflush(stderr);
    int saved = dup(2);
    int lfd = open(logf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(saved >= 0 && lfd >= 0);
    dup2(lfd, 2);
    close(lfd);

    const char *want = "exec plugin " FIX "broken.sh failed: exit status 1: broken-plugin: the "
                       "identity provider said no; try again later";
    kube_result r[3];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 3; i++)
        kube_request(c, "GET", "/api", NULL, NULL, 0, done_store, &r[i]);
    while (r[0].body.len == 0 || r[1].body.len == 0 || r[2].body.len == 0)
        loop_run_once(l, 1000);
    uint64_t failed_at = loop_time_ms();
    for (int i = 0; i < 3; i++) {
        CHECK_STR(r[i].reason, "Unauthorized");
        CHECK_STR(r[i].message, want);
    }
    CHECK(count_of(slurp(calls), "run") == 1);   /* one run for the three */
    CHECK(kube_client_stats(c).requests == 0);  /* nothing went out without a credential */
    /* In the backoff: the same error at once, no new run. */
    memset(r, 0, sizeof r);
    kube_request(c, "GET", "/api", NULL, NULL, 0, done_store, &r[0]);
    while (r[0].body.len == 0)
        loop_run_once(l, 1000);
    CHECK_STR(r[0].message, want);
    CHECK(count_of(slurp(calls), "run") == 1);
    /* Ask again and again: the plugin runs a second time only after the backoff. */
    while (count_of(slurp(calls), "run") < 2) {
        memset(r, 0, sizeof r);
        kube_request(c, "GET", "/api", NULL, NULL, 0, done_store, &r[0]);
        while (r[0].body.len == 0)
            loop_run_once(l, 1000);
        CHECK_STR(r[0].message, want);
        loop_run_once(l, 50);
    }
    CHECK(loop_time_ms() - failed_at >= 500);
    kube_client_free(c);

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char *log = slurp(logf);
    CHECK(log && count_of(log, "exec credential plugin failed") == 1);   /* same error: once */
    CHECK(log && count_of(log, "the identity provider said no") == 1);
    CHECK(log && strstr(log, "s3cr3t") == NULL);
    if (log)
        fputs(log, stderr);
    http_client_free(h);
    loop_free(l);
    unlink(calls);
    unlink(logf);
}

/* A client freed while its plugin runs (klua shutting down) kills the
 * plugin and what it started; no callback comes afterwards. */
TEST(exec_plugin_is_killed_when_the_client_is_freed)
{
    kl_err err = {0};
    loop *l = loop_new(&err);
    http_client *h = l ? http_client_new(l, &err) : NULL;
    CHECK(h != NULL);
    if (!h) {
        loop_free(l);
        return;
    }
    char out[96], out_env[128];
    snprintf(out, sizeof out, "/tmp/klua-test-kube-free-%d", (int)getpid());
    unlink(out);
    snprintf(out_env, sizeof out_env, "FIXTURE_OUT=%s", out);
    char *env[] = {out_env};
    kube_client *c = exec_client(l, h, FIX "hang.sh", env, 1);
    kube_result r;
    memset(&r, 0, sizeof r);
    CHECK(c && kube_request(c, "GET", "/api", NULL, NULL, 0, done_store, &r) != NULL);
    char *pidtext = NULL;
    while (!(pidtext = slurp(out)) || !strchr(pidtext, '\n'))
        loop_run_once(l, 20);
    pid_t pid = (pid_t)strtol(pidtext, NULL, 10);
    CHECK(pid > 0);
    kube_client_free(c);
    for (int i = 0; i < 20; i++)
        loop_run_once(l, 10);
    CHECK(r.body.len == 0);                   /* cancelled: never called back */
    for (int i = 0; pid > 0 && i < 500 && !gone(pid); i++)
        loop_run_once(l, 10);
    CHECK(pid > 0 && gone(pid));
    if (pid > 0 && !gone(pid))
        kill(pid, SIGKILL);
    http_client_free(h);
    loop_free(l);
    unlink(out);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    RUN(retry_after_parsing);
    RUN(retry_policy);
    RUN(backoff_grows_with_jitter_and_cap);
    RUN(token_bucket);
    RUN(status_decoding);
    RUN(paths_and_queries);
    RUN(rfc3339);
    RUN(exec_credential_parsing);
    RUN(exec_plugin_runs);
    RUN(exec_plugin_failures);
    RUN(exec_plugin_runs_while_the_loop_goes_on);
    RUN(exec_plugin_timeout_kills_it_and_its_children);
    RUN(exec_plugin_timeout_is_real_time);
    RUN(exec_plugin_huge_output_is_refused);
    RUN(exec_plugin_error_has_stderr_not_the_token);
    RUN(exec_plugin_output_is_read_whole_after_the_exit);
    RUN(refused_connection_is_retried_then_reported);
    RUN(exec_plugin_run_is_shared_by_waiting_requests);
    RUN(exec_plugin_failure_is_shared_logged_once_and_backed_off);
    RUN(exec_plugin_is_killed_when_the_client_is_freed);
    curl_global_cleanup();
    DONE();
}
