"""Branches on real workers and a real broker: branches in parallel on separate processes, joins
claimed once whatever the timing or a killed worker, conditions, a failing branch and its
on_failure path, and pause, cancel and resume with several nodes in flight."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from django.utils import timezone

import tests.nodes  # noqa: F401  (registers the rendezvous type in this process too)
from orchestrator import control, definitions, engine, recovery
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.state import TERMINAL, Action, NodeStatus, RunStatus
from tests.conftest import RedisServer, WorkerPool, wait_for

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]

#: Comfortably past ORCHESTRATOR_HEARTBEAT_TIMEOUT and ORCHESTRATOR_REDISPATCH_AFTER (3 s).
QUIET = 3.5
TEST_NODES = {"ORCHESTRATOR_NODE_MODULES": "tests.nodes"}


def wait(node_id: str, nxt: str | list[str] | None = None, seconds: float = 0, **options: Any):
    config = {"seconds": seconds, **options.pop("config", {})}
    node: dict[str, Any] = {"id": node_id, "type": "wait", "config": config, **options}
    if nxt is not None:
        node["next"] = nxt
    return node


def parse(*nodes: dict[str, Any], name: str, **extra: Any) -> definitions.Definition:
    return definitions.parse({"name": name, "nodes": list(nodes), **extra})


def queue(definition: definitions.Definition, payload: dict | None = None) -> PipelineRun:
    run = engine.create_run(definition, payload=payload or {})
    engine.dispatch_run(run)
    return run


def rows(run: PipelineRun) -> dict[str, NodeRun]:
    return {n.node_id: n for n in NodeRun.objects.filter(run_id=run.pk)}


def ended(run: PipelineRun, *statuses: str):
    wanted = statuses or tuple(TERMINAL)

    def check() -> PipelineRun | None:
        fresh = PipelineRun.objects.get(pk=run.pk)
        return fresh if fresh.status in wanted else None

    return check


def running(run: PipelineRun, *node_ids: str):
    return lambda: set(node_ids) <= set(run.nodes_in(NodeStatus.RUNNING))


def dropped(*workers: Any) -> int:
    """Deliveries that did nothing (run_node's result is None): duplicates, or a node not ready."""
    return sum(w.output().count(": None\n") for w in workers)


def test_a_diamonds_branches_run_at_once_on_two_workers_and_the_join_after_both_once(
    workers: WorkerPool,
):
    main = workers.start("main")
    side = workers.start("side", queues="side")
    definition = parse(
        wait("a", ["b", "c"]),
        wait("b", "d", 1.0),
        wait("c", "d", 1.0, queue="side"),  # a branch on its own queue
        wait("d"),
        name="diamond",
    )
    run = queue(definition)
    done = wait_for(ended(run), timeout=30)
    assert done.status == RunStatus.COMPLETED, done.error
    nodes = rows(run)
    assert {n: (r.status, r.attempt) for n, r in nodes.items()} == {
        n: (NodeStatus.COMPLETED, 1) for n in "abcd"
    }
    b, c, d = nodes["b"], nodes["c"], nodes["d"]
    assert b.started_at < c.finished_at and c.started_at < b.finished_at  # they overlapped
    assert d.started_at >= max(b.finished_at, c.finished_at)
    assert b.worker != c.worker
    assert c.task_id in side.output() and c.task_id not in main.output()
    assert dropped(main, side) == 0  # the join was handed out once


def test_joins_whose_branches_end_at_the_same_instant_run_exactly_once(workers: WorkerPool):
    pool = [workers.start(name, concurrency=2, env=TEST_NODES) for name in ("w1", "w2")]
    definition = parse(
        wait("a", ["b", "c"]),
        {"id": "b", "type": "rendezvous", "next": "d"},
        {"id": "c", "type": "rendezvous", "next": "d"},
        wait("d"),
        name="join-race",
    )
    runs: list[PipelineRun] = []
    for _ in range(8):
        # Two runs at a time: four branches on four processes, all ending at one instant.
        end_at = time.time() + 0.6
        batch = [queue(definition, {"end_at": end_at}) for _ in range(2)]
        for run in batch:
            wait_for(ended(run), timeout=30)
        runs += batch
    for run in runs:
        assert PipelineRun.objects.get(pk=run.pk).status == RunStatus.COMPLETED
        nodes = rows(run)
        assert {n: (r.status, r.attempt) for n, r in nodes.items()} == {
            n: (NodeStatus.COMPLETED, 1) for n in "abcd"
        }
        assert (nodes["d"].awaiting, nodes["d"].reached) == (0, 2)
    assert dropped(*pool) == 0  # no join was handed out twice


def test_thirty_diamonds_survive_pool_processes_killed_at_random(workers: WorkerPool):
    pool = [workers.start(name, concurrency=2) for name in ("w1", "w2")]
    definition = parse(
        wait("a", ["b", "c"], 0.1),
        wait("b", "d", 0.4),
        wait("c", "d", 0.4),
        wait("d", None, 0.1),
        name="killed",
    )
    runs = [queue(definition) for _ in range(30)]
    ids = [run.pk for run in runs]
    rng = random.Random(11)
    killed = 0
    while killed < 6 and PipelineRun.objects.filter(pk__in=ids).exclude(status__in=TERMINAL):
        time.sleep(rng.uniform(0.3, 0.8))
        busy = NodeRun.objects.filter(run_id__in=ids, status=NodeStatus.RUNNING)
        pids = {int(w.rsplit(":", 1)[1]) for w in busy.values_list("worker", flat=True)}
        children = [
            p.pid for w in pool for p in psutil.Process(w.process.pid).children() if p.pid in pids
        ]
        if children:
            os.kill(rng.choice(children), signal.SIGKILL)  # mid-node
            killed += 1

    def all_completed() -> bool:
        return PipelineRun.objects.filter(pk__in=ids, status=RunStatus.COMPLETED).count() == 30

    def recovered() -> bool:
        if all_completed():
            return True
        recovery.recover()  # as celery beat would, every half second
        return False

    wait_for(recovered, timeout=120, interval=0.5)
    assert killed == 6
    silent = RunEvent.objects.filter(
        run_id__in=ids, kind=RunEvent.NODE_REDISPATCHED, details__reason="worker went silent"
    )
    lost: dict[tuple[int, str], int] = {}
    for run_id, node_id in silent.values_list("run_id", "node_id"):
        lost[(run_id, node_id)] = lost.get((run_id, node_id), 0) + 1
    assert lost, "no kill hit a running node"
    for run in runs:
        nodes = rows(run)
        assert set(nodes) == set("abcd") and all(
            r.status == NodeStatus.COMPLETED for r in nodes.values()
        ), run.pk
        for node_id, row in nodes.items():
            # Every attempt past the first was a node whose worker was killed: no completed
            # node ran again, and every join was handed out and run once.
            assert row.attempt == 1 + lost.get((run.pk, node_id), 0), (run.pk, node_id)


def test_conditions_skip_branches_and_a_join_after_a_skipped_and_a_completed_branch_runs(
    workers: WorkerPool,
):
    workers.start("w1", concurrency=2)
    definition = parse(
        wait("classify", ["urgent", "routine"]),
        wait("urgent", "page", when={"path": "payload.severity", "in": ["critical", "warning"]}),
        wait("routine", "log", when={"path": "payload.severity", "equals": "info"}),
        wait("page", "done"),
        wait("log", "done"),
        wait("done"),
        name="triage",
    )
    critical, info = (
        queue(definition, {"severity": "critical"}),
        queue(definition, {"severity": "info"}),
    )
    for run, ran, skipped in (
        (critical, {"urgent", "page"}, {"routine", "log"}),
        (info, {"routine", "log"}, {"urgent", "page"}),
    ):
        done = wait_for(ended(run), timeout=30)
        assert done.status == RunStatus.COMPLETED, done.error
        nodes = rows(run)
        assert {n for n, r in nodes.items() if r.status == NodeStatus.SKIPPED} == skipped
        assert {n for n, r in nodes.items() if r.status == NodeStatus.COMPLETED} == (
            ran | {"classify", "done"}
        )
        first = next(n for n in skipped if n in ("urgent", "routine"))
        assert nodes[first].reason.startswith("condition not met: payload.severity")
        assert nodes[next(iter(skipped - {first}))].reason == "every node before it was skipped"
        assert nodes["done"].reached == 1  # the join ran after one skipped, one completed branch


def on_failure_pipeline(notes: Path, *, boom: bool) -> definitions.Definition:
    return parse(
        wait("a", ["boom", "long"]),
        wait("boom", "d", 0.3, config={"fail": boom, "message": "disk full"}),
        wait("long", "d", 30 if boom else 0.3),
        wait("d"),
        {"id": "alert", "type": "notify", "config": {"driver": "file", "path": str(notes)}},
        on_failure="alert",
        name="with-alert",
    )


def test_a_failed_branch_stops_its_sibling_then_on_failure_runs_once_never_on_success_or_cancel(
    workers: WorkerPool, tmp_path: Path
):
    workers.start("w1", concurrency=2)
    notes = tmp_path / "alerts.jsonl"
    failed = queue(on_failure_pipeline(notes, boom=True))
    done = wait_for(ended(failed), timeout=30)
    assert (done.status, done.error) == (RunStatus.FAILED, "Node 'boom' failed: disk full")
    nodes = rows(failed)
    assert (nodes["long"].status, nodes["long"].error) == (
        NodeStatus.CANCELLED,
        "Stopped: another node of the run failed",
    )
    assert nodes["long"].duration_ms < 30_000  # stopped, not run to its end
    assert "d" not in nodes  # the join never started
    assert (nodes["alert"].status, nodes["alert"].attempt) == (NodeStatus.COMPLETED, 1)
    assert nodes["alert"].started_at >= nodes["long"].finished_at  # after the sibling stopped
    assert len(notes.read_text().splitlines()) == 1
    assert "node 'boom' failed: disk full" in nodes["alert"].output["message"]

    fine = queue(on_failure_pipeline(notes, boom=False))
    assert wait_for(ended(fine), timeout=30).status == RunStatus.COMPLETED
    cancelled = queue(on_failure_pipeline(notes, boom=True))
    wait_for(running(cancelled, "long"), timeout=30)
    control.signal(cancelled.pk, Action.CANCEL)
    assert wait_for(ended(cancelled), timeout=30).status == RunStatus.CANCELLED
    assert "alert" not in rows(fine) and "alert" not in rows(cancelled)
    assert len(notes.read_text().splitlines()) == 1


def three_branches(seconds: float) -> definitions.Definition:
    return parse(
        wait("a", ["b", "c", "d"]),
        wait("b", "e", seconds),
        wait("c", "e", seconds),
        wait("d", "e", seconds),
        wait("e"),
        wait("alert"),
        on_failure="alert",
        name="three",
    )


def test_pause_with_three_branches_in_flight_waits_for_all_then_resume_finishes_the_run(
    workers: WorkerPool,
):
    workers.start("w1", concurrency=3)
    run = queue(three_branches(1.0))
    wait_for(running(run, "b", "c", "d"), timeout=30)
    result = control.signal(run.pk, Action.PAUSE)
    returned = timezone.now()
    assert result.status == RunStatus.PAUSING
    assert result.message == (
        f"Pipeline run {run.pk} is pausing: nodes 'b', 'c', 'd' are running; the run will pause "
        "once they have ended."
    )
    paused = wait_for(ended(run, RunStatus.PAUSED, *TERMINAL), timeout=30)
    assert paused.status == RunStatus.PAUSED
    nodes = rows(run)
    assert all(nodes[n].status == NodeStatus.COMPLETED for n in "bcd")  # results kept
    assert (nodes["e"].status, nodes["e"].attempt) == (NodeStatus.QUEUED, 0)  # ready, not started
    pause = paused.events.get(kind=RunEvent.PAUSED)
    assert pause.at >= max(nodes[n].finished_at for n in "bcd")
    assert pause.details == {"resume_from": ["e"]}
    assert not NodeRun.objects.filter(run=run, started_at__gt=returned).exists()

    control.signal(run.pk, Action.RESUME)
    done = wait_for(ended(run), timeout=30)
    assert done.status == RunStatus.COMPLETED, done.error
    assert {n: (r.status, r.attempt) for n, r in rows(run).items()} == {
        n: (NodeStatus.COMPLETED, 1) for n in "abcde"
    }


def test_cancel_with_three_branches_in_flight_stops_them_all_and_starts_nothing(
    workers: WorkerPool,
):
    workers.start("w1", concurrency=3)
    run = queue(three_branches(30))
    wait_for(running(run, "b", "c", "d"), timeout=30)
    result = control.signal(run.pk, Action.CANCEL)
    assert result.message == (
        f"Pipeline run {run.pk} is cancelling: nodes 'b', 'c', 'd' are being stopped; "
        "no further node will start."
    )
    done = wait_for(ended(run), timeout=5)
    assert done.status == RunStatus.CANCELLED
    nodes = rows(run)
    assert {n: (nodes[n].status, nodes[n].error) for n in "bcd"} == {
        n: (NodeStatus.CANCELLED, "Cancelled while running") for n in "bcd"
    }
    assert set(nodes) == {"a", "b", "c", "d"}  # neither the join nor on_failure ever started


def test_resume_after_a_pause_mid_fan_out_runs_every_branch_that_had_not_started(
    workers: WorkerPool,
):
    worker = workers.start("w1")  # one process: the branches take turns
    run = queue(
        parse(
            wait("a", ["b", "c", "d"]),
            wait("b", "e", 1.0),
            wait("c", "e"),
            wait("d", "e"),
            wait("e"),
            name="mid-fan-out",
        )
    )
    wait_for(running(run, "b"), timeout=30)
    control.signal(run.pk, Action.PAUSE)
    paused = wait_for(ended(run, RunStatus.PAUSED, *TERMINAL), timeout=30)
    assert paused.status == RunStatus.PAUSED
    assert paused.nodes_in(NodeStatus.QUEUED) == ["c", "d"]  # their deliveries did nothing
    wait_for(lambda: dropped(worker) == 2, timeout=30)

    resumed = control.signal(run.pk, Action.RESUME)
    assert resumed.message == (
        f"Pipeline run {run.pk} has been resumed: nodes 'c', 'd' are queued."
    )
    done = wait_for(ended(run), timeout=30)
    assert done.status == RunStatus.COMPLETED, done.error
    assert {n: (r.status, r.attempt) for n, r in rows(run).items()} == {
        n: (NodeStatus.COMPLETED, 1) for n in "abcde"
    }


def test_recovery_redispatches_each_lost_branch_and_a_lost_ready_join(
    workers: WorkerPool, broker: RedisServer
):
    definition = parse(
        wait("a", ["b", "c"]), wait("b", "d"), wait("c", "d"), wait("d"), name="lost"
    )
    branches = engine.create_run(definition, payload={})
    join = engine.create_run(definition, payload={})
    # No worker yet: this process runs some nodes, and the messages for the rest are lost.
    assert engine.execute_node(branches.pk, "a") == NodeStatus.COMPLETED
    for node_id in "abc":
        assert engine.execute_node(join.pk, node_id) == NodeStatus.COMPLETED
    broker.flushall()
    time.sleep(QUIET)

    report = recovery.recover()

    assert sorted(report.stalled_runs) == sorted(
        [(branches.pk, "b"), (branches.pk, "c"), (join.pk, "d")]
    )
    assert recovery.recover().total == 0  # just handed out: nothing to do twice
    workers.start("w1")
    for run in (branches, join):
        assert wait_for(ended(run), timeout=30).status == RunStatus.COMPLETED
        assert {n: (r.status, r.attempt) for n, r in rows(run).items()} == {
            n: (NodeStatus.COMPLETED, 1) for n in "abcd"
        }
