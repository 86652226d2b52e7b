"""Mirroring pause, cancel and resume of linked runs to Clarifai: inline and through a worker."""

from __future__ import annotations

import grpc
import pytest

from orchestrator import control, definitions, dispatch, engine, mirror
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.state import Action, NodeStatus, RunStatus
from tests.clarifai_peer import ClarifaiPeer
from tests.conftest import WorkerPool, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CODES = {64001: "JOB_RUNNING", 64004: "JOB_CANCELLED", 64008: "JOB_PAUSED"}


def linked_run(*waits: float, run_id: str = "pvr-1") -> PipelineRun:
    """A QUEUED run of wait nodes (``waits`` seconds each), linked to Clarifai run ``run_id``."""
    nodes = [
        {
            "id": f"n{i}",
            "type": "wait",
            "config": {"seconds": seconds},
            "next": f"n{i + 1}" if i + 1 < len(waits) else None,
        }
        for i, seconds in enumerate(waits or (0,))
    ]
    definition = definitions.parse({"name": "linked", "nodes": nodes})
    link = engine.ClarifaiLink("u1", "a1", "p1", "v1", run_id)
    return engine.create_run(definition, payload={}, link=link)


def codes(peer: ClarifaiPeer) -> list[str]:
    """The orchestration status of each patch the peer received, by name."""
    return [
        CODES[run.orchestration_status.status.code]
        for request in peer.requests
        for run in request.pipeline_version_runs
    ]


def mirror_events(run: PipelineRun) -> list[tuple[str, str, int]]:
    """(kind, code, attempt) of each mirror event of ``run``, oldest first."""
    events = RunEvent.objects.filter(
        run=run, kind__in=[RunEvent.MIRRORED, RunEvent.MIRROR_FAILED]
    ).order_by("id")
    return [(e.kind, e.details["code"], e.details["attempt"]) for e in events]


def status(run: PipelineRun) -> str:
    return PipelineRun.objects.get(pk=run.pk).status


def refuse_quota(peer: ClarifaiPeer, times: int) -> None:
    """The next ``times`` calls fail with a retryable error the channel itself does not retry."""
    peer.fail_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    peer.fail_times = times


# --- immediate changes, inline ------------------------------------------------------------------


def test_pause_of_a_queued_linked_run_sends_one_job_paused_recorded_as_mirrored(
    clarifai_peer: ClarifaiPeer,
):
    run = linked_run()
    control.signal(run.pk, Action.PAUSE)

    assert status(run) == RunStatus.PAUSED
    assert codes(clarifai_peer) == ["JOB_PAUSED"]
    [request] = clarifai_peer.requests
    assert (request.user_app_id.user_id, request.user_app_id.app_id) == ("u1", "a1")
    assert (request.pipeline_id, request.pipeline_version_id) == ("p1", "v1")
    assert request.pipeline_version_runs[0].id == "pvr-1"
    assert request.action == "overwrite"
    assert clarifai_peer.metadata[0]["authorization"] == "Key test-pat"
    paused = RunEvent.objects.get(run=run, kind=RunEvent.PAUSED)
    mirrored = RunEvent.objects.get(run=run, kind=RunEvent.MIRRORED)
    assert mirrored.details == {
        "event": paused.pk,
        "code": "JOB_PAUSED",
        "attempt": 1,
        "pipeline_version_run_id": "pvr-1",
    }
    assert mirror.state(run).startswith("JOB_PAUSED mirrored at ")


def test_cancel_of_a_paused_linked_run_sends_one_job_cancelled(clarifai_peer: ClarifaiPeer):
    run = linked_run()
    control.signal(run.pk, Action.PAUSE)
    clarifai_peer.reset()

    control.signal(run.pk, Action.CANCEL)

    assert status(run) == RunStatus.CANCELLED
    assert codes(clarifai_peer) == ["JOB_CANCELLED"]
    assert mirror_events(run)[-1] == (RunEvent.MIRRORED, "JOB_CANCELLED", 1)


