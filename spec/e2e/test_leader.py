"""Leader election end to end: two `klua run --leader-elect` processes on the
same Lease, the Comment controller and the stand-in GitHub.

What a user sees: exactly one replica says it acquired the lease, Comments
are posted exactly once, a replica stopped with SIGTERM hands the lease
over at once (released, not left to expire), a replica killed with -9 is
replaced once its lease has expired, and a leader that loses its lease
exits 1 instead of reconciling on. Durations are shortened by flags so the
whole file runs in well under a minute.
"""
import json
import re
import signal
import time

from conftest import ROOT, apply_list, assert_exactly_once, comment, run_klua, wait_delivered, \
    wait_for

ACQUIRED = r"leader election: acquired lease (\S+) as (\S+)"


def _flags(namespace, lease, renew, retry):
    return ["--leader-elect", "--leader-election-namespace", namespace,
            "--leader-lease-duration", str(lease), "--leader-renew-deadline", str(renew),
            "--leader-retry-period", str(retry)]


def _pair(klua_factory, github, namespace, lease, renew, retry):
    """Two replicas; returns (leader, standby) once one holds the lease and
    both have synced their caches."""
    args = _flags(namespace, lease, renew, retry)
    ks = []
    for i in range(2):
        # as start_comments does; each replica numbers its log files apart
        # (both share the test's tmp folder)
        k = klua_factory(github=github, args=["--namespace", namespace, *args])
        k.n = 100 * i
        ks.append(k.start())
    for k in ks:
        k.wait_log(r"caches synced", timeout=30)

    def one_leader():
        leaders = [k for k in ks if re.search(ACQUIRED, k.log())]
        return leaders if len(leaders) == 1 else None
    leader = wait_for(one_leader, 20, 0.2, "one replica to acquire the lease")[0]
    standby = ks[1] if leader is ks[0] else ks[0]
    return leader, standby


def _identity(k):
    return re.search(ACQUIRED, k.log()).group(2)


def _lease(cluster, namespace):
    return cluster.get_json("lease", "klua", "-n", namespace)


def _posts(github):
    return [r for r in github.requests() if r["method"] == "POST"]


def test_one_leader_delivers_once_and_sigterm_hands_over(crds, namespace, github, klua_factory):
    # a long lease: a handover within a few seconds can only be the release
    leader, standby = _pair(klua_factory, github, namespace, lease=10, renew=8, retry=1)
    lease = _lease(crds, namespace)
    assert lease["spec"]["holderIdentity"] == _identity(leader), lease["spec"]
    assert lease["spec"]["leaseDurationSeconds"] == 10
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", lease["spec"]["renewTime"])
    transitions = lease["spec"].get("leaseTransitions", 0)

    names = [f"first-{i}" for i in range(5)]
    apply_list(crds, namespace, [comment(n) for n in names])
    objs = wait_delivered(crds, namespace, names, leader, timeout=40)
    assert_exactly_once(github, objs)
    assert len(_posts(github)) == 5, _posts(github)
    # the standby kept waiting (its caches warm) and never took the lease
    assert not re.search(ACQUIRED, standby.log()), standby.log()[-2000:]

    t0 = time.monotonic()
    assert leader.stop(signal.SIGTERM) == 0, leader.log()[-3000:]
    assert "leader election: released lease" in leader.log(), leader.log()[-2000:]
    standby.wait_log(ACQUIRED, timeout=6)
    took = time.monotonic() - t0
    assert took < 5, f"the standby took {took:.1f}s: the lease was not released"
    lease = _lease(crds, namespace)
    assert lease["spec"]["holderIdentity"] == _identity(standby), lease["spec"]
    assert lease["spec"]["leaseTransitions"] > transitions, lease["spec"]

    more = [f"second-{i}" for i in range(3)]
    apply_list(crds, namespace, [comment(n) for n in more])
    objs = wait_delivered(crds, namespace, names + more, standby, timeout=40)
    assert_exactly_once(github, objs)
    assert len(_posts(github)) == 8, _posts(github)


def test_kill9_leader_is_replaced_after_the_lease_expires(crds, namespace, github, klua_factory):
    leader, standby = _pair(klua_factory, github, namespace, lease=4, renew=3, retry=1)
    leader.kill9()
    t0 = time.monotonic()
    standby.wait_log(ACQUIRED, timeout=20)
    took = time.monotonic() - t0
    # not released: the standby waits until it has seen no renewal for 4 s
    assert 2 <= took <= 12, f"the standby acquired after {took:.1f}s"
    assert _lease(crds, namespace)["spec"]["holderIdentity"] == _identity(standby)

    crds.apply(comment("after-kill", "delivered by the new leader"), namespace)
    objs = wait_delivered(crds, namespace, ["after-kill"], standby, timeout=30)
    assert_exactly_once(github, objs)


def test_leader_that_loses_its_lease_exits_1(crds, namespace, github, klua_factory):
    leader, standby = _pair(klua_factory, github, namespace, lease=4, renew=3, retry=1)
    # someone else takes the lease (as a partitioned replica's successor would)
    crds.kubectl("-n", namespace, "patch", "lease", "klua", "--type=merge", "-p", json.dumps(
        {"spec": {"holderIdentity": "intruder", "leaseDurationSeconds": 30}}))
    wait_for(lambda: leader.proc.poll() is not None, 15, 0.2, "the leader to exit")
    assert leader.proc.returncode == 1, leader.log()[-3000:]
    log = leader.log()
    assert re.search(r"leader election: lost lease \S+ as " + re.escape(_identity(leader)), log), \
        log[-3000:]
    assert "error: leader election: lost the lease" in log, log[-2000:]
    # the standby respects the intruder's unexpired lease
    assert not re.search(ACQUIRED, standby.log())


def test_durations_are_validated_before_start():
    p = run_klua("run", "--scripts", str(ROOT / "lua"), "--leader-elect",
                 "--leader-lease-duration", "3", "--leader-renew-deadline", "3")
    assert p.returncode == 2, p
    assert "--leader-lease-duration (3000 ms) must be greater than --leader-renew-deadline" \
        in p.stderr, p.stderr
    p = run_klua("run", "--scripts", str(ROOT / "lua"), "--leader-elect",
                 "--leader-renew-deadline", "2", "--leader-retry-period", "2")
    assert p.returncode == 2 and "1.2 x --leader-retry-period" in p.stderr, p.stderr
