"""The pure rules of self-healing, table by table: who may take over a running node, how long a
deferred delivery waits, how many stalled nodes a pass may send again, which database errors are
outages; and the holder identity and the recovery lease they rely on."""

from __future__ import annotations

import subprocess
import sys
import threading

import psutil
import pytest
from django.db import InterfaceError, OperationalError, ProgrammingError, connection

from orchestrator import backlog, holders, lease, outages, reclaim
from orchestrator.holders import Holder
from orchestrator.reclaim import Verdict
from tests.conftest import wait_for

ME = Holder("web-1", "pid:[1]", 100, 1000.0)
SIBLING = Holder("web-1", "pid:[1]", 200, 1000.0)  # another process on this host
REUSED = Holder("web-1", "pid:[1]", 100, 2000.0)  # this pid, but an earlier process
CONTAINER = Holder("web-1", "pid:[2]", 200, 1000.0)  # same host name, other pid namespace
ELSEWHERE = Holder("web-2", "pid:[1]", 200, 1000.0)


def alive(*who: Holder):
    return lambda holder: holder in who


# holder, heartbeat age, running here, alive on this host -> verdict, lost, reason
DECISIONS = [
    (ME, 1.0, True, alive(ME), Verdict.WAIT, False, "this process is running it"),
    (ME, 1.0, False, alive(ME), Verdict.REUSE, False, "this process holds its claim"),
    (REUSED, 1.0, False, alive(ME), Verdict.TAKE_OVER, True, "its process web-1:100 is gone"),
    (SIBLING, 1.0, False, alive(), Verdict.TAKE_OVER, True, "its process web-1:200 is gone"),
    (SIBLING, 1.0, False, alive(SIBLING), Verdict.WAIT, False, "its process web-1:200 is alive"),
    (SIBLING, 61.0, False, alive(SIBLING), Verdict.TAKE_OVER, True, "its heartbeat is stale"),
    (SIBLING, None, False, alive(SIBLING), Verdict.TAKE_OVER, True, "its heartbeat is stale"),
    (CONTAINER, 1.0, False, alive(), Verdict.WAIT, False, "web-1:200 on another host beats for it"),
    (ELSEWHERE, 1.0, False, alive(), Verdict.WAIT, False, "web-2:200 on another host beats for it"),
    (ELSEWHERE, 60.0, False, alive(), Verdict.TAKE_OVER, True, "its heartbeat is stale"),
    (
        None,
        1.0,
        False,
        alive(),
        Verdict.WAIT,
        False,
        "its holder is unknown; its heartbeat is fresh",
    ),
    (None, 99.0, False, alive(), Verdict.TAKE_OVER, True, "its heartbeat is stale"),
]


@pytest.mark.parametrize("holder, age, here, is_alive, verdict, lost, reason", DECISIONS)
def test_who_may_take_over_a_running_node(holder, age, here, is_alive, verdict, lost, reason):
    decision = reclaim.decide(holder, ME, age, 60.0, running_here=here, alive=is_alive)
    assert (decision.verdict, decision.lost, decision.reason) == (verdict, lost, reason)


def test_liveness_is_asked_only_about_a_holder_on_this_host():
    asked: list[Holder] = []
    for holder in (ELSEWHERE, CONTAINER, SIBLING):
        reclaim.decide(holder, ME, 1.0, 60.0, running_here=False, alive=asked.append)
    assert asked == [SIBLING]


@pytest.mark.parametrize(
    "age, timeout, interval, expected",
    [(0.0, 60, 5, 65.0), (10.0, 60, 5, 55.0), (None, 60, 5, 65.0), (59.5, 60, 0, 1.0)],
)
def test_a_deferred_delivery_comes_back_just_after_the_heartbeat_would_be_stale(
    age, timeout, interval, expected
):
    assert reclaim.countdown(age, timeout, interval) == expected


# stalled (longest waiting first), waiting on the queue, depth -> sent again
BACKLOG = [
    (["a", "b", "c"], 3, None, ["a", "b", "c"]),  # no broker to ask: all
    (["a", "b", "c"], 3, 3, []),  # every message is there
    (["a", "b", "c"], 3, 7, []),  # and more (mirror tasks, duplicates)
    (["a", "b", "c"], 3, 0, ["a", "b", "c"]),  # the broker lost everything
    (["a", "b", "c"], 5, 3, ["a", "b"]),  # two missing: the two longest waiting
    (["a"], 5, 0, ["a"]),  # only one is stalled yet
    ([], 5, 0, []),
]