def test_resume_of_a_paused_linked_run_sends_one_job_running_and_the_run_goes_on(
    clarifai_peer: ClarifaiPeer,
):
    run = linked_run(0, 0)
    control.signal(run.pk, Action.PAUSE)
    clarifai_peer.reset()

    control.signal(run.pk, Action.RESUME)  # inline: the rest of the run executes here

    assert status(run) == RunStatus.COMPLETED
    assert codes(clarifai_peer) == ["JOB_RUNNING"]
    resumed = RunEvent.objects.get(run=run, kind=RunEvent.RESUMED)
    mirrored = RunEvent.objects.filter(run=run, kind=RunEvent.MIRRORED).order_by("id").last()
    assert mirrored.details["event"] == resumed.pk
    assert mirrored.details["code"] == "JOB_RUNNING"


def test_an_unlinked_run_is_never_mirrored(clarifai_peer: ClarifaiPeer):
    definition = definitions.parse({"name": "plain", "nodes": [{"id": "n0", "type": "wait"}]})
    run = engine.create_run(definition, payload={})
    control.signal(run.pk, Action.PAUSE)
    control.signal(run.pk, Action.CANCEL)
    assert status(run) == RunStatus.CANCELLED
    assert clarifai_peer.requests == []
    assert mirror_events(run) == []
    assert mirror.state(run) == "not mirrored yet"


# --- failures and retries, inline ---------------------------------------------------------------


def test_clarifai_failure_never_rolls_back_the_local_pause(clarifai_peer: ClarifaiPeer):
    clarifai_peer.mode = "failure"
    run = linked_run()

    result = control.signal(run.pk, Action.PAUSE)

    assert result.status == RunStatus.PAUSED
    assert status(run) == RunStatus.PAUSED
    assert len(clarifai_peer.requests) == 1  # a refusal is final: no retry
    [failed] = RunEvent.objects.filter(run=run, kind=RunEvent.MIRROR_FAILED)
    assert failed.details["error"] == (
        "Clarifai refused the change: CONN_DOES_NOT_EXIST (Resource does not exist)"
    )
    assert failed.details["retryable"] is False
    assert not RunEvent.objects.filter(run=run, kind=RunEvent.MIRRORED).exists()
    assert mirror.state(run) == (
        "JOB_PAUSED failed (attempt 1): "
        "Clarifai refused the change: CONN_DOES_NOT_EXIST (Resource does not exist)"
    )


def test_grpc_error_is_recorded_with_its_status_name(clarifai_peer: ClarifaiPeer):
    clarifai_peer.mode = "grpc_error"
    clarifai_peer.grpc_code = grpc.StatusCode.NOT_FOUND
    clarifai_peer.grpc_details = "no run pvr-1"
    run = linked_run()
    control.signal(run.pk, Action.PAUSE)
    [failed] = RunEvent.objects.filter(run=run, kind=RunEvent.MIRROR_FAILED)
    assert failed.details["error"] == (
        "Clarifai has no such pipeline version run (NOT_FOUND): no run pvr-1"
    )
    assert status(run) == RunStatus.PAUSED


def test_inline_mirror_is_retried_with_backoff_until_the_peer_recovers(
    clarifai_peer: ClarifaiPeer,
):
    refuse_quota(clarifai_peer, 2)
    run = linked_run()

    control.signal(run.pk, Action.PAUSE)

    assert status(run) == RunStatus.PAUSED
    assert len(clarifai_peer.requests) == 3
    assert codes(clarifai_peer) == ["JOB_PAUSED"] * 3
    assert mirror_events(run) == [
        (RunEvent.MIRROR_FAILED, "JOB_PAUSED", 1),
        (RunEvent.MIRROR_FAILED, "JOB_PAUSED", 2),
        (RunEvent.MIRRORED, "JOB_PAUSED", 3),
    ]
    first, second, success = RunEvent.objects.filter(
        run=run, kind__in=[RunEvent.MIRRORED, RunEvent.MIRROR_FAILED]
    ).order_by("id")
    assert "RESOURCE_EXHAUSTED" in first.details["error"]
    # Backoff doubles from ORCHESTRATOR_MIRROR_BACKOFF (0.1 s in the test settings).
    assert (second.at - first.at).total_seconds() >= 0.1
    assert (success.at - second.at).total_seconds() >= 0.2
    # The local effect was recorded before any attempt: the mirror never held it back.
    paused = RunEvent.objects.get(run=run, kind=RunEvent.PAUSED)
    assert paused.pk < first.pk


