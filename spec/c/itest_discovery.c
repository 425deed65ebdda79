/* itest_discovery.c - integration tests of discovery.c against a real etcd +
 * kube-apiserver.
 *
 * Needs KLUA_TEST_CLUSTER=DIR (see itest_rest.c). Asserts what a user of the
 * service sees: answers, error texts, how many documents were fetched, and
 * that nothing is answered from inside discovery_lookup.
 */
#include "harness.h"
#include "itest_cluster.h"

#include "discovery.h"
#include "http.h"
#include "kube.h"
#include "kubeconfig.h"
#include "loop.h"
#include "rest.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define GROUP "disco.klua.dev"
#define WAIT_MS 60000

static loop *g_loop;
static http_client *g_http;
static kube_client *g_c;

typedef struct answer {
    int done;
    const kube_resource *r;
    kl_err err;
    uint64_t at_ms;
} answer;

static void on_answer(void *ud, const kube_resource *r, const kl_err *err)
{
    answer *a = ud;
    a->done++;
    a->r = r;
    a->at_ms = loop_time_ms();
    if (err)
        a->err = *err;
}

static void wait_all(answer *a, int n)
{
    uint64_t end = loop_time_ms() + WAIT_MS;
    for (;;) {
        int all = 1;
        for (int i = 0; i < n; i++)
            all &= a[i].done > 0;
        if (all || loop_time_ms() > end)
            return;
        loop_run_once(g_loop, 100);
    }
}

/* Look up synchronously, for the tests' own convenience. */
static answer lookup(discovery *d, const char *av, const char *kind)
{
    answer a = {0};
    CHECK(discovery_lookup(d, av, kind, on_answer, &a) != NULL);
    CHECK(a.done == 0);   /* never answered inside the call */
    wait_all(&a, 1);
    CHECK(a.done == 1);
    return a;
}

static void pause_ms(int ms)
{
    uint64_t end = loop_time_ms() + (uint64_t)ms;
    while (loop_time_ms() < end)
        loop_run_once(g_loop, (int)(end - loop_time_ms()));
}

typedef struct call_res {
    int done;
    long code;
} call_res;

static void on_call(void *ud, kube_result *r)
{
    call_res *c = ud;
    c->done = 1;
    c->code = r->http_code;
}

static long call(const char *method, const char *path, const char *body)
{
    call_res c = {0};
    if (!kube_request(g_c, method, path, NULL, body, body ? strlen(body) : 0, on_call, &c))
        return -1;
    uint64_t end = loop_time_ms() + WAIT_MS;
    while (!c.done && loop_time_ms() < end)
        loop_run_once(g_loop, 100);
    return c.code;
}

static int ready(void)
{
    if (g_c)
        return 1;
    printf("#   no cluster: set KLUA_TEST_CLUSTER to a directory made by "
           "`sh spec/support/cluster.sh up DIR`\n");
    CHECK(!"a running cluster");
    return 0;
}

TEST(cache_hit_makes_no_request)
{
    if (!ready())
        return;
    discovery *d = discovery_new(g_c, NULL, NULL);
    CHECK(discovery_find(d, "v1", "ConfigMap") == NULL);   /* nothing fetched yet */
    answer a = lookup(d, "v1", "ConfigMap");
    CHECK(a.r != NULL);
    if (a.r) {
        CHECK_STR(a.r->resource, "configmaps");
        CHECK_STR(a.r->group, "");
        CHECK_STR(a.r->version, "v1");
        CHECK(a.r->namespaced && !a.r->has_status);
    }
    CHECK(discovery_get_stats(d).fetches == 1);
    unsigned long sent = kube_client_stats(g_c).requests;
    answer b = lookup(d, "v1", "Secret");   /* same group version: the cache */
    CHECK(b.r != NULL && !strcmp(b.r->resource, "secrets"));
    CHECK(discovery_get_stats(d).fetches == 1);
    CHECK(discovery_get_stats(d).hits == 1);
    CHECK(kube_client_stats(g_c).requests == sent);
    CHECK(discovery_find(d, "v1", "ConfigMap") == a.r);
    CHECK(discovery_find_resource(d, "v1", "configmaps") == a.r);
    discovery_free(d);
}

