"""The GitHub Comment controller end to end: bin/klua running lua/ against the
real API server, posting to the stand-in GitHub (spec/support/fakegithub.py).

Each test asserts what a user sees: the Comment's status in the cluster, the
comments on "GitHub", the requests GitHub received (how many, when), Events.
"""
import json
import time

from conftest import (COMMENTS, REPO, apply_list, assert_exactly_once, comment, condition,
                      get_comments, has_marker, request_log, start_comments, wait_delivered,
                      wait_for)


def _patch_message(cluster, namespace, name, message):
    cluster.kubectl("-n", namespace, "patch", COMMENTS, name, "--type=merge",
                    "-p", json.dumps({"spec": {"message": message}}))


def _api_requests(github, since=0.0, until=None):
    return [r for r in github.requests()
            if r["time"] >= since and (until is None or r["time"] < until)]


def test_create_posts_exactly_one_comment(crds, namespace, github, klua_factory):
    k = start_comments(klua_factory, github, namespace)
    crds.apply(comment("hello", "Hello from the e2e suite", issue=7), namespace)
    obj = wait_delivered(crds, namespace, ["hello"], k)["hello"]

    posted = github.comments()
    assert len(posted) == 1, posted
    c = posted[0]
    assert (c["repo"], c["issue"]) == (REPO, 7)
    assert "Hello from the e2e suite" in c["body"]
    assert has_marker(c["body"], obj["metadata"]["uid"]), c["body"]
    st = obj["status"]
    assert st["commentID"] == c["id"]
    assert st["url"] == c["html_url"]
    assert st["observedGeneration"] == obj["metadata"]["generation"]
    cond = condition(obj)
    assert cond["status"] == "True" and cond.get("reason"), cond
    # one comment means one POST: no retry posted a second one meanwhile
    posts = [r for r in github.requests() if r["method"] == "POST"]
    assert len(posts) == 1, posts


def test_edit_changes_the_same_comment(crds, namespace, github, klua_factory):
    k = start_comments(klua_factory, github, namespace)
    crds.apply(comment("edit-me", "first words"), namespace)
    before = wait_delivered(crds, namespace, ["edit-me"], k)["edit-me"]
    cid = before["status"]["commentID"]

    _patch_message(crds, namespace, "edit-me", "second thoughts")

    def edited():
        o = get_comments(crds, namespace)["edit-me"]
        g = o["metadata"]["generation"]
        return g > before["metadata"]["generation"] and \
            o["status"].get("observedGeneration") == g and o
    after = wait_for(edited, 30, 0.3, "observedGeneration to follow the edit")
    assert after["status"]["commentID"] == cid
    assert condition(after)["status"] == "True"

    posted = github.comments()
    assert [c["id"] for c in posted] == [cid], posted
    assert "second thoughts" in posted[0]["body"] and "first words" not in posted[0]["body"]
    assert has_marker(posted[0]["body"], after["metadata"]["uid"])
    patches = [r for r in github.requests() if r["method"] == "PATCH"]
    assert len(patches) == 1 and patches[0]["path"].endswith(f"/issues/comments/{cid}"), patches
    assert len([r for r in github.requests() if r["method"] == "POST"]) == 1


def test_delete_follows_the_deletion_policy(crds, namespace, github, klua_factory):
    k = start_comments(klua_factory, github, namespace)
    apply_list(crds, namespace, [comment("goes", policy="Delete"), comment("stays", policy="Retain")])
    objs = wait_delivered(crds, namespace, ["goes", "stays"], k)
    for name, o in objs.items():
        # the finalizer is what holds the Comment until GitHub is cleaned up
        assert o["metadata"].get("finalizers"), (name, o["metadata"])
    goes, stays = objs["goes"]["status"]["commentID"], objs["stays"]["status"]["commentID"]

    crds.kubectl("-n", namespace, "delete", COMMENTS, "goes", "stays", "--timeout=60s")

    left = crds.kubectl("-n", namespace, "get", COMMENTS, "-o", "name").stdout.split()
    assert left == [], left
    ids = [c["id"] for c in github.comments()]
    assert goes not in ids, "deletionPolicy Delete: the GitHub comment should be deleted"
    assert stays in ids, "deletionPolicy Retain: the GitHub comment should stay"
    deletes = [r for r in github.requests() if r["method"] == "DELETE"]
    assert [r["path"] for r in deletes if r["status"] == 204] == \
        [f"/repos/{REPO}/issues/comments/{goes}"], deletes


