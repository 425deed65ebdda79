/* test_leader.c - the pure parts of leader election (src/leader.c):
 * duration validation, the expiry rule judged by our own observation
 * time, the Lease's record in and out, the time format, identities. */
#include "harness.h"

#include "leader.h"

#include <stdlib.h>
#include <string.h>

TEST(validate_follows_client_go)
{
    kl_err err = {0};
    CHECK(leader_validate(15000, 10000, 2000, &err) == 0);
    CHECK(leader_validate(4000, 3000, 1000, &err) == 0);
    /* lease must exceed renew */
    CHECK(leader_validate(10000, 10000, 2000, &err) != 0);
    CHECK(strstr(err.msg, "--leader-lease-duration") != NULL);
    /* renew must exceed 1.2 x retry: 2.4 s is not more than 1.2 x 2 s */
    CHECK(leader_validate(15000, 2400, 2000, &err) != 0);
    CHECK(strstr(err.msg, "--leader-retry-period") != NULL);
    CHECK(leader_validate(15000, 2401, 2000, &err) == 0);
    CHECK(leader_validate(15000, 10000, 0, &err) != 0);
}

TEST(expiry_is_judged_by_our_observation_time)
{
    leader_record r = {0};
    r.holder = "other_1";
    r.lease_seconds = 15;
    /* seen changing at t=1000 ms: held until 16000, free from then on */
    CHECK(leader_held_by_other(&r, "me_1", 1000, 1000) == 1);
    CHECK(leader_held_by_other(&r, "me_1", 1000, 15999) == 1);
    CHECK(leader_held_by_other(&r, "me_1", 1000, 16000) == 0);
    /* the renewTime inside the record plays no part: a holder whose clock
     * is far behind is not expired early */
    r.renew_time = "2000-01-01T00:00:00.000000Z";
    CHECK(leader_held_by_other(&r, "me_1", 1000, 2000) == 1);
    /* our own record, and a released one, are never held against us */
    CHECK(leader_held_by_other(&r, "other_1", 1000, 2000) == 0);
    r.holder = "";
    CHECK(leader_held_by_other(&r, "me_1", 1000, 2000) == 0);
    r.holder = NULL;
    CHECK(leader_held_by_other(&r, "me_1", 1000, 2000) == 0);
}

TEST(lease_parse_reads_spec_and_keeps_metadata)
{
    const char *js =
        "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\","
        "\"metadata\":{\"name\":\"klua\",\"namespace\":\"ns1\",\"resourceVersion\":\"42\"},"
        "\"spec\":{\"holderIdentity\":\"pod-a_0011\",\"leaseDurationSeconds\":15,"
        "\"acquireTime\":\"2024-05-01T10:00:00.000000Z\","
        "\"renewTime\":\"2024-05-01T10:00:08.123456Z\",\"leaseTransitions\":3}}";
    leader_record r = {0};
    kl_buf meta = KL_BUF_INIT;
    kl_err err = {0};
    CHECK(leader_lease_parse(js, strlen(js), &r, &meta, &err) == 0);
    CHECK_STR(r.holder, "pod-a_0011");
    CHECK(r.lease_seconds == 15);
    CHECK(r.transitions == 3);
    CHECK_STR(r.acquire_time, "2024-05-01T10:00:00.000000Z");
    CHECK_STR(r.renew_time, "2024-05-01T10:00:08.123456Z");
    CHECK_STR(meta.data, "{\"name\":\"klua\",\"namespace\":\"ns1\",\"resourceVersion\":\"42\"}");

    /* an empty spec (as kubectl create may leave it) is nobody's lease */
    const char *empty = "{\"metadata\":{\"name\":\"klua\"},\"spec\":{}}";
    leader_record e = {0};
    CHECK(leader_lease_parse(empty, strlen(empty), &e, NULL, &err) == 0);
    CHECK(e.holder == NULL && e.lease_seconds == 0 && e.transitions == 0);
    leader_record other = {0};
    CHECK(leader_record_equal(&e, &other));
    CHECK(!leader_record_equal(&e, &r));
    CHECK(leader_lease_parse("{\"spec\":{}}", 11, &e, NULL, &err) != 0);
    CHECK(leader_lease_parse("not json", 8, &e, NULL, &err) != 0);
    leader_record_free(&r);
    leader_record_free(&e);
    kl_buf_free(&meta);
}

