"""Recovery with real workers and a real broker: killed workers and lost messages lose no run."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
from django.db import connection

from orchestrator import definitions, engine, lease, recovery
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.state import NodeStatus, RunStatus
from tests.conftest import (
    AMQP,
    CLI,
    DEFAULT_QUEUE,
    REPO,
    Broker,
    WorkerPool,
    free_port,
    subprocess_env,
    wait_for,
)
from tests.test_workers import linear, node_attempts, queue_run, wait

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]

#: Comfortably past ORCHESTRATOR_HEARTBEAT_TIMEOUT and ORCHESTRATOR_REDISPATCH_AFTER (3 s).
QUIET = 3.5


def status_of(run_id: int) -> str:
    return PipelineRun.objects.filter(pk=run_id).values_list("status", flat=True).get()


def all_completed(runs: list[PipelineRun]):
    ids = [r.pk for r in runs]
    return lambda: (
        PipelineRun.objects.filter(pk__in=ids, status=RunStatus.COMPLETED).count() == len(ids)
    )


def recovered_until(predicate, timeout: float = 30) -> list[recovery.RecoveryReport]:
    """Run recovery passes, as celery beat would, until ``predicate`` holds."""
    reports: list[recovery.RecoveryReport] = []

    def check() -> bool:
        if predicate():
            return True
        reports.append(recovery.recover())
        return False

    wait_for(check, timeout=timeout, interval=0.5)
    return reports


def redispatches(run_id: int, node_id: str) -> int:
    return RunEvent.objects.filter(
        run_id=run_id, node_id=node_id, kind=RunEvent.NODE_REDISPATCHED
    ).count()


def lost_run(definition: definitions.Definition) -> PipelineRun:
    """A queued run whose entry message the broker never delivered (it was lost)."""
    return engine.create_run(definition, payload={})


def silent_run(definition: definitions.Definition) -> PipelineRun:
    """A run whose entry node was claimed by a worker that then went silent: this process,
    which claims it and never beats."""
    run = engine.create_run(definition, payload={})
    assert engine.claim_node(run.pk, definition.entry) is not None
    return run


def test_run_survives_a_worker_killed_mid_node_and_completed_nodes_do_not_run_again(
    workers: WorkerPool,
):
    doomed = workers.start("doomed")
    run = queue_run(linear("killed", wait("w0"), wait("w1", 3), wait("w2")))

    def w1_has_beaten() -> bool:
        node = NodeRun.objects.filter(run=run, node_id="w1", status=NodeStatus.RUNNING).first()
        return node is not None and node.heartbeat > node.started_at

    wait_for(w1_has_beaten, timeout=30)
    doomed.kill()
    workers.start("rescuer")
    assert status_of(run.pk) == RunStatus.RUNNING

    reports = recovered_until(lambda: status_of(run.pk) == RunStatus.COMPLETED, timeout=40)

    assert node_attempts(run) == {
        "w0": (NodeStatus.COMPLETED, 1),
        "w1": (NodeStatus.COMPLETED, 2),
        "w2": (NodeStatus.COMPLETED, 1),
    }
    if AMQP:
        # RabbitMQ re-delivers a lost connection's messages at once, and the delivery finds the
        # holder's process gone: taken over before any pass.
        assert [n for r in reports for n in r.stale_nodes] == []
        event = RunEvent.objects.get(run=run, kind=RunEvent.NODE_RECLAIMED)
        assert event.details["reason"].endswith(" is gone")
        return
    # Redis keeps the message until its visibility timeout: the pass finds the silent node.
    assert [(run.pk, "w1")] == [n for r in reports for n in r.stale_nodes]
    assert redispatches(run.pk, "w1") == 1
    event = RunEvent.objects.get(run=run, kind=RunEvent.NODE_REDISPATCHED)
    assert event.details["reason"] == "worker went silent"


def test_recovery_finishes_every_run_after_the_broker_lost_its_queued_messages(
    workers: WorkerPool, broker: Broker
):
    workers.start("busy")
    busy = queue_run(linear("busy", wait("long", 3), wait("then")))
    wait_for(lambda: NodeRun.objects.filter(run=busy, status=NodeStatus.RUNNING).exists())
    waiting = [queue_run(linear("quick", wait("first"), wait("second"))) for _ in range(4)]
    broker.flushall()  # the four entry messages waiting behind the busy node are lost

    time.sleep(QUIET)
    assert {status_of(r.pk) for r in waiting} == {RunStatus.QUEUED}
    reports = recovered_until(all_completed([busy, *waiting]), timeout=40)

    assert sorted(n for r in reports for n in r.stalled_runs) == [(r.pk, "first") for r in waiting]
    nodes = NodeRun.objects.filter(run__in=[busy, *waiting])
    assert nodes.count() == 10
    assert set(nodes.values_list("status", "attempt")) == {(NodeStatus.COMPLETED, 1)}


def test_two_recovery_passes_at_once_start_nothing_twice(workers: WorkerPool):
    definition = linear("one", wait("only"))
    lost = [lost_run(definition) for _ in range(6)]
    silent = [silent_run(definition) for _ in range(2)]
    time.sleep(QUIET)

    barrier = threading.Barrier(2)
    reports: list[recovery.RecoveryReport] = []

    def pass_() -> None:
        try:
            barrier.wait()
            reports.append(recovery.recover())
        finally:
            connection.close()

    threads = [threading.Thread(target=pass_) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert len(reports) == 2
    assert sorted(n for r in reports for n in r.stale_nodes) == [(r.pk, "only") for r in silent]
    # A pass sends only what the queue lacks when it looks, so two passes at once (they take
    # turns under the lease, but recover() itself takes none) may leave a lost run to the next
    # pass; neither sends one twice.
    sent = [n for r in reports for n in r.stalled_runs]
    assert len(sent) == len(set(sent)) and set(sent) <= {(r.pk, "only") for r in lost}
    sent += recovery.recover().stalled_runs
    assert sorted(sent) == [(r.pk, "only") for r in lost]
    assert all(redispatches(r.pk, "only") == 1 for r in [*lost, *silent])
    workers.start("w1")
    wait_for(all_completed([*lost, *silent]), timeout=30)
    assert all(node_attempts(r) == {"only": (NodeStatus.COMPLETED, 1)} for r in lost)
    assert all(node_attempts(r) == {"only": (NodeStatus.COMPLETED, 2)} for r in silent)


def test_recover_commands_on_two_hosts_at_once_report_each_redispatch_once(queued_cli: CLI):
    definition = linear("one", wait("only"))
    silent = [silent_run(definition) for _ in range(2)]
    lost = [lost_run(definition) for _ in range(4)]
    time.sleep(QUIET)

    passes = [queued_cli.popen("recover"), queued_cli.popen("recover", "--json")]
    (text, _), (document, _) = [p.communicate(timeout=60) for p in passes]
    assert [p.returncode for p in passes] == [0, 0]

    said = [line for line in text.splitlines() if line != "Nothing to recover."]
    report = json.loads(document)
    said += [
        f"Run {i['run_id']}: node '{i['node_id']}' lost its worker; re-dispatched."
        for i in report["stale_nodes"]
    ]
    said += [
        f"Run {i['run_id']}: nothing was running or queued; re-dispatched '{i['node_id']}'."
        for i in report["stalled_runs"]
    ]
    assert sorted(said) == sorted(
        [f"Run {r.pk}: node 'only' lost its worker; re-dispatched." for r in silent]
        + [f"Run {r.pk}: nothing was running or queued; re-dispatched 'only'." for r in lost]
    )
    assert all(redispatches(r.pk, "only") == 1 for r in [*lost, *silent])
    patient = CLI(queued_cli.cwd, {**queued_cli.env, "ORCHESTRATOR_REDISPATCH_AFTER": "60"})
    assert patient("recover", check=True).stdout == "Nothing to recover.\n"


def test_recover_with_the_broker_down_says_so_and_redispatches_nothing(cli: CLI):
    lost = lost_run(linear("one", wait("only")))
    dispatched = NodeRun.objects.get(run=lost, node_id="only").dispatched_at
    closed = f"redis://127.0.0.1:{free_port()}/0"
    # The run counts as stalled at once, so the pass has something it would re-dispatch.
    down = CLI(
        cli.cwd, {**cli.env, "CELERY_BROKER_URL": closed, "ORCHESTRATOR_REDISPATCH_AFTER": "0"}
    )

    result = down("recover")

    assert result.returncode == 1
    assert result.stderr.startswith(f"CommandError: Cannot reach the broker at {closed}")
    assert "Traceback" not in result.stderr
    assert redispatches(lost.pk, "only") == 0
    only = NodeRun.objects.get(run=lost, node_id="only")
    assert (only.status, only.dispatched_at) == (NodeStatus.QUEUED, dispatched)


def test_recovery_task_is_scheduled_by_the_shipped_beat_schedule():
    from workers import tasks
    from workers.celery import app

    schedule = app.conf.beat_schedule
    assert [entry["task"] for entry in schedule.values()] == [tasks.recover.name]
    assert tasks.recover.name in app.tasks
    beat = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers.celery", "beat", "--help"],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert beat.returncode == 0, beat.stderr
    assert "--schedule" in beat.stdout


def test_celery_beat_runs_recovery_periodically_so_a_lost_run_completes_unaided(
    workers: WorkerPool, broker: Broker, tmp_path
):
    lost = lost_run(linear("one", wait("only")))
    workers.start("w1", env={"ORCHESTRATOR_REDISPATCH_AFTER": "1"})
    log = (tmp_path / "beat.log").open("w")
    beat = subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "workers.celery", "beat", "--loglevel", "INFO"),
            *("--schedule", str(tmp_path / "beat-schedule")),
        ],
        cwd=REPO,
        env=subprocess_env(CELERY_BROKER_URL=broker.url, ORCHESTRATOR_RECOVERY_INTERVAL="0.5"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: status_of(lost.pk) == RunStatus.COMPLETED, timeout=40)
    finally:
        beat.terminate()
        beat.wait(15)
    assert node_attempts(lost) == {"only": (NodeStatus.COMPLETED, 1)}
    assert redispatches(lost.pk, "only") >= 1  # more only if the machine is slow: still ran once
    assert (
        "Sending due task orchestrator-recover (workers.tasks.recover)"
        in (tmp_path / "beat.log").read_text()
    )


def test_recovery_settles_a_pause_left_between_a_recorded_node_and_its_settling():
    """A worker recorded its node (and its successor as ready), then stopped before settling the
    pause asked for meanwhile."""
    definition = linear("halfway", wait("first"), wait("second"))
    run = engine.create_run(definition, payload={})
    claim = engine.claim_node(run.pk, definition.entry)
    assert claim is not None
    PipelineRun.objects.filter(pk=run.pk).update(status=RunStatus.PAUSING)
    NodeRun.objects.filter(pk=claim.node_run_id).update(status=NodeStatus.COMPLETED)
    NodeRun.objects.create(
        run=run, node_id="second", node_type="wait", position=1, status=NodeStatus.QUEUED
    )

    report = recovery.recover()

    run.refresh_from_db()
    assert (run.status, run.nodes_in(NodeStatus.QUEUED)) == (RunStatus.PAUSED, ["second"])
    assert report.settled_runs == [(run.pk, "PAUSED")]
    assert report.stale_nodes == report.stalled_runs == []
    assert recovery.recover().total == 0


def test_three_passes_over_300_queued_runs_and_no_worker_never_flood_the_queue(broker: Broker):
    definition = linear("one", wait("only"))
    runs = [queue_run(definition) for _ in range(300)]
    assert broker.depth(DEFAULT_QUEUE) == 300

    reports = [recovery.recover(redispatch_after=0) for _ in range(3)]

    # Every waiting node still has its message in the queue: nothing is sent again.
    assert [r.total for r in reports] == [0, 0, 0]
    assert broker.depth(DEFAULT_QUEUE) == 300  # at most 2 x 300 is the promise
    broker.flushall()  # now the broker loses them all
    assert len(recovery.recover(redispatch_after=0).stalled_runs) == 300
    assert recovery.recover(redispatch_after=0).total == 0
    assert broker.depth(DEFAULT_QUEUE) == 300
    assert all(redispatches(r.pk, "only") == 1 for r in runs)


def test_a_run_recovery_cannot_read_is_recorded_and_the_pass_goes_on(
    broker: Broker, queued_cli: CLI
):
    definition = linear("one", wait("only"))
    unreadable, readable = lost_run(definition), lost_run(definition)
    # Its node type is a plug-in this host does not have.
    config = {**unreadable.config, "nodes": [{"id": "only", "type": "not-installed-here"}]}
    PipelineRun.objects.filter(pk=unreadable.pk).update(config=config)
    engine.plans._plans.clear()

    report = recovery.recover(redispatch_after=0)

    assert report.stalled_runs == [(readable.pk, "only")]
    [(run_id, node_id, reason)] = report.failed
    assert (run_id, node_id) == (unreadable.pk, "only")
    assert (
        reason == "Pipeline definition invalid: - Node 'only' has unknown type: not-installed-here"
    )
    [event] = RunEvent.objects.filter(run=unreadable, kind=RunEvent.RECOVERY_FAILED)
    assert event.details == {"reason": reason}
    assert recovery.recover(redispatch_after=0).failed == report.failed
    assert RunEvent.objects.filter(run=unreadable, kind=RunEvent.RECOVERY_FAILED).count() == 1
    status = queued_cli("pr", "status", str(unreadable.pk), check=True).stdout
    assert "recovery failed [only]" in status
    assert reason in status


def test_recover_redispatch_after_zero_sends_at_once_what_the_broker_just_lost(queued_cli: CLI):
    lost = [lost_run(linear("one", wait("only"))) for _ in range(2)]
    patient = CLI(queued_cli.cwd, {**queued_cli.env, "ORCHESTRATOR_REDISPATCH_AFTER": "60"})
    assert patient("recover", check=True).stdout == "Nothing to recover.\n"

    result = patient("recover", "--redispatch-after", "0", check=True)

    assert result.stdout.splitlines() == [
        f"Run {r.pk}: nothing was running or queued; re-dispatched 'only'." for r in lost
    ]
    bad = patient("recover", "--redispatch-after", "soon")
    assert bad.returncode == 2
    assert "--redispatch-after: must be a number of seconds, 0 or more: 'soon'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_recover_waits_for_a_pass_running_elsewhere_and_says_so_if_it_lasts(queued_cli: CLI):
    with lease.held(recovery.LEASE) as held:
        assert held
        result = queued_cli("recover", "--wait", "0.5")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "CommandError: Another recovery pass is still running after 0.5 s; try again."
    )
    assert queued_cli("recover", check=True).stdout == "Nothing to recover.\n"
