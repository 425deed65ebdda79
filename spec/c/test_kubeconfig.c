/* test_kubeconfig.c - kubeconfig loading, merging, context selection, in-cluster config
 * and the error messages a user sees. Fixtures live in spec/c/fixtures/kubeconfig/; the
 * tests run from the repo root.
 */
#include "harness.h"
#include "kubeconfig.h"
#include "kubeconfig_model.h" /* KC_MAX_FILE */
#include "kubeconfig_yaml.h"  /* KC_MAX_DEPTH */

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIX "spec/c/fixtures/kubeconfig"
#define SECRET "s3cr3t-t0ken-value" /* the token of the fixtures: never in a message */

static char cwd[PATH_MAX];

/* Absolute path of a fixture file, as the loader reports resolved paths. */
static const char *fix_abs(const char *rel)
{
    static char buf[PATH_MAX + 256];
    snprintf(buf, sizeof buf, "%s/" FIX "/%s", cwd, rel);
    return buf;
}

/* Start from a clean environment so the tester's own kubeconfig never leaks in. */
static void reset_env(void)
{
    unsetenv("KUBECONFIG");
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    unsetenv("KLUA_SERVICEACCOUNT_DIR");
}

/* Load with --kubeconfig path (and optional --context / --namespace). */
static int load(const char *path, const char *context, const char *ns, kube_rest_config *c,
                kl_err *err)
{
    kubeconfig_opts o = {path, context, ns};
    reset_env();
    kl_err_clear(err);
    return kubeconfig_load(&o, c, err);
}

/* The error message of a load that must fail ("" if it succeeded). */
static const char *load_error(const char *path, const char *context)
{
    static kl_err err;
    kube_rest_config c;
    if (load(path, context, NULL, &c, &err) == 0) {
        kube_rest_config_free(&c);
        return "";
    }
    return err.msg;
}

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

TEST(full_file_default_context)
{
    kube_rest_config c;
    kl_err err;
    CHECK(load(FIX "/full.yaml", NULL, NULL, &c, &err) == 0);
    CHECK_STR(c.server, "https://dev.example.com:6443"); /* trailing '/' stripped */
    CHECK_STR(c.ca_file, fix_abs("certs/ca.crt"));
    CHECK(c.ca_data == NULL);
    CHECK_STR(c.tls_server_name, "kubernetes.default");
    CHECK_STR(c.token, SECRET);
    CHECK(c.token_file == NULL && c.cert_file == NULL && c.exec == NULL);
    CHECK_STR(c.namespace, "team-a");
    CHECK_STR(c.context, "dev");
    CHECK_STR(c.cluster_name, "dev-cluster");
    CHECK_STR(c.source, FIX "/full.yaml");
    CHECK(c.insecure == 0 && c.in_cluster == 0);
    kube_rest_config_free(&c);
}

TEST(context_override_and_namespace_precedence)
{
    kube_rest_config c;
    kl_err err;
    /* --context picks another context; it has no namespace, so "default" */
    CHECK(load(FIX "/full.yaml", "prod", NULL, &c, &err) == 0);
    CHECK_STR(c.context, "prod");
    CHECK_STR(c.server, "https://prod.example.com");
    CHECK_STR(c.namespace, "default");
    CHECK(c.token == NULL);
    kube_rest_config_free(&c);
    /* --namespace beats the context's namespace */
    CHECK(load(FIX "/full.yaml", "certs", "override", &c, &err) == 0);
    CHECK_STR(c.namespace, "override");
    kube_rest_config_free(&c);
    CHECK(load(FIX "/full.yaml", "certs", NULL, &c, &err) == 0);
    CHECK_STR(c.namespace, "team-c");
    kube_rest_config_free(&c);
    /* a context without a user is anonymous access */
    CHECK(load(FIX "/full.yaml", "anonymous", NULL, &c, &err) == 0);
    CHECK(c.token == NULL && c.cert_data == NULL && c.username == NULL && c.exec == NULL);
    kube_rest_config_free(&c);
}

