"""Self-healing with real workers and real faults: pool processes killed mid-node, a node that
keeps killing its worker, database connections terminated mid-run, a broker that lost its data,
and the recovery lease that lets one pass run at a time across workers."""

from __future__ import annotations

import itertools
import os
import re
import signal
import time

import pytest
from django.db import connection

from orchestrator import lease, recovery
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.state import NodeStatus, RunStatus
from tests import poison  # noqa: F401  (registers the ``boom`` node type here too)
from tests.conftest import Broker, WorkerPool, wait_for
from tests.test_recovery import all_completed, lost_run, redispatches
from tests.test_workers import finished, linear, node_attempts, queue_run, wait

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]

#: Liveness timing that only an immediate take-over beats: a stale heartbeat takes a minute, and
#: no recovery pass runs (the workers' own are off, and the test runs none).
PATIENT = {
    "ORCHESTRATOR_HEARTBEAT_TIMEOUT": "60",
    "ORCHESTRATOR_REDISPATCH_AFTER": "60",
    "ORCHESTRATOR_RECOVERY_INTERVAL": "0",
}

on_postgresql = pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL"),
    reason="pg_terminate_backend needs PostgreSQL (set TEST_DATABASE_URL)",
)


def running(run: PipelineRun, node_id: str):
    return lambda: NodeRun.objects.filter(
        run=run, node_id=node_id, status=NodeStatus.RUNNING
    ).first()


def test_a_pool_process_killed_mid_node_is_taken_over_at_once_without_any_recovery_pass(
    workers: WorkerPool,
):
    worker = workers.start("w1", concurrency=2, env=PATIENT)
    run = queue_run(linear("killed", wait("w0"), wait("w1", 2), wait("w2")))
    node = wait_for(running(run, "w1"))
    os.kill(int(node.worker.rsplit(":", 1)[1]), signal.SIGKILL)  # as the OOM killer would

    # Celery re-delivers the message at once; the delivery sees the holder's process is gone.
    done = wait_for(finished(run.pk), timeout=15)

    assert done.status == RunStatus.COMPLETED, done.error
    assert node_attempts(run) == {
        "w0": (NodeStatus.COMPLETED, 1),
        "w1": (NodeStatus.COMPLETED, 2),
        "w2": (NodeStatus.COMPLETED, 1),
    }
    [event] = RunEvent.objects.filter(run=run, kind=RunEvent.NODE_RECLAIMED)
    assert (event.node_id, event.details["reason"]) == ("w1", f"its process {node.worker} is gone")
    assert redispatches(run.pk, "w1") == 0
    assert worker.process.poll() is None


def test_a_node_that_keeps_killing_its_worker_fails_after_three_losses(workers: WorkerPool):
    workers.start("w1", env={**PATIENT, "ORCHESTRATOR_NODE_MODULES": "tests.poison"})
    run = queue_run(linear("poison", wait("before"), {"id": "boom", "type": "boom"}, wait("after")))

    done = wait_for(finished(run.pk), timeout=40)

    assert done.status == RunStatus.FAILED
    assert done.error == "Node 'boom' failed: its worker was lost 3 times while running it"
    boom = NodeRun.objects.get(run=run, node_id="boom")
    # Three attempts each lost their process; the fourth delivery fails the node unrun.
    assert (boom.status, boom.attempt, boom.losses) == (NodeStatus.FAILED, 4, 3)
    assert RunEvent.objects.filter(run=run, kind=RunEvent.NODE_RECLAIMED).count() == 3
    assert not NodeRun.objects.filter(run=run, node_id="after").exists()


def terminate_connections() -> int:
    """Terminate every other connection to the test database; how many there were."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


@on_postgresql
def test_database_connections_terminated_mid_run_lose_no_run_and_run_no_node_twice(
    workers: WorkerPool,
):
    workers.start("w1", concurrency=2, env=PATIENT)
    runs = [queue_run(linear("ten", *(wait(f"n{i}", 0.3) for i in range(10)))) for _ in range(4)]

    terminated = 0
    for _ in range(3):
        wait_for(lambda: NodeRun.objects.filter(run__in=runs, status=NodeStatus.RUNNING).exists())
        terminated += terminate_connections()
        time.sleep(0.8)
    wait_for(all_completed(runs), timeout=60)

    assert terminated >= 3
    nodes = NodeRun.objects.filter(run__in=runs)
    assert nodes.count() == 40
    assert set(nodes.values_list("status", "attempt")) == {(NodeStatus.COMPLETED, 1)}
    assert not RunEvent.objects.filter(
        run__in=runs,
        kind__in=[RunEvent.NODE_FAILED, RunEvent.NODE_RETRY, RunEvent.NODE_REDISPATCHED],
    ).exists()


def test_a_broker_restarted_with_its_data_lost_mid_run_loses_no_run_with_only_workers(
    workers: WorkerPool, broker: Broker
):
    workers.start(
        "w1",
        concurrency=2,
        env={"ORCHESTRATOR_RECOVERY_INTERVAL": "0.5", "ORCHESTRATOR_REDISPATCH_AFTER": "1"},
    )
    runs = [queue_run(linear("chain", *(wait(f"n{i}", 0.2) for i in range(4)))) for _ in range(6)]
    wait_for(lambda: NodeRun.objects.filter(run__in=runs, status=NodeStatus.COMPLETED).count() >= 2)

    broker.lose_data()  # the queued messages of the runs not started yet are gone

    wait_for(all_completed(runs), timeout=60)  # no recover, no beat: the worker healed it
    nodes = NodeRun.objects.filter(run__in=runs)
    assert nodes.count() == 24
    assert set(nodes.values_list("status", "attempt")) == {(NodeStatus.COMPLETED, 1)}
    assert RunEvent.objects.filter(run__in=runs, kind=RunEvent.NODE_REDISPATCHED).exists()


PASS = re.compile(r"Recovery pass held the lease from ([\d.]+) to ([\d.]+)")


def test_every_worker_runs_the_recovery_pass_and_one_pass_runs_at_a_time(workers: WorkerPool):
    healing = {
        "ORCHESTRATOR_RECOVERY_INTERVAL": "0.3",
        "ORCHESTRATOR_REDISPATCH_AFTER": "1",
        "ORCHESTRATOR_LOG_LEVEL": "INFO",
    }
    lost = [lost_run(linear("one", wait("only"))) for _ in range(3)]
    with lease.held(recovery.LEASE) as held:  # another host's pass, holding the lease
        assert held
        pair = [workers.start("a", env=healing), workers.start("b", env=healing)]
        time.sleep(2)  # several intervals: each worker knocks on the lease several times
        assert {r.status for r in PipelineRun.objects.filter(pk__in=[r.pk for r in lost])} == {
            RunStatus.QUEUED
        }
        assert not any(PASS.search(worker.output()) for worker in pair)

    wait_for(all_completed(lost), timeout=30)
    wait_for(lambda: all(len(set(PASS.findall(w.output()))) >= 2 for w in pair), timeout=30)

    # A line may be logged twice (the worker's handler and the orchestrator's): count it once.
    passes = sorted({(float(a), float(b)) for w in pair for a, b in PASS.findall(w.output())})
    assert all(begin >= end for (_, end), (begin, _) in itertools.pairwise(passes)), passes
    assert all(redispatches(r.pk, "only") == 1 for r in lost)
    assert all(node_attempts(r) == {"only": (NodeStatus.COMPLETED, 1)} for r in lost)
