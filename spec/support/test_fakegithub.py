"""Tests of the stand-in GitHub (spec/support/fakegithub.py) itself.

Each test talks HTTP to a real server process, so what is checked is what a
client such as klua.github sees on the wire. Run: python3 -m pytest spec/support/test_fakegithub.py
"""
import http.client
import json
import pathlib
import re
import subprocess
import sys
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
TOKEN = "ghp_testtoken123"
UA = {"User-Agent": "klua-test"}
AUTH = {"Authorization": "Bearer " + TOKEN, **UA}


class Fake:
    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(HERE / "fakegithub.py"), "--port", "0", "--token", TOKEN,
             *args], stdout=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline()
        m = re.match(r"^PORT (\d+)$", first.strip())
        assert m, "first line was %r" % first
        self.port = int(m.group(1))

    def call(self, method, path, body=None, headers=AUTH, raw=None):
        """Returns (status, headers dict with lower-case names, decoded JSON or None)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        c.request(method, path, body=data, headers=dict(headers))
        r = c.getresponse()
        text = r.read()
        hdr = {k.lower(): v for k, v in r.getheaders()}
        c.close()
        return r.status, hdr, (json.loads(text) if text else None)

    def control(self, method, path, body=None):
        return self.call(method, "/_fake/" + path, body, headers={})[2]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)


@pytest.fixture(scope="module")
def server():
    f = Fake()
    yield f
    f.stop()


@pytest.fixture
def gh(server):
    server.control("POST", "reset")
    return server


COMMENTS = "/repos/octo/hello/issues/7/comments"


def test_create_returns_githubs_comment_shape(gh):
    st, hdr, c = gh.call("POST", COMMENTS, {"body": "hi"})
    assert st == 201
    assert isinstance(c["id"], int) and c["id"] > 2 ** 31
    assert c["body"] == "hi"
    assert c["user"]["login"]
    assert c["node_id"].startswith("IC_")
    assert c["html_url"].endswith("/octo/hello/issues/7#issuecomment-%d" % c["id"])
    assert c["url"].endswith("/repos/octo/hello/issues/comments/%d" % c["id"])
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", c["created_at"])
    assert c["updated_at"] == c["created_at"]
    assert gh.control("GET", "comments")[0]["repo"] == "octo/hello"
    assert gh.control("GET", "comments")[0]["issue"] == 7


def test_token_scheme_bearer_or_token_and_401_otherwise(gh):
    assert gh.call("GET", COMMENTS, headers={"Authorization": "token " + TOKEN, **UA})[0] == 200
    st, _, body = gh.call("GET", COMMENTS, headers={"Authorization": "Bearer nope", **UA})
    assert st == 401 and body["message"] == "Bad credentials" and body["documentation_url"]
    st, _, body = gh.call("POST", COMMENTS, {"body": "x"}, headers=UA)
    assert st == 401
    assert gh.control("GET", "comments") == []


def test_user_agent_is_required(gh):
    st, _, body = gh.call("GET", COMMENTS, headers={"Authorization": "Bearer " + TOKEN})
    assert st == 403 and "User-Agent" in body["message"]


def test_request_log_never_holds_the_token(gh):
    gh.call("POST", COMMENTS, {"body": "x"})
    gh.call("GET", COMMENTS + "?per_page=5")
    log = gh.control("GET", "requests")
    assert [(r["method"], r["path"], r["status"]) for r in log] == [
        ("POST", COMMENTS, 201), ("GET", COMMENTS + "?per_page=5", 200)]
    assert all(isinstance(r["time"], float) for r in log)
    assert TOKEN not in json.dumps(log)


def links(hdr):
    return {rel: url for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', hdr.get("link", ""))}


def test_list_is_oldest_first_and_paginates_with_link(gh):
    ids = [gh.call("POST", COMMENTS, {"body": "c%d" % i})[2]["id"] for i in range(5)]
    gh.call("POST", "/repos/octo/hello/issues/8/comments", {"body": "other issue"})
    st, hdr, page1 = gh.call("GET", COMMENTS + "?per_page=2")
    assert st == 200 and [c["id"] for c in page1] == ids[:2]
    l1 = links(hdr)
    assert set(l1) == {"next", "last"}
    assert l1["next"].endswith(COMMENTS + "?per_page=2&page=2")
    assert l1["last"].endswith("page=3")
    st, hdr, page2 = gh.call("GET", COMMENTS + "?per_page=2&page=2")
    assert [c["id"] for c in page2] == ids[2:4]
    assert set(links(hdr)) == {"prev", "next", "last", "first"}
    st, hdr, page3 = gh.call("GET", COMMENTS + "?per_page=2&page=3")
    assert [c["id"] for c in page3] == ids[4:]
    assert set(links(hdr)) == {"prev", "first"}
    # following rel="next" from the first page visits every comment once
    seen, url = [], COMMENTS + "?per_page=2"
    while url:
        st, hdr, items = gh.call("GET", url)
        seen += [c["id"] for c in items]
        nxt = links(hdr).get("next")
        url = nxt and nxt[nxt.index("/repos/"):]
    assert seen == ids


def test_per_page_defaults_to_30_and_caps_at_100(gh):
    for i in range(101):
        gh.call("POST", COMMENTS, {"body": str(i)})
    st, hdr, items = gh.call("GET", COMMENTS)
    assert len(items) == 30 and links(hdr)["last"].endswith("page=4")
    st, hdr, items = gh.call("GET", COMMENTS + "?per_page=500")
    assert len(items) == 100 and links(hdr)["last"].endswith("per_page=100&page=2")


def test_get_patch_delete_one_comment(gh):
    c = gh.call("POST", COMMENTS, {"body": "v1"})[2]
    one = "/repos/octo/hello/issues/comments/%d" % c["id"]
    st, _, got = gh.call("PATCH", one, {"body": "v2"})
    assert st == 200 and got["body"] == "v2" and got["id"] == c["id"]
    assert gh.call("GET", one)[2]["body"] == "v2"
    st, hdr, body = gh.call("DELETE", one)
    assert st == 204 and body is None
    for m, b in (("GET", None), ("PATCH", {"body": "v3"}), ("DELETE", None)):
        st, _, body = gh.call(m, one, b)
        assert st == 404 and body["message"] == "Not Found"
    # a comment id is only found under its own repository
    c = gh.call("POST", COMMENTS, {"body": "v1"})[2]
    assert gh.call("GET", "/repos/octo/other/issues/comments/%d" % c["id"])[0] == 404


def test_empty_or_missing_body_is_422_and_bad_json_400(gh):
    for b in ({"body": ""}, {}, {"body": 5}):
        st, _, body = gh.call("POST", COMMENTS, b)
        assert st == 422 and body["message"] == "Validation Failed"
        assert body["errors"][0]["field"] == "body"
    assert gh.call("POST", COMMENTS, raw="{not json")[0] == 400
    c = gh.call("POST", COMMENTS, {"body": "ok"})[2]
    assert gh.call("PATCH", "/repos/octo/hello/issues/comments/%d" % c["id"],
                   {"body": ""})[0] == 422
    assert [x["body"] for x in gh.control("GET", "comments")] == ["ok"]


def test_missing_repositories_answer_404():
    f = Fake("--missing-repo", "octo/gone")
    try:
        st, _, body = f.call("POST", "/repos/octo/gone/issues/1/comments", {"body": "x"})
        assert st == 404 and body["message"] == "Not Found"
        assert f.call("GET", "/repos/octo/gone/issues/1/comments")[0] == 404
        assert f.call("GET", "/repos/octo/here/issues/1/comments")[0] == 200
        f.control("POST", "missing", {"repos": ["octo/here"]})
        assert f.call("GET", "/repos/octo/here/issues/1/comments")[0] == 404
    finally:
        f.stop()


def test_rate_limit_headers_count_down_and_zero_is_403(gh):
    _, h1, _ = gh.call("GET", COMMENTS)
    _, h2, _ = gh.call("GET", COMMENTS)
    assert h1["x-ratelimit-limit"] == "5000" and h1["x-ratelimit-resource"] == "core"
    assert int(h2["x-ratelimit-remaining"]) == int(h1["x-ratelimit-remaining"]) - 1
    assert int(h2["x-ratelimit-used"]) == int(h1["x-ratelimit-used"]) + 1
    assert int(h1["x-ratelimit-reset"]) > time.time()
    gh.control("POST", "ratelimit", {"remaining": 1, "reset_in": 120})
    st, h, _ = gh.call("POST", COMMENTS, {"body": "last one"})
    assert st == 201 and h["x-ratelimit-remaining"] == "0"
    st, h, body = gh.call("POST", COMMENTS, {"body": "too many"})
    assert st == 403 and "API rate limit exceeded" in body["message"]
    assert h["x-ratelimit-remaining"] == "0"
    assert abs(int(h["x-ratelimit-reset"]) - (time.time() + 120)) < 5
    assert len(gh.control("GET", "comments")) == 1
    gh.control("POST", "ratelimit", {"remaining": 5, "reset_in": 0})
    # the reset time has passed: the full limit is back
    assert gh.call("GET", COMMENTS)[1]["x-ratelimit-remaining"] == "4999"


def test_fault_5xx_for_the_next_n_requests(gh):
    gh.control("POST", "faults", {"mode": "5xx", "count": 2})
    st1, h, b1 = gh.call("POST", COMMENTS, {"body": "x"})
    st2, _, b2 = gh.call("GET", COMMENTS)
    assert {st1, st2} == {502, 503} and b1["message"] and "x-ratelimit-remaining" in h
    assert gh.call("GET", COMMENTS)[0] == 200
    assert gh.control("GET", "comments") == []
    assert [r["fault"] for r in gh.control("GET", "requests")] == ["5xx", "5xx", None]


def test_fault_secondary_403_with_and_without_retry_after(gh):
    gh.control("POST", "faults", {"mode": "secondary403"})
    st, h, body = gh.call("POST", COMMENTS, {"body": "x"})
    assert st == 403 and "secondary rate limit" in body["message"]
    assert "retry-after" not in h and h["x-ratelimit-remaining"] != "0"
    gh.control("POST", "faults", {"mode": "secondary403", "retry_after": 7})
    st, h, _ = gh.call("POST", COMMENTS, {"body": "x"})
    assert st == 403 and h["retry-after"] == "7"
    assert gh.call("POST", COMMENTS, {"body": "x"})[0] == 201


def test_fault_429_carries_retry_after(gh):
    gh.control("POST", "faults", {"mode": "429", "retry_after": 3})
    st, h, _ = gh.call("GET", COMMENTS)
    assert st == 429 and h["retry-after"] == "3"


def test_fault_slow_delays_the_answer(gh):
    gh.control("POST", "faults", {"mode": "slow", "delay": 0.6})
    t = time.monotonic()
    assert gh.call("GET", COMMENTS)[0] == 200
    assert time.monotonic() - t >= 0.6


def test_fault_drop_closes_without_an_answer(gh):
    gh.control("POST", "faults", {"mode": "drop", "method": "POST"})
    assert gh.call("GET", COMMENTS)[0] == 200   # only POST is affected
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        gh.call("POST", COMMENTS, {"body": "lost"})
    assert gh.control("GET", "comments") == []
    # "apply": GitHub acts, then the connection is cut (the crash-window case)
    gh.control("POST", "faults", {"mode": "drop", "apply": True})
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        gh.call("POST", COMMENTS, {"body": "posted"})
    assert [c["body"] for c in gh.control("GET", "comments")] == ["posted"]


def test_faults_none_clears_and_reset_forgets_everything(gh):
    gh.control("POST", "faults", {"mode": "5xx", "count": 10})
    assert gh.control("POST", "faults", {"mode": "none"}) == []
    assert gh.call("POST", COMMENTS, {"body": "x"})[0] == 201
    assert gh.control("POST", "faults", {"mode": "bogus"}).get("message")
    gh.control("POST", "reset")
    assert gh.control("GET", "comments") == [] and gh.control("GET", "requests") == []


# --- replicas told apart, and random faults (what spec/support/chaos.py uses) ---

def test_tokens_name_who_made_each_call_and_never_appear(gh):
    toks = {"ghp_replica_a_secret": "r0.1", "ghp_replica_b_secret": "r1.1"}
    assert "r0.1" in gh.control("POST", "tokens", {"tokens": toks})
    assert gh.control("GET", "tokens") == sorted({"default", "r0.1", "r1.1"})
    a = {"Authorization": "Bearer ghp_replica_a_secret", **UA}
    b = {"Authorization": "token ghp_replica_b_secret", **UA}
    st, _, c = gh.call("POST", COMMENTS, {"body": "from a"}, headers=a)
    assert st == 201
    assert gh.call("PATCH", "/repos/octo/hello/issues/comments/%d" % c["id"],
                   {"body": "edited by b"}, headers=b)[0] == 200
    assert gh.call("GET", COMMENTS)[0] == 200                      # the --token one
    assert gh.call("GET", COMMENTS, headers={"Authorization": "Bearer other", **UA})[0] == 401
    log = gh.control("GET", "requests")
    assert [r["who"] for r in log] == ["r0.1", "r1.1", "default", None]
    assert all(r["end"] >= r["time"] for r in log)
    (only,) = gh.control("GET", "comments")
    assert (only["by"], only["edited_by"]) == ("r0.1", "r1.1")
    text = json.dumps([log, gh.control("GET", "comments"), gh.control("GET", "tokens")])
    assert "secret" not in text and TOKEN not in text
    assert gh.control("POST", "tokens", {"tokens": {"": "x"}}).get("message")


def _chaos_statuses(gh, n):
    out = []
    for _ in range(n):
        try:
            out.append(gh.call("GET", COMMENTS)[0])
        except (http.client.RemoteDisconnected, ConnectionError):
            out.append(0)
    return out


def test_chaos_injects_seeded_random_faults_and_turns_off(gh):
    settings = {"seed": 7, "5xx": 0.3, "429": 0.2, "drop": 0.1, "retry_after": 2}
    assert gh.control("POST", "chaos", settings) == {"on": True}
    first = _chaos_statuses(gh, 60)
    got = gh.control("GET", "chaos")
    assert sum(got["injected"].values()) == sum(1 for s in first if s != 200)
    assert {500, 502, 503} & set(first) and 429 in first and 0 in first and 200 in first
    # the same seed gives the same sequence of faults for the same requests
    gh.control("POST", "chaos", settings)
    assert _chaos_statuses(gh, 60) == first
    # a 429 from chaos carries the Retry-After it was given
    gh.control("POST", "faults", {"mode": "none"})
    gh.control("POST", "chaos", {"seed": 1, "429": 1.0, "retry_after": 2})
    st, h, _ = gh.call("GET", COMMENTS)
    assert st == 429 and h["retry-after"] == "2"
    assert gh.control("POST", "chaos", {}) == {"on": False}
    assert _chaos_statuses(gh, 5) == [200] * 5
    assert gh.control("POST", "chaos", {"5xx": 0.9, "429": 0.9}).get("message")


def test_chaos_slow_and_drop_apply(gh):
    gh.control("POST", "chaos", {"seed": 3, "slow": 1.0, "delay": [0.3, 0.4]})
    t = time.monotonic()
    assert gh.call("GET", COMMENTS)[0] == 200
    assert time.monotonic() - t >= 0.3
    (r,) = gh.control("GET", "requests")
    assert r["fault"] == "slow" and r["end"] - r["time"] >= 0.3
    # drop_apply: the comment is made, the answer is lost
    gh.control("POST", "chaos", {"seed": 3, "drop_apply": 1.0})
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        gh.call("POST", COMMENTS, {"body": "acted"})
    gh.control("POST", "chaos", {})
    assert [c["body"] for c in gh.control("GET", "comments")] == ["acted"]
    last = gh.control("GET", "requests")[-1]
    assert (last["fault"], last["status"]) == ("drop", 201)   # acted, answer lost