def test_200_comments_at_once_are_delivered_exactly_once(crds, namespace, github, klua_factory):
    k = start_comments(klua_factory, github, namespace)
    names = [f"bulk-{i:03d}" for i in range(200)]
    # one issue: the uid search for later Comments has to follow Link pagination
    apply_list(crds, namespace, [comment(n, f"bulk message {n}") for n in names])
    objs = wait_delivered(crds, namespace, names, k, timeout=240)
    posted = assert_exactly_once(github, objs)
    assert len(posted) == 200


def _first(github, status, timeout=30):
    def seen():
        hits = [r for r in github.requests() if r["status"] == status]
        return hits and hits[0]
    return wait_for(seen, timeout, 0.1, f"a request answered {status}")


def test_429_burst_with_retry_after_is_ridden_out(crds, namespace, github, klua_factory):
    k = start_comments(klua_factory, github, namespace)
    names = [f"limited-{i}" for i in range(6)]
    retry_after = 3
    github.faults(mode="429", count=100000, retry_after=retry_after)
    t_on = time.time()
    apply_list(crds, namespace, [comment(n) for n in names])
    first = _first(github, 429)
    # the limit stays on until klua has come back after the Retry-After and been
    # limited again: the hold below is then measured over a whole Retry-After
    wait_for(lambda: any(r["status"] == 429 and r["time"] >= first["time"] + retry_after
                         for r in github.requests()),
             30, 0.1, "a request after the Retry-After, answered 429 again")
    github.faults(mode="none")
    t_off = time.time()
    objs = wait_delivered(crds, namespace, names, k, timeout=60)
    assert_exactly_once(github, objs)

    # Retry-After holds every request of the token, not just the one answered 429
    # (0.5 s of slack for requests already on their way).
    t0 = first["time"]
    held = _api_requests(github, t0 + 0.5, t0 + retry_after - 0.5)
    assert held == [], (f"requests sent while GitHub said Retry-After {retry_after}:\n"
                        + request_log(github))
    during = _api_requests(github, t_on, t_off)
    assert len(during) <= 2 * len(names) + 4, \
        f"{len(during)} requests in {t_off - t_on:.1f}s of 429s: hammering\n{request_log(github)}"


def test_5xx_burst_is_ridden_out_with_backoff(crds, namespace, github, klua_factory):
    k = start_comments(klua_factory, github, namespace)
    names = [f"outage-{i}" for i in range(6)]
    github.faults(mode="5xx", count=100000)
    t_on = time.time()
    apply_list(crds, namespace, [comment(n) for n in names])
    # the outage lasts until every Comment has been answered 5xx twice: each has
    # come back once after its backoff
    wait_for(lambda: sum(r["status"] >= 500 for r in github.requests()) >= 2 * len(names),
             60, 0.1, "a second round of 5xx answers")
    github.faults(mode="none")
    t_off = time.time()
    objs = wait_delivered(crds, namespace, names, k, timeout=90)
    assert_exactly_once(github, objs)

    during = _api_requests(github, t_on, t_off)
    # backoff: after a failure a Comment waits before it asks again, so no
    # second holds more requests than there are Comments (+2 already on their way)
    times = sorted(r["time"] for r in during)
    busiest = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    assert busiest <= len(names) + 2, (
        f"{busiest} requests within one second of a 5xx outage, for {len(names)} Comments: "
        f"retries ignore the backoff\n{request_log(github)}")
    bound = len(names) * (t_off - t_on)
    assert len(during) <= bound, (f"{len(during)} requests in {t_off - t_on:.1f}s of 5xx: "
                                  f"hammering\n{request_log(github)}")
    assert any(r["status"] >= 500 for r in during)


def test_lost_answers_to_posts_do_not_duplicate(crds, namespace, github, klua_factory):
    """GitHub creates the comment but the answer never arrives (the connection
    drops): the retry must find the comment by its marker, not post again."""
    k = start_comments(klua_factory, github, namespace)
    names = [f"lost-{i}" for i in range(3)]
    github.faults(mode="drop", apply=True, method="POST", count=3)
    apply_list(crds, namespace, [comment(n) for n in names])
    objs = wait_delivered(crds, namespace, names, k, timeout=90)
    posted = assert_exactly_once(github, objs)
    assert len(posted) == 3
    dropped = [r for r in github.requests() if r["fault"] == "drop"]
    assert len(dropped) == 3, dropped