TEST(concurrent_lookups_share_one_fetch)
{
    if (!ready())
        return;
    discovery *d = discovery_new(g_c, NULL, NULL);
    static const char *kinds[] = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet",
                                  "Deployment", "NoSuchKind"};
    answer a[6] = {{0}};
    for (int i = 0; i < 6; i++)
        CHECK(discovery_lookup(d, "apps/v1", kinds[i], on_answer, &a[i]) != NULL);
    wait_all(a, 6);
    CHECK(discovery_get_stats(d).fetches == 1);
    for (int i = 0; i < 5; i++)
        CHECK(a[i].done == 1 && a[i].r && !strcmp(a[i].r->kind, kinds[i]));
    CHECK(a[0].r == a[4].r);
    CHECK(a[5].done == 1 && a[5].r == NULL);
    CHECK_STR(a[5].err.msg, "no resource for kind NoSuchKind in apps/v1 (is the CRD installed?)");
    discovery_free(d);
}

TEST(subresources_are_joined_to_their_resource)
{
    if (!ready())
        return;
    discovery *d = discovery_new(g_c, NULL, NULL);
    answer p = lookup(d, "v1", "Pod");
    CHECK(p.r && p.r->has_status && p.r->namespaced);
    answer n = lookup(d, "v1", "Namespace");
    CHECK(n.r && n.r->has_status && !n.r->namespaced);
    CHECK(discovery_find_resource(d, "v1", "pods") == p.r);
    CHECK(discovery_find_resource(d, "v1", "pods/status") == NULL);   /* not a resource */
    CHECK(discovery_find_resource(d, "v1", "pods/log") == NULL);
    answer dep = lookup(d, "apps/v1", "Deployment");
    CHECK(dep.r && dep.r->has_status);
    CHECK(discovery_get_stats(d).fetches == 2);
    discovery_free(d);
}

TEST(bad_api_versions_and_unserved_groups)
{
    if (!ready())
        return;
    discovery *d = discovery_new(g_c, NULL, NULL);
    answer a = lookup(d, "a/b/c", "X");
    CHECK(a.r == NULL && a.err.code == KL_EINVAL);
    CHECK_STR(a.err.msg, "invalid apiVersion \"a/b/c\"");
    answer b = lookup(d, "/v1", "X");
    CHECK(b.r == NULL && b.err.code == KL_EINVAL);
    CHECK(discovery_get_stats(d).fetches == 0);
    answer c = lookup(d, "nothing.klua.dev/v1", "Thing");
    CHECK(c.r == NULL && c.err.code == KL_EINVAL);
    CHECK_STR(c.err.msg, "no resource for kind Thing in nothing.klua.dev/v1 (is the CRD installed?)");
    CHECK(discovery_get_stats(d).fetches == 1);
    discovery_free(d);
}

TEST(cancelled_lookup_is_not_answered)
{
    if (!ready())
        return;
    discovery *d = discovery_new(g_c, NULL, NULL);
    answer a = {0}, b = {0};
    discovery_req *r = discovery_lookup(d, "v1", "Service", on_answer, &a);
    CHECK(discovery_lookup(d, "v1", "Service", on_answer, &b) != NULL);
    discovery_cancel(r);
    wait_all(&b, 1);
    CHECK(a.done == 0 && b.done == 1 && b.r != NULL);
    /* A cancelled cache hit too. */
    r = discovery_lookup(d, "v1", "Service", on_answer, &a);
    discovery_cancel(r);
    pause_ms(50);
    CHECK(a.done == 0);
    /* Freed with a lookup waiting: no callback, no leak (ASan). */
    discovery_lookup(d, "batch/v1", "Job", on_answer, &a);
    discovery_free(d);
    pause_ms(50);
    CHECK(a.done == 0);
}

static const char crd_json[] =
    "{\"apiVersion\":\"apiextensions.k8s.io/v1\",\"kind\":\"CustomResourceDefinition\","
    "\"metadata\":{\"name\":\"gadgets." GROUP "\"},\"spec\":{\"group\":\"" GROUP "\","
    "\"scope\":\"Cluster\",\"names\":{\"plural\":\"gadgets\",\"kind\":\"Gadget\"},"
    "\"versions\":[{\"name\":\"v1\",\"served\":true,\"storage\":true,"
    "\"subresources\":{\"status\":{}},\"schema\":{\"openAPIV3Schema\":{\"type\":\"object\","
    "\"x-kubernetes-preserve-unknown-fields\":true}}}]}}";