TEST(base64_data_is_decoded)
{
    kube_rest_config c;
    kl_err err;
    static const char ca[] = "-----BEGIN CERTIFICATE-----\nprod CA\n-----END CERTIFICATE-----\n";
    static const char key[] = "-----BEGIN PRIVATE KEY-----\ndata key\n-----END PRIVATE KEY-----\n";
    CHECK(load(FIX "/full.yaml", "prod", NULL, &c, &err) == 0);
    CHECK(c.ca_data_len == strlen(ca) && c.ca_data && memcmp(c.ca_data, ca, c.ca_data_len) == 0);
    CHECK(c.ca_file == NULL);
    CHECK(c.cert_data && strstr(c.cert_data, "data client") != NULL);
    CHECK(c.cert_data_len == strlen(c.cert_data));
    CHECK(c.key_data_len == strlen(key) && c.key_data &&
          memcmp(c.key_data, key, c.key_data_len) == 0);
    kube_rest_config_free(&c);
}

TEST(relative_paths_resolve_against_the_file)
{
    kube_rest_config c;
    kl_err err;
    CHECK(load(FIX "/full.yaml", "certs", NULL, &c, &err) == 0);
    CHECK_STR(c.cert_file, fix_abs("certs/client.crt"));
    CHECK_STR(c.key_file, fix_abs("certs/client.key")); /* "./certs/../certs/" cleaned */
    CHECK_STR(c.token_file, fix_abs("certs/token"));
    kube_rest_config_free(&c);
}

TEST(insecure_and_basic_auth)
{
    kube_rest_config c;
    kl_err err;
    CHECK(load(FIX "/full.yaml", "local", NULL, &c, &err) == 0);
    CHECK(c.insecure == 1);
    CHECK_STR(c.server, "https://localhost:8080"); /* no scheme: https because TLS is set up */
    CHECK_STR(c.username, "admin");
    CHECK_STR(c.password, "hunter2-password");
    kube_rest_config_free(&c);
}

TEST(kubeconfig_env_merges_first_wins)
{
    kube_rest_config c;
    kl_err err;
    kubeconfig_opts o = {NULL, NULL, NULL};
    reset_env();
    /* empty entries and missing files are skipped */
    setenv("KUBECONFIG", "::" FIX "/merge/a/config:" FIX "/nope.yaml:" FIX "/merge/b/config:", 1);
    CHECK(kubeconfig_load(&o, &c, &err) == 0);
    /* a has no current-context, so b's applies; its cluster exists only in b */
    CHECK_STR(c.context, "from-b");
    CHECK_STR(c.server, "https://only-b.example.com");
    CHECK_STR(c.ca_file, fix_abs("merge/b/ca.crt"));
    CHECK_STR(c.token, SECRET); /* user "shared" comes from a, which is first */
    CHECK_STR(c.source, FIX "/merge/b/config");
    kube_rest_config_free(&c);

    o.context = "shared"; /* defined in both: a's context, cluster and user win */
    CHECK(kubeconfig_load(&o, &c, &err) == 0);
    CHECK_STR(c.server, "https://a.example.com");
    CHECK_STR(c.ca_file, fix_abs("merge/a/ca.crt"));
    CHECK_STR(c.namespace, "from-a");
    CHECK_STR(c.source, FIX "/merge/a/config");
    kube_rest_config_free(&c);

    /* the order decides: b first makes b's names win */
    setenv("KUBECONFIG", FIX "/merge/b/config:" FIX "/merge/a/config", 1);
    CHECK(kubeconfig_load(&o, &c, &err) == 0);
    CHECK_STR(c.server, "https://b.example.com");
    CHECK_STR(c.namespace, "from-b");
    CHECK_STR(c.token, "token-of-b");
    kube_rest_config_free(&c);

    /* an empty file in the list is skipped; a list of nothing usable is an error */
    setenv("KUBECONFIG", FIX "/empty.yaml:" FIX "/merge/a/config", 1);
    o.context = NULL;
    CHECK(kubeconfig_load(&o, &c, &err) == -1); /* a alone has no current-context */
    CHECK(contains(err.msg, "no current-context"));
    setenv("KUBECONFIG", FIX "/nope1:" FIX "/nope2", 1);
    CHECK(kubeconfig_load(&o, &c, &err) == -1);
    CHECK(contains(err.msg, "KUBECONFIG"));
    reset_env();
}