def test_inline_mirror_gives_up_after_the_configured_attempts(
    clarifai_peer: ClarifaiPeer, settings
):
    settings.ORCHESTRATOR_MIRROR_RETRIES = 3
    refuse_quota(clarifai_peer, 100)
    run = linked_run()

    control.signal(run.pk, Action.PAUSE)

    assert status(run) == RunStatus.PAUSED
    assert len(clarifai_peer.requests) == 3
    assert [kind for kind, _, _ in mirror_events(run)] == [RunEvent.MIRROR_FAILED] * 3


def test_redelivering_a_mirrored_transition_sends_no_duplicate(clarifai_peer: ClarifaiPeer):
    run = linked_run()
    control.signal(run.pk, Action.PAUSE)
    paused = RunEvent.objects.get(run=run, kind=RunEvent.PAUSED)

    assert mirror.deliver(run.pk, paused.pk) is True
    assert mirror.deliver(run.pk, paused.pk, attempt=2) is True

    assert len(clarifai_peer.requests) == 1
    assert len(mirror_events(run)) == 1


# --- the deadline ---------------------------------------------------------------------------------


def test_mirror_calls_carry_a_ten_second_deadline_by_default(
    clarifai_peer: ClarifaiPeer, monkeypatch
):
    monkeypatch.delenv("ORCHESTRATOR_CLARIFAI_TIMEOUT", raising=False)
    control.signal(linked_run().pk, Action.PAUSE)
    [remaining] = clarifai_peer.deadlines
    assert 8 < remaining <= 10.5  # the peer reads the deadline with a little clock slack


def test_the_deadline_comes_from_the_environment_or_the_setting(
    clarifai_peer: ClarifaiPeer, monkeypatch, settings
):
    monkeypatch.setenv("ORCHESTRATOR_CLARIFAI_TIMEOUT", "3")
    control.signal(linked_run(run_id="pvr-env").pk, Action.PAUSE)
    settings.ORCHESTRATOR_CLARIFAI_TIMEOUT = 2  # the Django setting wins over the environment
    control.signal(linked_run(run_id="pvr-setting").pk, Action.PAUSE)

    from_env, from_setting = clarifai_peer.deadlines
    assert 2.5 < from_env <= 3.5  # with a little clock slack either side
    assert 1 < from_setting <= 2.5


def test_a_stalled_peer_is_a_recorded_deadline_failure(clarifai_peer: ClarifaiPeer, settings):
    settings.ORCHESTRATOR_CLARIFAI_TIMEOUT = 0.3
    settings.ORCHESTRATOR_MIRROR_RETRIES = 1
    clarifai_peer.mode = "stall"
    run = linked_run()

    control.signal(run.pk, Action.PAUSE)

    assert status(run) == RunStatus.PAUSED
    [failed] = RunEvent.objects.filter(run=run, kind=RunEvent.MIRROR_FAILED)
    assert failed.details["error"] == "Clarifai did not answer within 0.3 s"
    assert failed.details["retryable"] is True


def test_a_bad_deadline_setting_is_a_recorded_failure_not_a_crash(
    clarifai_peer: ClarifaiPeer, monkeypatch
):
    monkeypatch.setenv("ORCHESTRATOR_CLARIFAI_TIMEOUT", "soon")
    run = linked_run()

    control.signal(run.pk, Action.PAUSE)

    assert status(run) == RunStatus.PAUSED
    assert clarifai_peer.requests == []
    [failed] = RunEvent.objects.filter(run=run, kind=RunEvent.MIRROR_FAILED)
    assert failed.details["error"] == (
        "ORCHESTRATOR_CLARIFAI_TIMEOUT must be a positive number of seconds, not 'soon'"
    )


# --- through a worker -----------------------------------------------------------------------------


def start_worker(workers: WorkerPool, peer: ClarifaiPeer):
    return workers.start(env={"CLARIFAI_PAT": "worker-pat", "CLARIFAI_API_BASE": peer.base})


def mirrored(run: PipelineRun, code: str):
    def check() -> bool:
        return RunEvent.objects.filter(run=run, kind=RunEvent.MIRRORED, details__code=code).exists()

    return check