TEST(lease_json_for_create_and_update)
{
    leader_record r = {0};
    r.holder = "pod \"a\"";
    r.lease_seconds = 4;
    r.acquire_time = "2024-05-01T10:00:00.000000Z";
    r.renew_time = "2024-05-01T10:00:01.000000Z";
    r.transitions = 2;
    kl_buf out = KL_BUF_INIT;
    CHECK(leader_lease_json(NULL, "ns1", "klua", &r, &out) == 0);
    CHECK_STR(out.data,
              "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\","
              "\"metadata\":{\"name\":\"klua\",\"namespace\":\"ns1\"},"
              "\"spec\":{\"holderIdentity\":\"pod \\\"a\\\"\",\"leaseDurationSeconds\":4,"
              "\"acquireTime\":\"2024-05-01T10:00:00.000000Z\","
              "\"renewTime\":\"2024-05-01T10:00:01.000000Z\",\"leaseTransitions\":2}}");
    /* update: the metadata read before (with its resourceVersion) goes back;
     * a released record names nobody */
    kl_buf_reset(&out);
    leader_record rel = {0};
    rel.holder = "";
    rel.lease_seconds = 1;
    CHECK(leader_lease_json("{\"name\":\"klua\",\"resourceVersion\":\"7\"}", "ns1", "klua", &rel,
                            &out) == 0);
    CHECK_STR(out.data, "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\","
                        "\"metadata\":{\"name\":\"klua\",\"resourceVersion\":\"7\"},"
                        "\"spec\":{\"holderIdentity\":\"\",\"leaseDurationSeconds\":1,"
                        "\"leaseTransitions\":0}}");
    /* no metadata read (a failed read): name and namespace, no resourceVersion */
    kl_buf_reset(&out);
    CHECK(leader_lease_json("", "ns1", "klua", &rel, &out) == 0);
    CHECK(strstr(out.data, "\"metadata\":{\"name\":\"klua\",\"namespace\":\"ns1\"}") != NULL);
    /* what we write, we read back the same */
    leader_record back = {0};
    kl_err err = {0};
    kl_buf_reset(&out);
    CHECK(leader_lease_json(NULL, "ns1", "klua", &r, &out) == 0);
    CHECK(leader_lease_parse(out.data, out.len, &back, NULL, &err) == 0);
    CHECK(leader_record_equal(&back, &r));
    leader_record_free(&back);
    kl_buf_free(&out);
}

TEST(time_is_rfc3339_micro_utc)
{
    char t[32];
    leader_format_time(0, t);
    CHECK_STR(t, "1970-01-01T00:00:00.000000Z");
    leader_format_time(1714557608123456LL, t);
    CHECK_STR(t, "2024-05-01T10:00:08.123456Z");
}

TEST(identity_is_pod_name_plus_random_suffix)
{
    setenv("POD_NAME", "klua-7d9f-abcde", 1);
    char *a = leader_identity_new(), *b = leader_identity_new();
    CHECK(a && b);
    if (a && b) {
        CHECK(strncmp(a, "klua-7d9f-abcde_", 16) == 0);
        CHECK(strlen(a) == 16 + 16);
        CHECK(strcmp(a, b) != 0);   /* two processes never share one */
    }
    free(a);
    free(b);
    unsetenv("POD_NAME");
    char *c = leader_identity_new();
    CHECK(c && strchr(c, '_') && strncmp(c, "klua-7d9f", 9) != 0);
    free(c);
}

int main(void)
{
    RUN(validate_follows_client_go);
    RUN(expiry_is_judged_by_our_observation_time);
    RUN(lease_parse_reads_spec_and_keeps_metadata);
    RUN(lease_json_for_create_and_update);
    RUN(time_is_rfc3339_micro_utc);
    RUN(identity_is_pod_name_plus_random_suffix);
    DONE();
}