TEST(resolve_merges_parsed_files)
{
    static const char a[] = "clusters:\n- name: x\n  cluster: {server: 'https://a'}\n"
                            "contexts:\n- name: x\n  context: {cluster: x}\n";
    static const char b[] = "current-context: x\n"
                            "clusters:\n- name: x\n  cluster: {server: 'https://b'}\n";
    kubeconfig_file *f[2] = {NULL, NULL};
    kube_rest_config c;
    kl_err err;
    CHECK(kubeconfig_parse(a, strlen(a), "/tmp/a", &f[0], &err) == 0);
    CHECK(kubeconfig_parse(b, strlen(b), "/tmp/b", &f[1], &err) == 0);
    CHECK(kubeconfig_resolve(f, 2, NULL, &c, &err) == 0);
    CHECK_STR(c.server, "https://a");
    CHECK_STR(c.source, "/tmp/a");
    kube_rest_config_free(&c);
    kubeconfig_file_free(f[0]);
    kubeconfig_file_free(f[1]);
}

TEST(exec_plugin)
{
    kube_rest_config c;
    kl_err err;
    CHECK(load(FIX "/exec.yaml", NULL, NULL, &c, &err) == 0);
    CHECK(c.exec != NULL);
    if (c.exec) {
        CHECK_STR(c.exec->api_version, "client.authentication.k8s.io/v1");
        CHECK_STR(c.exec->command, fix_abs("bin/get-token")); /* has a '/': relative to file */
        CHECK(c.exec->nargs == 3);
        if (c.exec->nargs == 3) {
            CHECK_STR(c.exec->args[0], "--cluster");
            CHECK_STR(c.exec->args[2], "--verbose");
        }
        CHECK(c.exec->nenv == 2);
        if (c.exec->nenv == 2) {
            CHECK_STR(c.exec->env[0], "AWS_PROFILE=dev");
            CHECK_STR(c.exec->env[1], "EMPTY=");
        }
        CHECK_STR(c.exec->install_hint, "install get-token from example.com");
        CHECK(c.exec->provide_cluster_info == 1);
        CHECK_STR(c.exec->interactive_mode, "Never");
    }
    kube_rest_config_free(&c);
    CHECK(load(FIX "/exec.yaml", "on-path", NULL, &c, &err) == 0);
    CHECK(c.exec != NULL);
    if (c.exec) {
        CHECK_STR(c.exec->command, "kubelogin"); /* bare name: left for PATH */
        CHECK(c.exec->nargs == 0 && c.exec->nenv == 0);
        CHECK_STR(c.exec->interactive_mode, "IfAvailable");
    }
    kube_rest_config_free(&c);
}

TEST(json_kubeconfig)
{
    kube_rest_config c;
    kl_err err;
    CHECK(load(FIX "/config.json", NULL, NULL, &c, &err) == 0);
    CHECK_STR(c.server, "https://json.example.com");
    CHECK_STR(c.namespace, "js");
    CHECK(c.insecure == 1);
    kube_rest_config_free(&c);
}

/* Writes name in dir with content (NULL: no file). */
static void put_file(const char *dir, const char *name, const char *content)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    unlink(p);
    if (!content)
        return;
    FILE *f = fopen(p, "w");
    if (f) {
        fputs(content, f);
        fclose(f);
    }
}

TEST(in_cluster)
{
    char dir[] = "/tmp/klua-sa-XXXXXX", want[PATH_MAX + 16];
    kube_rest_config c;
    kl_err err;
    CHECK(mkdtemp(dir) != NULL);
    put_file(dir, "token", "in-cluster-token\n");
    put_file(dir, "ca.crt", "-----BEGIN CERTIFICATE-----\n");
    put_file(dir, "namespace", "klua-system\n");
    reset_env();
    setenv("KLUA_SERVICEACCOUNT_DIR", dir, 1);
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);

    CHECK(kubeconfig_incluster(&c, &err) == 0);
    CHECK_STR(c.server, "https://10.96.0.1:443");
    snprintf(want, sizeof want, "%s/token", dir);
    CHECK_STR(c.token_file, want);
    CHECK(c.token == NULL);
    snprintf(want, sizeof want, "%s/ca.crt", dir);
    CHECK_STR(c.ca_file, want);
    CHECK_STR(c.namespace, "klua-system");
    CHECK(c.in_cluster == 1);
    kube_rest_config_free(&c);

    /* kubeconfig_load falls back to it when neither --kubeconfig nor KUBECONFIG is set */
    kubeconfig_opts o = {NULL, NULL, "ns-flag"};
    setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
    CHECK(kubeconfig_load(&o, &c, &err) == 0);
    CHECK_STR(c.server, "https://[fd00::1]:443");
    CHECK_STR(c.namespace, "ns-flag");
    CHECK(c.in_cluster == 1);
    kube_rest_config_free(&c);

    /* no namespace file: "default" */
    put_file(dir, "namespace", NULL);
    CHECK(kubeconfig_incluster(&c, &err) == 0);
    CHECK_STR(c.namespace, "default");
    kube_rest_config_free(&c);

    /* no token: an error naming the file */
    put_file(dir, "token", NULL);
    CHECK(kubeconfig_incluster(&c, &err) == -1);
    snprintf(want, sizeof want, "%s/token", dir);
    CHECK(contains(err.msg, want));
    CHECK(contains(err.msg, "No such file or directory"));

    unsetenv("KUBERNETES_SERVICE_PORT");
    CHECK(kubeconfig_incluster(&c, &err) == -1);
    CHECK(contains(err.msg, "KUBERNETES_SERVICE_PORT"));

    put_file(dir, "ca.crt", NULL);
    rmdir(dir);
    reset_env();
}