@pytest.mark.workers
def test_worker_side_pause_of_a_linked_run_sends_exactly_one_job_paused(
    workers: WorkerPool, clarifai_peer: ClarifaiPeer
):
    start_worker(workers, clarifai_peer)
    run = linked_run(1.0, 0)
    engine.dispatch_run(run)
    wait_for(
        lambda: NodeRun.objects.filter(run=run, node_id="n0", status=NodeStatus.RUNNING).exists()
    )

    result = control.signal(run.pk, Action.PAUSE)
    assert result.status == RunStatus.PAUSING
    assert clarifai_peer.requests == []  # nothing has taken effect yet

    wait_for(mirrored(run, "JOB_PAUSED"), timeout=30)
    assert status(run) == RunStatus.PAUSED
    assert clarifai_peer.metadata[0]["authorization"] == "Key worker-pat"
    paused = RunEvent.objects.get(run=run, kind=RunEvent.PAUSED)
    assert RunEvent.objects.get(run=run, kind=RunEvent.MIRRORED).details["event"] == paused.pk

    control.signal(run.pk, Action.RESUME)
    wait_for(lambda: status(run) == RunStatus.COMPLETED, timeout=30)
    wait_for(mirrored(run, "JOB_RUNNING"), timeout=30)
    # Exactly one patch per transition, in order, however long the worker took.
    assert codes(clarifai_peer) == ["JOB_PAUSED", "JOB_RUNNING"]


@pytest.mark.workers
def test_worker_retries_the_mirror_until_the_peer_recovers_leaving_the_run_alone(
    workers: WorkerPool, clarifai_peer: ClarifaiPeer
):
    start_worker(workers, clarifai_peer)
    refuse_quota(clarifai_peer, 3)
    run = linked_run()

    control.signal(run.pk, Action.PAUSE)  # immediate; the worker mirrors it

    seen: set[str] = set()

    def recovered() -> bool:
        seen.add(status(run))
        return mirrored(run, "JOB_PAUSED")()

    wait_for(recovered, timeout=30)
    assert seen == {RunStatus.PAUSED}
    assert {m["authorization"] for m in clarifai_peer.metadata} == {"Key worker-pat"}
    assert len(clarifai_peer.requests) == 4
    assert mirror_events(run) == [
        (RunEvent.MIRROR_FAILED, "JOB_PAUSED", 1),
        (RunEvent.MIRROR_FAILED, "JOB_PAUSED", 2),
        (RunEvent.MIRROR_FAILED, "JOB_PAUSED", 3),
        (RunEvent.MIRRORED, "JOB_PAUSED", 4),
    ]
    assert status(run) == RunStatus.PAUSED

    control.signal(run.pk, Action.CANCEL)  # immediate too, with a healthy peer
    wait_for(mirrored(run, "JOB_CANCELLED"), timeout=30)
    assert codes(clarifai_peer) == ["JOB_PAUSED"] * 4 + ["JOB_CANCELLED"]
    assert status(run) == RunStatus.CANCELLED


@pytest.mark.workers
def test_two_deliveries_of_one_transition_racing_patch_clarifai_once(
    workers: WorkerPool, clarifai_peer: ClarifaiPeer
):
    worker = workers.start(
        concurrency=2, env={"CLARIFAI_PAT": "worker-pat", "CLARIFAI_API_BASE": clarifai_peer.base}
    )
    clarifai_peer.mode = "stall"  # each call is answered (with success) only after a while
    clarifai_peer.stall_seconds = 1.5
    run = linked_run()

    control.signal(run.pk, Action.PAUSE)  # immediate: the first delivery is queued
    paused = RunEvent.objects.get(run=run, kind=RunEvent.PAUSED)
    dispatch.get().enqueue_mirror(run.pk, paused.pk)  # and a second one, at the same time

    # Both deliveries run to their end (the one that lost the claim at once).
    wait_for(lambda: worker.output().count("succeeded") == 2, timeout=30)
    assert codes(clarifai_peer) == ["JOB_PAUSED"]
    assert mirror_events(run) == [(RunEvent.MIRRORED, "JOB_PAUSED", 1)]