@pytest.mark.parametrize("stalled, waiting, depth, expected", BACKLOG)
def test_a_pass_sends_again_only_as_many_nodes_as_their_queue_is_missing(
    stalled, waiting, depth, expected
):
    assert backlog.to_send_again(stalled, waiting, depth) == expected


def test_passes_repeated_with_no_worker_never_grow_a_queue_past_twice_its_waiting_nodes():
    depth, waiting = 0, 300  # the broker lost every message
    for _ in range(10):
        depth += len(backlog.to_send_again(list(range(waiting)), waiting, depth))
        assert depth <= 2 * waiting
    assert depth == waiting


@pytest.mark.parametrize(
    "error, vendor, expected",
    [
        (OperationalError("terminating connection due to administrator command"), "postgresql", 1),
        (OperationalError("connection refused"), "postgresql", 1),
        (InterfaceError("connection already closed"), "postgresql", 1),
        (OperationalError("database is locked"), "sqlite", 1),
        (OperationalError("no such table: orchestrator_noderun"), "sqlite", 0),
        (ProgrammingError("syntax error"), "postgresql", 0),
        (ValueError("not a database error"), "postgresql", 0),
    ],
)
def test_which_database_errors_are_outages(error, vendor, expected):
    assert outages.transient(error, vendor) is bool(expected)


def test_outage_backoff_doubles_and_is_capped():
    assert [outages.backoff(n) for n in range(1, 9)] == [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10, 10]


@pytest.mark.django_db(transaction=True)
def test_a_step_is_retried_through_an_outage_and_a_real_error_is_raised_at_once(settings):
    settings.ORCHESTRATOR_DB_RETRY_SECONDS = 5
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise InterfaceError("connection already closed")
        return "recorded"

    assert outages.retrying(flaky, what="recording") == "recorded"
    assert len(calls) == 3

    def broken() -> None:
        calls.append(1)
        raise ProgrammingError("column does not exist")

    calls.clear()
    with pytest.raises(ProgrammingError):
        outages.retrying(broken, what="recording")
    assert len(calls) == 1


@pytest.mark.django_db(transaction=True)
def test_an_outage_longer_than_the_retry_window_is_raised(settings):
    settings.ORCHESTRATOR_DB_RETRY_SECONDS = 0.5
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise InterfaceError("connection already closed")

    with pytest.raises(InterfaceError):
        outages.retrying(down, what="claiming")
    assert 2 <= len(calls) <= 3  # 0.2 s, then 0.4 s would pass the window


def test_a_holder_token_round_trips_and_foreign_tokens_name_nobody():
    assert Holder.parse(ME.token()) == ME
    assert Holder.parse("host|with|bars|pid:[1]|100|1000.00") == Holder(
        "host|with|bars", "pid:[1]", 100, 1000.0
    )
    for token in ("", "web-1:100", "a|b|pid|start", "a|b|1|never"):
        assert Holder.parse(token) is None


def test_a_process_is_alive_until_it_exits_and_its_pid_alone_is_not_enough():
    me = holders.current()
    assert holders.is_alive(me)
    assert not holders.is_alive(Holder(me.host, me.namespace, me.pid, me.started - 60))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    holder = Holder(me.host, me.namespace, child.pid, psutil.Process(child.pid).create_time())
    assert holders.is_alive(holder)
    child.kill()
    wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, timeout=10)
    assert not holders.is_alive(holder)  # a zombie until its parent reaps it: already gone
    child.wait()
    assert not holders.is_alive(holder)


@pytest.mark.django_db(transaction=True)
def test_the_lease_is_held_by_one_holder_at_a_time():
    inside = threading.Event()
    leave = threading.Event()
    seen: list[bool] = []

    def other_host() -> None:
        try:
            with lease.held("test-lease") as held:
                seen.append(held)
                inside.set()
                leave.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=other_host)
    thread.start()
    assert inside.wait(10)
    with lease.held("test-lease", wait=0.3) as held:
        assert not held
    leave.set()
    thread.join(10)
    with lease.held("test-lease") as held:
        assert held
    assert seen == [True]