TEST(home_kube_config_is_the_last_resort)
{
    char home[] = "/tmp/klua-home-XXXXXX", p[PATH_MAX];
    const char *old = getenv("HOME");
    char *saved = old ? strdup(old) : NULL;
    kube_rest_config c;
    kl_err err;
    kubeconfig_opts o = {NULL, NULL, NULL};
    CHECK(mkdtemp(home) != NULL);
    reset_env();
    setenv("HOME", home, 1);
    CHECK(kubeconfig_load(&o, &c, &err) == -1);
    snprintf(p, sizeof p, "%s/.kube/config", home);
    CHECK(contains(err.msg, p) && contains(err.msg, "does not exist"));

    snprintf(p, sizeof p, "%s/.kube", home);
    mkdir(p, 0700);
    put_file(p, "config",
             "current-context: h\nclusters: [{name: h, cluster: {server: 'https://h'}}]\n"
             "contexts: [{name: h, context: {cluster: h}}]\n");
    CHECK(kubeconfig_load(&o, &c, &err) == 0);
    CHECK_STR(c.server, "https://h");
    kube_rest_config_free(&c);
    put_file(p, "config", NULL);
    rmdir(p);
    rmdir(home);
    if (saved)
        setenv("HOME", saved, 1);
    free(saved);
}

TEST(error_missing_file)
{
    const char *m = load_error(FIX "/does-not-exist.yaml", NULL);
    CHECK_STR(m, "cannot read kubeconfig " FIX "/does-not-exist.yaml: No such file or directory");
}

TEST(error_malformed_yaml)
{
    const char *m = load_error(FIX "/malformed.yaml", NULL);
    /* the second ": " on line 5 (kubectl reports the same line) */
    CHECK_STR(m, "kubeconfig " FIX "/malformed.yaml: invalid YAML at line 5 column 39: "
                 "mapping values are not allowed in this context");
    CHECK(!contains(m, SECRET));
    kubeconfig_file *f = NULL;
    kl_err err;
    static const char tab[] = "clusters:\n- name: a\n\tcluster: {}\n";
    CHECK(kubeconfig_parse(tab, strlen(tab), "tab.yaml", &f, &err) == -1);
    CHECK(contains(err.msg, "tab.yaml: invalid YAML at line 3 column 1"));
}

TEST(error_unknown_context)
{
    CHECK_STR(load_error(FIX "/full.yaml", "staging"),
              "context \"staging\" not found in " FIX "/full.yaml");
    CHECK(contains(load_error(FIX "/full.yaml", "dangling-user"),
                   "user \"nobody\" of context \"dangling-user\" not found"));
    const char *m = load_error(FIX "/no-context.yaml", NULL);
    CHECK(contains(m, "no current-context is set in kubeconfig " FIX "/no-context.yaml"));
    CHECK(contains(m, "--context"));
}

TEST(error_missing_cert_file)
{
    char want[PATH_MAX + 256];
    snprintf(want, sizeof want,
             "cannot read client-key %s from kubeconfig " FIX "/missing-cert.yaml: "
             "No such file or directory",
             fix_abs("nope/missing.key"));
    CHECK_STR(load_error(FIX "/missing-cert.yaml", NULL), want);
}

