"""Every node a Celery task: real redis-server, real worker processes, nothing lost."""

from __future__ import annotations

import re

import pytest

from orchestrator import definitions, dispatch, engine, holders
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.state import NodeStatus, RunStatus
from tests.conftest import WorkerPool, queue_name, wait_for

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]


def linear(name: str, *nodes: dict, defaults: dict | None = None) -> definitions.Definition:
    linked = [
        {**n, "next": nodes[i + 1]["id"] if i + 1 < len(nodes) else None}
        for i, n in enumerate(nodes)
    ]
    return definitions.parse({"name": name, "nodes": linked, "defaults": defaults or {}})


def wait(
    node_id: str, seconds: float = 0, *, fail: bool = False, fail_attempts: int = 0, **options
) -> dict:
    config = {"seconds": seconds, "fail": fail, "fail_attempts": fail_attempts}
    return {"id": node_id, "type": "wait", "config": config, **options}


def queue_run(definition: definitions.Definition) -> PipelineRun:
    run = engine.create_run(definition, payload={"server": "web-01"})
    engine.dispatch_run(run)
    return run


def finished(run_id: int, statuses=(RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)):
    def check() -> PipelineRun | None:
        run = PipelineRun.objects.get(pk=run_id)
        return run if run.status in statuses else None

    return check


def node_attempts(run: PipelineRun) -> dict[str, tuple[str, int]]:
    return {n.node_id: (n.status, n.attempt) for n in NodeRun.objects.filter(run=run)}


def test_three_node_definition_completes_through_a_worker(workers: WorkerPool):
    worker = workers.start("w1")
    run = queue_run(
        linear(
            "three",
            {"id": "metrics", "type": "context"},
            {"id": "analyze", "type": "intelligence"},
            {"id": "notify", "type": "notify", "config": {"driver": "console"}},
        )
    )
    done = wait_for(finished(run.pk), timeout=30)
    assert done.status == RunStatus.COMPLETED, done.error
    nodes = list(NodeRun.objects.filter(run=run).order_by("position"))
    assert [n.node_id for n in nodes] == ["metrics", "analyze", "notify"]
    assert all(n.status == NodeStatus.COMPLETED and n.attempt == 1 for n in nodes)
    assert all(n.task_id for n in nodes)
    assert all(re.fullmatch(r".+:\d+", n.worker) for n in nodes)  # the worker's host:pid
    assert holders.current().describe() not in {n.worker for n in nodes}
    assert "run_node" in worker.output()


def test_two_workers_share_twenty_runs_and_every_node_runs_exactly_once(workers: WorkerPool):
    workers.start("a")
    workers.start("b")
    definition = linear("shared", *(wait(f"w{i}", 0.05) for i in range(3)))
    runs = [queue_run(definition) for _ in range(20)]
    for run in runs:
        done = wait_for(finished(run.pk), timeout=60)
        assert done.status == RunStatus.COMPLETED, done.error
    nodes = NodeRun.objects.filter(run__in=runs)
    assert nodes.count() == 60
    assert set(nodes.values_list("status", "attempt")) == {(NodeStatus.COMPLETED, 1)}
    assert len(set(nodes.values_list("worker", flat=True))) == 2


def test_node_routed_to_a_queue_runs_only_on_the_worker_listening_there(workers: WorkerPool):
    default = workers.start("default")
    special = workers.start("special", queues=queue_name("special"))
    gpu = wait("gpu", queue=queue_name("special"))
    run = queue_run(linear("routed", wait("before"), gpu, wait("after")))
    done = wait_for(finished(run.pk), timeout=30)
    assert done.status == RunStatus.COMPLETED, done.error
    tasks = dict(NodeRun.objects.filter(run=run).values_list("node_id", "task_id"))
    assert tasks["gpu"] in special.output() and tasks["gpu"] not in default.output()
    for node_id in ("before", "after"):
        assert tasks[node_id] in default.output() and tasks[node_id] not in special.output()


def test_retries_and_time_limits_apply_through_a_worker(workers: WorkerPool):
    workers.start("w1", concurrency=2)
    retried = {"retries": 2, "retry_backoff_seconds": 0.1}
    flaky = queue_run(linear("flaky", wait("flaky", fail_attempts=2), defaults=retried))
    broken = queue_run(linear("broken", wait("broken", fail=True), defaults=retried))
    slow = queue_run(linear("slow", wait("slow", 10, timeout_seconds=0.5), wait("never")))

    done = {run.pk: wait_for(finished(run.pk), timeout=30) for run in (flaky, broken, slow)}

    assert done[flaky.pk].status == RunStatus.COMPLETED, done[flaky.pk].error
    assert node_attempts(flaky) == {"flaky": (NodeStatus.COMPLETED, 3)}
    retries = done[flaky.pk].events.filter(kind=RunEvent.NODE_RETRY)
    assert list(retries.values_list("details__attempt", flat=True)) == [1, 2]

    assert done[broken.pk].status == RunStatus.FAILED
    assert node_attempts(broken) == {"broken": (NodeStatus.FAILED, 3)}
    assert done[broken.pk].error == "Node 'broken' failed: wait node failed after 0s"

    assert done[slow.pk].status == RunStatus.FAILED
    assert node_attempts(slow) == {"slow": (NodeStatus.FAILED, 1)}  # "never" never started
    assert NodeRun.objects.get(run=slow).error == "Node 'slow' timed out after 0.5 s"
    assert done[slow.pk].error == "Node 'slow' failed: Node 'slow' timed out after 0.5 s"


def test_a_duplicate_of_a_running_node_waits_for_it_and_duplicates_of_ended_ones_are_dropped(
    workers: WorkerPool,
):
    worker = workers.start("w1", concurrency=2)
    definition = linear("once", wait("slow", 3), wait("last"))
    run = queue_run(definition)

    def dropped() -> int:
        return worker.output().count(": None\n")  # run_node's result when it did nothing

    wait_for(lambda: NodeRun.objects.filter(run=run, status=NodeStatus.RUNNING).exists())
    dispatch.get().enqueue_node(run.pk, definition.node("slow"))
    # Held by a live process: the duplicate is sent again for later, never simply dropped (it
    # could have been the only message); it comes back once the node has ended, and is dropped.
    wait_for(lambda: dropped() == 1, timeout=30)
    assert NodeRun.objects.get(run=run, node_id="slow").status == NodeStatus.RUNNING
    wait_for(lambda: dropped() == 2, timeout=30)
    assert NodeRun.objects.get(run=run, node_id="slow").status == NodeStatus.COMPLETED

    wait_for(finished(run.pk), timeout=30)
    for spec in definition.nodes:
        dispatch.get().enqueue_node(run.pk, spec)
    wait_for(lambda: dropped() == 4, timeout=30)

    done = PipelineRun.objects.get(pk=run.pk)
    assert done.status == RunStatus.COMPLETED
    assert set(NodeRun.objects.filter(run=run).values_list("status", "attempt")) == {
        (NodeStatus.COMPLETED, 1)
    }
    assert done.events.filter(kind=RunEvent.COMPLETED).count() == 1