def test_missing_repository_is_reported_not_retried_hot(crds, namespace, github, klua_factory):
    gone = "klua-e2e/gone"
    github.missing(gone)
    k = start_comments(klua_factory, github, namespace)
    crds.apply(comment("lost", repository=gone, issue=3), namespace)

    def failed():
        o = get_comments(crds, namespace)["lost"]
        c = condition(o)
        return c and c["status"] == "False" and c
    cond = wait_for(failed, 30, 0.3, "Delivered=False")
    assert cond.get("reason"), cond
    assert gone in cond.get("message", ""), cond
    assert github.comments() == []

    def for_gone():
        return [r for r in github.requests() if gone in r["path"]]
    n1 = len(for_gone())
    assert 1 <= n1 <= 3, github.requests()
    # Meanwhile klua keeps working: a Comment elsewhere is posted and edited three
    # times, each edit waited for on the stand-in. A retry without backoff (5 ms
    # doubling) would have asked again several times over that span.
    t0 = time.monotonic()
    for i in range(4):
        crds.apply(comment("elsewhere", f"probe edit {i}"), namespace)
        wait_for(lambda: any(c["body"].startswith(f"probe edit {i}\n")
                             for c in github.comments()), 30, 0.1, f"probe edit {i}")
    n2 = len(for_gone())
    assert n2 == n1, (f"{n2 - n1} more requests within {time.monotonic() - t0:.1f} s for a "
                      f"repository that is missing\n{request_log(github)}")
    assert k.proc.poll() is None


def test_invalid_comments_are_rejected_by_the_schema(crds, namespace):
    cases = [
        (comment("bad-issue", issue=0), "spec.issue"),
        (comment("bad-repo", repository="not a repository"), "spec.repository"),
        (comment("bad-message", message=""), "spec.message"),
    ]
    for obj, field in cases:
        p = crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False)
        assert p.returncode != 0, f"{obj['metadata']['name']} was accepted"
        assert "is invalid" in p.stderr and field in p.stderr, p.stderr
    assert get_comments(crds, namespace) == {}


def _leaks(text, *secrets):
    return [s for s in secrets if s and s in text]


def test_the_token_never_shows(crds, namespace, github, klua_factory):
    gone = "klua-e2e/private"
    github.missing(gone)
    k = start_comments(klua_factory, github, namespace, args=["-v", "6"])
    apply_list(crds, namespace, [comment("fine"), comment("nowhere", repository=gone),
                                 comment("short-lived", policy="Delete")])
    wait_delivered(crds, namespace, ["fine", "short-lived"], k)
    wait_for(lambda: (condition(get_comments(crds, namespace)["nowhere"]) or {}).get("status")
             == "False", 30, 0.3, "Delivered=False for the missing repository")
    crds.kubectl("-n", namespace, "delete", COMMENTS, "short-lived", "--timeout=60s")
    k.stop()

    # A revoked token: GitHub answers 401 and says so; that token must not show either.
    wrong = "ghp_e2e_revoked_" + github.token[-12:][::-1]
    k2 = start_comments(klua_factory, github, namespace, args=["-v", "6"],
                        env={"GITHUB_TOKEN": wrong})
    crds.apply(comment("unauthorized"), namespace)
    wait_for(lambda: (condition(get_comments(crds, namespace)["unauthorized"]) or {}).get("status")
             == "False", 30, 0.3, "Delivered=False for a bad token")
    k2.stop()

    places = {
        "klua's log": k.log() + k2.log(),
        "Events": crds.kubectl("-n", namespace, "get", "events.v1.events.k8s.io", "-o",
                               "json").stdout
        + crds.kubectl("-n", namespace, "get", "events", "-o", "json").stdout,
        "Comments (status)": json.dumps(crds.get_json(COMMENTS, "-n", namespace)),
        "GitHub comments": json.dumps(github.comments()),
    }
    for where, text in places.items():
        assert not _leaks(text, github.token, wrong), f"a token appears in {where}"
    # the failures were reported somewhere a user looks
    cond = condition(get_comments(crds, namespace)["unauthorized"])
    assert cond.get("reason") == "Unauthorized" and "GitHub answered 401" in cond["message"], cond