TEST(error_invalid_base64)
{
    const char *m = load_error(FIX "/bad-base64.yaml", NULL);
    CHECK(contains(m, "kubeconfig " FIX "/bad-base64.yaml: user \"u\": client-key-data is not "
                      "valid base64 (line 11)"));
    CHECK(!contains(m, "c2VjcmV0")); /* the key data itself is not echoed */
    /* unpadded, bad padding, and padding followed by more data are refused */
    static const char *const bad[] = {"Zm9v\n=", "Zm9vYg", "Zm9vY===", "Zg==Zg==", "Z==="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char doc[256];
        kubeconfig_file *f = NULL;
        kl_err err;
        snprintf(doc, sizeof doc, "clusters:\n- name: c\n  cluster:\n    "
                                  "certificate-authority-data: \"%s\"\n", bad[i]);
        CHECK(kubeconfig_parse(doc, strlen(doc), "b.yaml", &f, &err) == -1);
        kubeconfig_file_free(f);
    }
}

TEST(base64_accepts_line_breaks_and_padding)
{
    static const char doc[] = "current-context: c\n"
                              "clusters:\n- name: c\n  cluster:\n    server: https://c\n"
                              "    certificate-authority-data: \"Zm9v\\nYmE=\\r\\n\"\n"
                              "contexts:\n- name: c\n  context: {cluster: c}\n";
    kubeconfig_file *f = NULL;
    kube_rest_config c;
    kl_err err;
    CHECK(kubeconfig_parse(doc, strlen(doc), "/x/y", &f, &err) == 0);
    CHECK(f && kubeconfig_resolve(&f, 1, NULL, &c, &err) == 0);
    CHECK(c.ca_data_len == 5 && memcmp(c.ca_data, "fooba", 5) == 0);
    kube_rest_config_free(&c);
    kubeconfig_file_free(f);
}

TEST(error_empty_file)
{
    CHECK_STR(load_error(FIX "/empty.yaml", NULL), "kubeconfig " FIX "/empty.yaml is empty");
    kubeconfig_file *f = NULL;
    kl_err err;
    CHECK(kubeconfig_parse("", 0, "/e", &f, &err) == -1);
    CHECK_STR(err.msg, "kubeconfig /e is empty");
    CHECK(f == NULL);
}

TEST(error_wrong_types)
{
    CHECK_STR(load_error(FIX "/wrong-types.yaml", NULL),
              "kubeconfig " FIX "/wrong-types.yaml: clusters must be a list (line 3)");
    CHECK(contains(load_error(FIX "/not-a-mapping.yaml", NULL), "must hold a mapping"));
    static const char *const docs[] = {
        "clusters:\n- name: c\n  cluster:\n    server: [a]\n",
        "clusters:\n- name: c\n  cluster:\n    insecure-skip-tls-verify: maybe\n",
        "users:\n- name: u\n  user:\n    exec:\n      args: x\n",
        "users:\n- name: u\n  user: {}\n- name: u\n  user: {}\n",
        "contexts:\n- just-a-string\n",
    };
    static const char *const want[] = {
        "cluster \"c\": server must be a string (line 4)",
        "insecure-skip-tls-verify must be true or false",
        "exec.args must be a list",
        "user \"u\" is defined twice",
        "contexts[0] must be a mapping",
    };
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        kubeconfig_file *f = NULL;
        kl_err err;
        CHECK(kubeconfig_parse(docs[i], strlen(docs[i]), "t.yaml", &f, &err) == -1);
        CHECK(contains(err.msg, want[i]));
        if (!contains(err.msg, want[i]))
            printf("#   got: %s\n", err.msg);
    }
}

TEST(error_alias_amplification)
{
    /* one 64 KiB scalar referenced 100 times would copy 6.4 MB out of a 64 KiB file */
    size_t big = 65536, cap = big + 1024;
    char *doc = malloc(cap);
    CHECK(doc != NULL);
    if (!doc)
        return;
    size_t n = (size_t)snprintf(doc, cap, "users:\n- name: u\n  user:\n    exec:\n"
                                          "      command: &big ");
    memset(doc + n, 'x', big);
    n += big;
    n += (size_t)snprintf(doc + n, cap - n, "\n      args: [");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(doc + n, cap - n, "*big,");
    n += (size_t)snprintf(doc + n, cap - n, "]\n");
    kubeconfig_file *f = NULL;
    kl_err err;
    CHECK(kubeconfig_parse(doc, n, "bomb.yaml", &f, &err) == -1);
    CHECK_STR(err.msg, "kubeconfig bomb.yaml: YAML aliases expand to too much data");
    kubeconfig_file_free(f);
    free(doc);
}