TEST(missing_kind_refreshes_at_a_bounded_rate)
{
    if (!ready())
        return;
    const char *crd_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    call("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets." GROUP,
         NULL);
    for (int i = 0; i < 300 && call("GET", "/apis/" GROUP "/v1", NULL) != 404; i++)
        pause_ms(100);
    discovery_opts o = {300};
    discovery *d = discovery_new(g_c, &o, NULL);
    answer a = lookup(d, GROUP "/v1", "Gadget");
    CHECK(a.r == NULL);
    CHECK_STR(a.err.msg, "no resource for kind Gadget in " GROUP "/v1 (is the CRD installed?)");
    CHECK(discovery_get_stats(d).fetches == 1);

    /* Asked again at once: answered by a refresh no sooner than 300 ms
     * after the first fetch; lookups meanwhile share it. */
    uint64_t t0 = loop_time_ms();
    answer b[3] = {{0}};
    for (int i = 0; i < 3; i++)
        discovery_lookup(d, GROUP "/v1", "Gadget", on_answer, &b[i]);
    wait_all(b, 3);
    CHECK(discovery_get_stats(d).fetches == 2);
    CHECK(b[0].at_ms - t0 >= 250);
    CHECK(b[0].r == NULL && b[2].r == NULL);

    CHECK(call("POST", crd_path, crd_json) == 201);
    uint64_t start = loop_time_ms(), end = start + WAIT_MS;
    const kube_resource *found = NULL;
    while (!found && loop_time_ms() < end) {
        answer c = lookup(d, GROUP "/v1", "Gadget");
        found = c.r;
    }
    CHECK(found != NULL);
    if (found) {
        CHECK_STR(found->resource, "gadgets");
        CHECK(!found->namespaced && found->has_status);
        unsigned long fetches = discovery_get_stats(d).fetches;
        /* at most one fetch per 300 ms while it was missing */
        CHECK(fetches <= 3 + (loop_time_ms() - start) / 300 + 1);
        answer again = lookup(d, GROUP "/v1", "Gadget");
        CHECK(again.r == found);
        CHECK(discovery_get_stats(d).fetches == fetches);
    }
    call("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets." GROUP,
         NULL);
    discovery_free(d);
}

TEST(records_stay_valid_across_refreshes)
{
    if (!ready())
        return;
    discovery_opts o = {50};
    discovery *d = discovery_new(g_c, &o, NULL);
    answer a = lookup(d, "v1", "ConfigMap");
    answer miss = lookup(d, "v1", "NoSuchKind");   /* forces a refresh of v1 */
    CHECK(miss.r == NULL);
    CHECK(discovery_get_stats(d).fetches == 2);
    CHECK(discovery_find(d, "v1", "ConfigMap") == a.r);   /* unchanged: same record */
    CHECK(a.r && !strcmp(a.r->resource, "configmaps"));
    discovery_free(d);
}

TEST(no_answer_is_an_error_and_not_cached)
{
    if (!ready())
        return;
    kl_err err = {0};
    kube_rest_config cfg = {0};
    cfg.server = strdup("https://127.0.0.1:1");
    kube_client_opts co = {0, 0, 1, 5000};   /* max_retries 1: refused is reported fast */
    kube_client *c = kube_client_new(g_loop, g_http, &cfg, &co, &err);
    CHECK(c != NULL);
    if (!c)
        return;
    discovery_opts o = {50};
    discovery *d = discovery_new(c, &o, NULL);
    answer a = lookup(d, "v1", "ConfigMap");
    CHECK(a.r == NULL && a.err.code == KL_EIO);
    CHECK(strncmp(a.err.msg, "discovery GET https://127.0.0.1:1/api/v1 failed: cannot connect",
                  62) == 0);
    answer b = lookup(d, "v1", "ConfigMap");   /* asked again: a new fetch */
    CHECK(b.r == NULL && b.err.code == KL_EIO);
    CHECK(discovery_get_stats(d).fetches == 2);
    discovery_free(d);
    kube_client_free(c);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    itest_connect(&g_loop, &g_http, &g_c);
    RUN(cache_hit_makes_no_request);
    RUN(concurrent_lookups_share_one_fetch);
    RUN(subresources_are_joined_to_their_resource);
    RUN(bad_api_versions_and_unserved_groups);
    RUN(cancelled_lookup_is_not_answered);
    RUN(missing_kind_refreshes_at_a_bounded_rate);
    RUN(records_stay_valid_across_refreshes);
    RUN(no_answer_is_an_error_and_not_cached);
    kube_client_free(g_c);
    http_client_free(g_http);
    loop_free(g_loop);
    curl_global_cleanup();
    DONE();
}