TEST(error_conflicts_found_at_load)
{
    static const char *const docs[] = {
        "current-context: c\nclusters: [{name: c, cluster: {}}]\n"
        "contexts: [{name: c, context: {cluster: c}}]\n",
        "current-context: c\nclusters: [{name: c, cluster: {server: s, insecure-skip-tls-verify: "
        "true, certificate-authority-data: Zm9v}}]\ncontexts: [{name: c, context: {cluster: c}}]\n",
        "current-context: c\nclusters: [{name: c, cluster: {server: s}}]\n"
        "users: [{name: u, user: {token: " SECRET ", username: a}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n",
        "current-context: c\nclusters: [{name: c, cluster: {server: s}}]\n"
        "users: [{name: u, user: {client-certificate-data: Zm9v}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n",
        "current-context: c\nclusters: [{name: c, cluster: {server: s}}]\n"
        "users: [{name: u, user: {exec: {command: x}}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n",
        "current-context: c\nclusters: [{name: c, cluster: {server: s}}]\n"
        "users: [{name: u, user: {tokenFile: /nonexistent/token}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n",
    };
    static const char *const want[] = {
        "cluster \"c\" in kubeconfig t.yaml has no server",
        "insecure-skip-tls-verify together with a certificate authority",
        "only one authentication method",
        "client certificate without a client key",
        "exec needs an apiVersion",
        "cannot read tokenFile /nonexistent/token from kubeconfig t.yaml",
    };
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        kubeconfig_file *f = NULL;
        kube_rest_config c;
        kl_err err;
        kl_err_clear(&err);
        CHECK(kubeconfig_parse(docs[i], strlen(docs[i]), "t.yaml", &f, &err) == 0);
        CHECK(f && kubeconfig_resolve(&f, 1, NULL, &c, &err) == -1);
        CHECK(contains(err.msg, want[i]));
        CHECK(!contains(err.msg, SECRET));
        if (!contains(err.msg, want[i]))
            printf("#   got: %s\n", err.msg);
        kubeconfig_file_free(f);
    }
}

TEST(errors_never_show_the_token)
{
    static const char *const files[] = {"malformed.yaml", "bad-base64.yaml", "missing-cert.yaml",
                                        "no-context.yaml"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[256];
        snprintf(p, sizeof p, FIX "/%s", files[i]);
        const char *m = load_error(p, NULL);
        CHECK(m[0] != '\0');
        CHECK(!contains(m, SECRET));
    }
    const char *m = load_error(FIX "/full.yaml", "nope");
    CHECK(m[0] != '\0');
    CHECK(!contains(m, SECRET));
}

TEST(token_with_control_characters_is_refused)
{
    /* CR LF would put a second header on every request */
    static const char *const toks[] = {"s3cr3t\\r\\nX-Injected: yes", "s3cr3t\\nx", "s3cr3t\\tx",
                                       "s3cr3t\\x7fx", "s3cr3t\\x01"};
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) {
        char doc[512];
        snprintf(doc, sizeof doc,
                 "clusters: [{name: c, cluster: {server: 'https://h'}}]\n"
                 "users: [{name: u, user: {token: \"%s\"}}]\n"
                 "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
                 "current-context: x\n",
                 toks[i]);
        kubeconfig_file *f = NULL;
        kube_rest_config c;
        kl_err err = {0};
        CHECK(kubeconfig_parse(doc, strlen(doc), "/k/t.yaml", &f, &err) == 0);
        CHECK(f && kubeconfig_resolve(&f, 1, NULL, &c, &err) == -1);
        CHECK(contains(err.msg, "user \"u\" in kubeconfig /k/t.yaml: token contains a"));
        CHECK(i > 1 || contains(err.msg, "a line break (CR or LF) at byte 7"));
        CHECK(i < 2 || contains(err.msg, "a control character"));
        CHECK(!contains(err.msg, "s3cr3t") && !contains(err.msg, "Injected"));
        kubeconfig_file_free(f);
    }
    kl_err err = {0};
    CHECK(kubeconfig_check_token("abc.DEF-_~+/=", 13, "t", &err) == 0);
    CHECK(kubeconfig_check_token("ab\0c", 4, "token file /f", &err) == -1);
    CHECK(contains(err.msg, "token file /f contains a control character at byte 3"));
    CHECK(kubeconfig_check_token("", 0, "t", &err) == 0);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Parse doc; returns the error message ("" when it parsed) and the time taken. */
static const char *parse_timed(const char *doc, size_t n, double *secs)
{
    static kl_err err;
    kubeconfig_file *f = NULL;
    kl_err_clear(&err);
    double t0 = now_s();
    int rc = kubeconfig_parse(doc, n, "/k/deep.yaml", &f, &err);
    *secs = now_s() - t0;
    kubeconfig_file_free(f);
    return rc == 0 ? "" : err.msg;
}

TEST(deep_or_huge_yaml_is_refused_quickly)
{
    /* 100,000 nested flow sequences took 16 s before the bound (quadratic) */
    size_t n = 100000;
    kl_buf b = KL_BUF_INIT;
    kl_buf_puts(&b, "current-context: x\nclusters: ");
    for (size_t i = 0; i < n; i++)
        kl_buf_putc(&b, '[');
    for (size_t i = 0; i < n; i++)
        kl_buf_putc(&b, ']');
    kl_buf_putc(&b, '\n');
    double secs;
    const char *m = parse_timed(b.data, b.len, &secs);
    CHECK_STR(m, "kubeconfig /k/deep.yaml: YAML nested deeper than 64 levels (line 2)");
    printf("#   100k-deep flow sequences refused in %.3f s\n", secs);
    CHECK(secs < 1.0);

    /* block mappings, one level per line */
    kl_buf_reset(&b);
    for (int i = 0; i < 300; i++)
        kl_buf_printf(&b, "%*sk:\n", i, "");
    m = parse_timed(b.data, b.len, &secs);
    CHECK(contains(m, "YAML nested deeper than 64 levels (line 65)"));

    /* flow mappings in an ignored key, up to the bound, are fine */
    kl_buf_reset(&b);
    kl_buf_puts(&b, "preferences: ");
    for (int i = 1; i < KC_MAX_DEPTH; i++)
        kl_buf_puts(&b, "{a: ");
    kl_buf_puts(&b, "1");
    for (int i = 1; i < KC_MAX_DEPTH; i++)
        kl_buf_putc(&b, '}');
    kl_buf_puts(&b, "\ncurrent-context: x\n");
    CHECK_STR(parse_timed(b.data, b.len, &secs), "");
    kl_buf_free(&b);

    /* past the size bound: refused before any parsing */
    size_t big = (size_t)KC_MAX_FILE + 1;
    char *doc = malloc(big);
    CHECK(doc != NULL);
    if (doc) {
        memset(doc, '\n', big);
        m = parse_timed(doc, big, &secs);
        CHECK_STR(m, "kubeconfig /k/deep.yaml is larger than 16 MiB; refusing to parse it");
        CHECK(secs < 0.1);
        free(doc);
    }
    /* and from a file, which is read no further than the bound */
    char path[] = "/tmp/klua-kc-huge-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(ftruncate(fd, (off_t)KC_MAX_FILE * 4) == 0); /* 64 MiB, sparse */
        close(fd);
        double t0 = now_s();
        m = load_error(path, NULL);
        CHECK(contains(m, "is larger than 16 MiB; refusing to parse it"));
        CHECK(now_s() - t0 < 1.0);
        unlink(path);
    }
}

int main(void)
{
    if (!getcwd(cwd, sizeof cwd))
        return 1;
    RUN(full_file_default_context);
    RUN(context_override_and_namespace_precedence);
    RUN(base64_data_is_decoded);
    RUN(relative_paths_resolve_against_the_file);
    RUN(insecure_and_basic_auth);
    RUN(kubeconfig_env_merges_first_wins);
    RUN(resolve_merges_parsed_files);
    RUN(exec_plugin);
    RUN(json_kubeconfig);
    RUN(in_cluster);
    RUN(home_kube_config_is_the_last_resort);
    RUN(error_missing_file);
    RUN(error_malformed_yaml);
    RUN(error_unknown_context);
    RUN(error_missing_cert_file);
    RUN(error_invalid_base64);
    RUN(base64_accepts_line_breaks_and_padding);
    RUN(error_empty_file);
    RUN(error_wrong_types);
    RUN(error_alias_amplification);
    RUN(error_conflicts_found_at_load);
    RUN(errors_never_show_the_token);
    RUN(token_with_control_characters_is_refused);
    RUN(deep_or_huge_yaml_is_refused_quickly);
    DONE();
}
