"""Pause, cancel and resume through control.signal: the table on stored runs, the messages, the
event trail, duplicate deliveries, the admin actions, and the signals honoured by real workers."""

from __future__ import annotations

import os
import socket

import pytest
from django.urls import reverse
from django.utils import timezone

from orchestrator import control, definitions, dispatch, engine
from orchestrator.errors import RunNotFound, TransitionRefused
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.state import TERMINAL, Action, NodeStatus, RunStatus
from tests.conftest import WorkerPool, wait_for
from tests.test_state import NOOP, PAIRS, REFUSED

pytestmark = pytest.mark.django_db(transaction=True)

ALLOWED = {
    Action.PAUSE: "Pause is allowed only when the run is Queued or Running.",
    Action.CANCEL: "Cancel is allowed when the run is not already in a terminal state "
    "(Completed, Failed, Cancelled).",
    Action.RESUME: "Resume is allowed only when the run is Paused.",
}
REQUEST_KINDS = {
    Action.PAUSE: RunEvent.PAUSE_REQUESTED,
    Action.CANCEL: RunEvent.CANCEL_REQUESTED,
    Action.RESUME: RunEvent.RESUMED,
}


def chain(*nodes: tuple[str, float], name: str = "control") -> definitions.Definition:
    """A line of wait nodes: (id, seconds) each."""
    raw = [
        {
            "id": node_id,
            "type": "wait",
            "config": {"seconds": seconds},
            "next": nodes[i + 1][0] if i + 1 < len(nodes) else None,
        }
        for i, (node_id, seconds) in enumerate(nodes)
    ]
    return definitions.parse({"name": name, "nodes": raw})


HEALTH = chain(("metrics", 0), ("analyze", 0), ("notify", 0), name="health-check")


def node_run(run: PipelineRun, node_id: str, status: str, position: int) -> NodeRun:
    """A node record as the engine leaves it; a RUNNING one has a fresh heartbeat."""
    now = timezone.now()
    started = status != NodeStatus.QUEUED
    node, _ = NodeRun.objects.update_or_create(
        run=run,
        node_id=node_id,
        defaults={
            "node_type": "wait",
            "position": position,
            "status": status,
            "attempt": 1 if started else 0,
            "started_at": now if started else None,
            "heartbeat": now if status == NodeStatus.RUNNING else None,
            "reached": 1,
        },
    )
    return node


def run_in(status: str) -> PipelineRun:
    """A run of HEALTH put straight into ``status``, with the node records that status implies."""
    run = engine.create_run(HEALTH, payload={})  # metrics is queued
    if status in ("RUNNING", "PAUSING", "CANCELLING", "FAILING"):
        node_run(run, "metrics", NodeStatus.COMPLETED, 0)
        node_run(run, "analyze", NodeStatus.RUNNING, 1)
    elif status == "PAUSED":
        node_run(run, "metrics", NodeStatus.COMPLETED, 0)
        node_run(run, "analyze", NodeStatus.QUEUED, 1)
    elif status != "QUEUED":
        node_run(run, "metrics", NodeStatus.COMPLETED, 0)
    PipelineRun.objects.filter(pk=run.pk).update(status=status)
    run.refresh_from_db()
    return run


def started(run: PipelineRun) -> list[str]:
    """The nodes of the run that were ever claimed."""
    return list(run.node_runs.filter(attempt__gt=0).values_list("node_id", flat=True))


def status_of(run: PipelineRun) -> str:
    return PipelineRun.objects.values_list("status", flat=True).get(pk=run.pk)


def kinds(run: PipelineRun) -> list[str]:
    return list(
        RunEvent.objects.filter(run_id=run.pk).order_by("id").values_list("kind", flat=True)
    )


def assert_from_this_process(event: RunEvent) -> None:
    assert (event.host, event.pid) == (socket.gethostname(), os.getpid())


# --- the table, on stored runs -------------------------------------------------------------------


@pytest.mark.parametrize(("status", "action", "expected"), PAIRS)
def test_signal_answers_as_the_table_says_and_records_the_request(status, action, expected):
    run = run_in(status)
    if expected == REFUSED:
        with pytest.raises(TransitionRefused) as refused:
            control.signal(run.pk, action)
        assert str(refused.value) == (
            f"Cannot {action} pipeline run {run.pk}: it is {status}. {ALLOWED[action]}"
        )
        assert status_of(run) == status
        assert kinds(run) == [RunEvent.QUEUED]
        return

    result = control.signal(run.pk, action)
    request = RunEvent.objects.get(run_id=run.pk, kind=REQUEST_KINDS[action])
    assert_from_this_process(request)
    assert result.previous == status
    if expected == NOOP:
        assert result.noop and result.status == status
        assert result.message == f"Pipeline run {run.pk} is already {status.lower()}."
        assert request.details == {"previous": status, "status": status, "noop": True}
        assert status_of(run) == status
    else:
        assert not result.noop and result.status == expected
        assert request.details == {"previous": status, "status": expected}
        if (status, action) == ("PAUSED", Action.RESUME):
            # No broker in this process: the resumed run goes on inline, to its end.
            assert status_of(run) == RunStatus.COMPLETED
        else:
            assert status_of(run) == expected


def test_pause_on_a_queued_run_pauses_it_at_once_before_its_entry_node():
    run = run_in("QUEUED")
    result = control.signal(run.pk, Action.PAUSE)
    assert result.settled
    assert result.message == (
        f"Pipeline run {run.pk} has been paused. Resume it with: orchestrator pr resume {run.pk}"
    )
    run.refresh_from_db()
    assert (run.status, run.nodes_in(NodeStatus.QUEUED)) == ("PAUSED", ["metrics"])
    assert started(run) == []
    assert kinds(run) == [RunEvent.QUEUED, RunEvent.PAUSE_REQUESTED, RunEvent.PAUSED]
    paused = run.events.get(kind=RunEvent.PAUSED)
    assert paused.details == {"resume_from": ["metrics"]}
    assert_from_this_process(paused)


def test_pause_on_a_running_run_says_which_node_runs_and_where_it_will_pause():
    run = run_in("RUNNING")
    result = control.signal(run.pk, Action.PAUSE)
    assert not result.settled
    assert result.message == (
        f"Pipeline run {run.pk} is pausing: node 'analyze' is running; "
        "the run will pause before 'notify'."
    )


def test_pause_while_the_last_node_runs_says_the_run_will_complete():
    run = run_in("RUNNING")
    NodeRun.objects.filter(run=run, node_id="analyze").update(status=NodeStatus.COMPLETED)
    node_run(run, "notify", NodeStatus.RUNNING, 2)
    result = control.signal(run.pk, Action.PAUSE)
    assert result.message == (
        f"Pipeline run {run.pk} is pausing: node 'notify' is running and is the last node, "
        "so the run will complete."
    )


def test_cancel_on_a_running_run_says_its_node_is_being_stopped():
    run = run_in("RUNNING")
    result = control.signal(run.pk, Action.CANCEL)
    assert result.message == (
        f"Pipeline run {run.pk} is cancelling: node 'analyze' is being stopped; "
        "no further node will start."
    )
    assert kinds(run) == [RunEvent.QUEUED, RunEvent.CANCEL_REQUESTED]


def test_cancel_on_a_paused_run_ends_it_and_cancels_its_waiting_node():
    run = run_in("PAUSED")
    node_run(run, "analyze", NodeStatus.RETRYING, 1)
    result = control.signal(run.pk, Action.CANCEL)
    assert result.message == f"Pipeline run {run.pk} has been cancelled."
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.finished_at is not None
    assert NodeRun.objects.get(run=run, node_id="analyze").status == NodeStatus.CANCELLED
    assert NodeRun.objects.get(run=run, node_id="metrics").status == NodeStatus.COMPLETED
    assert kinds(run) == [RunEvent.QUEUED, RunEvent.CANCEL_REQUESTED, RunEvent.CANCELLED]
    assert_from_this_process(run.events.get(kind=RunEvent.CANCELLED))


def test_resume_while_pausing_withdraws_the_pause_and_the_node_carries_on():
    run = run_in("PAUSING")
    result = control.signal(run.pk, Action.RESUME)
    assert (result.previous, result.status) == ("PAUSING", "RUNNING")
    assert result.message == (
        f"Pipeline run {run.pk} has been resumed: the pause was withdrawn; "
        "node 'analyze' carries on."
    )
    assert status_of(run) == RunStatus.RUNNING
    assert NodeRun.objects.filter(run=run).count() == 2  # nothing was enqueued: analyze is running


def test_resume_inline_runs_the_rest_here_and_never_reruns_completed_nodes():
    run = run_in("PAUSED")
    result = control.signal(run.pk, Action.RESUME)
    assert result.message == (
        f"Pipeline run {run.pk} has been resumed: node 'analyze' runs here, inline "
        "(no broker is configured)."
    )
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    nodes = run.node_runs.order_by("position")
    assert [(n.node_id, n.status, n.attempt) for n in nodes] == [
        ("metrics", "COMPLETED", 1),
        ("analyze", "COMPLETED", 1),
        ("notify", "COMPLETED", 1),
    ]
    assert NodeRun.objects.get(run=run, node_id="metrics").output is None  # not run again
    assert kinds(run) == [RunEvent.QUEUED, RunEvent.RESUMED, RunEvent.COMPLETED]


def test_repeated_signals_succeed_as_no_ops_and_say_so():
    run = run_in("QUEUED")
    control.signal(run.pk, Action.PAUSE)
    again = control.signal(run.pk, Action.PAUSE)
    assert again.noop and again.message == f"Pipeline run {run.pk} is already paused."
    cancelling = run_in("RUNNING")
    control.signal(cancelling.pk, Action.CANCEL)
    again = control.signal(cancelling.pk, Action.CANCEL)
    assert again.noop and again.message == f"Pipeline run {cancelling.pk} is already cancelling."
    assert kinds(cancelling) == [
        RunEvent.QUEUED,
        RunEvent.CANCEL_REQUESTED,
        RunEvent.CANCEL_REQUESTED,
    ]


def test_pausing_a_completed_run_is_refused_naming_its_status_and_when_pause_is_allowed():
    run = run_in("COMPLETED")
    with pytest.raises(TransitionRefused) as refused:
        control.signal(str(run.pk), Action.PAUSE)
    assert str(refused.value) == (
        f"Cannot pause pipeline run {run.pk}: it is COMPLETED. "
        "Pause is allowed only when the run is Queued or Running."
    )


def test_signal_finds_a_run_by_its_clarifai_run_id():
    run = run_in("QUEUED")
    PipelineRun.objects.filter(pk=run.pk).update(clarifai_pipeline_version_run_id="pvr-7f3a")
    result = control.signal("pvr-7f3a", Action.CANCEL)
    assert result.run.pk == run.pk and status_of(run) == RunStatus.CANCELLED


def test_signal_to_an_unknown_run_is_a_clear_error():
    with pytest.raises(RunNotFound, match=r"^Pipeline run not found: 4242$"):
        control.signal(4242, Action.PAUSE)


# --- duplicate deliveries of a node --------------------------------------------------------------


def test_a_late_delivery_of_a_completed_node_leaves_a_running_run_where_it_is():
    run = run_in("RUNNING")
    assert engine.execute_node(run.pk, "metrics") is None
    run.refresh_from_db()
    assert (run.status, run.nodes_in(NodeStatus.RUNNING)) == ("RUNNING", ["analyze"])
    assert NodeRun.objects.get(run=run, node_id="metrics").attempt == 1


def test_a_late_delivery_of_a_completed_node_does_not_settle_a_pause_while_a_node_runs():
    run = run_in("PAUSING")  # analyze is running elsewhere, with a fresh heartbeat
    assert engine.execute_node(run.pk, "metrics") is None
    assert status_of(run) == RunStatus.PAUSING
    # analyze ends, its successor recorded as ready (as the worker's end of analyze does) ...
    NodeRun.objects.filter(run=run, node_id="analyze").update(status=NodeStatus.COMPLETED)
    node_run(run, "notify", NodeStatus.QUEUED, 2)
    # ... and the next boundary, here the delivery of notify, pauses the run before notify.
    assert engine.execute_node(run.pk, "notify") is None
    run.refresh_from_db()
    assert (run.status, run.nodes_in(NodeStatus.QUEUED)) == ("PAUSED", ["notify"])
    assert "notify" not in started(run)


def test_a_second_delivery_of_the_node_in_flight_does_not_pause_the_run_early():
    run = run_in("PAUSING")  # analyze is running elsewhere, with a fresh heartbeat
    assert engine.execute_node(run.pk, "analyze") is None
    assert status_of(run) == RunStatus.PAUSING


# --- the admin -----------------------------------------------------------------------------------


def test_admin_actions_pause_cancel_and_resume_runs_through_control(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("ops", "ops@example.com", "pw"))
    url = reverse("admin:orchestrator_pipelinerun_changelist")

    def act(action: str, *runs: PipelineRun) -> list[str]:
        response = client.post(
            url, {"action": action, "_selected_action": [r.pk for r in runs]}, follow=True
        )
        assert response.status_code == 200
        return [str(m) for m in response.context["messages"]]

    queued, running, done = run_in("QUEUED"), run_in("RUNNING"), run_in("COMPLETED")
    said = act("pause_runs", queued, done)
    assert status_of(queued) == RunStatus.PAUSED
    assert kinds(queued)[1:] == [RunEvent.PAUSE_REQUESTED, RunEvent.PAUSED]
    assert_from_this_process(queued.events.get(kind=RunEvent.PAUSE_REQUESTED))
    assert (
        f"Pipeline run {queued.pk} has been paused. Resume it with: orchestrator pr resume "
        f"{queued.pk}" in said
    )
    assert (
        f"Cannot pause pipeline run {done.pk}: it is COMPLETED. Pause is allowed only when the "
        "run is Queued or Running." in said
    )
    assert status_of(done) == RunStatus.COMPLETED

    act("cancel_runs", running)
    assert status_of(running) == RunStatus.CANCELLING
    assert running.events.get(kind=RunEvent.CANCEL_REQUESTED).details == {
        "previous": "RUNNING",
        "status": "CANCELLING",
    }

    # Inline, the rest of the run would execute inside the web request: refused, nothing changes.
    said = act("resume_runs", queued)
    assert status_of(queued) == RunStatus.PAUSED
    assert any("no broker is configured" in line for line in said)


# --- with real workers ---------------------------------------------------------------------------


def queue(definition: definitions.Definition) -> PipelineRun:
    run = engine.create_run(definition, payload={})
    engine.dispatch_run(run)
    return run


def node_is(run: PipelineRun, node_id: str, status: str):
    return lambda: NodeRun.objects.filter(run=run, node_id=node_id, status=status).exists()


def run_is(run: PipelineRun, *statuses: str):
    def check() -> PipelineRun | None:
        fresh = PipelineRun.objects.get(pk=run.pk)
        return fresh if fresh.status in statuses else None

    return check


def attempts(run: PipelineRun) -> list[tuple[str, str, int]]:
    return [(n.node_id, n.status, n.attempt) for n in run.node_runs.order_by("position")]


@pytest.mark.workers
def test_pause_during_a_wait_node_keeps_its_result_then_resume_completes_the_rest(
    workers: WorkerPool,
):
    workers.start("w1")
    run = queue(chain(("fetch", 0), ("slow", 1.5), ("report", 0), ("notify", 0)))
    wait_for(node_is(run, "slow", NodeStatus.RUNNING), timeout=30)
    result = control.signal(run.pk, Action.PAUSE)
    assert result.status == RunStatus.PAUSING
    assert result.message == (
        f"Pipeline run {run.pk} is pausing: node 'slow' is running; the run will pause before "
        "'report'."
    )

    paused = wait_for(run_is(run, RunStatus.PAUSED, *TERMINAL), timeout=30)
    assert (paused.status, paused.nodes_in(NodeStatus.QUEUED)) == ("PAUSED", ["report"])
    slow = NodeRun.objects.get(run=run, node_id="slow")
    assert slow.status == NodeStatus.COMPLETED and slow.output["waited_seconds"] >= 1.4
    assert "report" not in started(run)
    effect = paused.events.get(kind=RunEvent.PAUSED)
    assert effect.details == {"resume_from": ["report"]}
    assert effect.pid != os.getpid() and effect.host  # the worker settled it

    resumed = control.signal(run.pk, Action.RESUME)
    assert resumed.message == f"Pipeline run {run.pk} has been resumed: node 'report' is queued."
    done = wait_for(run_is(run, *TERMINAL), timeout=30)
    assert done.status == RunStatus.COMPLETED, done.error
    assert attempts(done) == [
        ("fetch", "COMPLETED", 1),
        ("slow", "COMPLETED", 1),
        ("report", "COMPLETED", 1),
        ("notify", "COMPLETED", 1),
    ]
    assert kinds(done) == [
        RunEvent.QUEUED,
        RunEvent.PAUSE_REQUESTED,
        RunEvent.PAUSED,
        RunEvent.RESUMED,
        RunEvent.COMPLETED,
    ]


@pytest.mark.workers
def test_pause_on_a_queued_run_pauses_it_before_any_node_starts(workers: WorkerPool):
    run = queue(chain(("first", 0), ("second", 0)))  # no worker yet: the node waits in the broker
    result = control.signal(run.pk, Action.PAUSE)
    assert result.status == RunStatus.PAUSED
    worker = workers.start("w1")
    wait_for(
        lambda: "succeeded" in worker.output(), timeout=30
    )  # the message came, and did nothing
    assert status_of(run) == RunStatus.PAUSED
    assert started(run) == []

    control.signal(run.pk, Action.RESUME)
    done = wait_for(run_is(run, *TERMINAL), timeout=30)
    assert done.status == RunStatus.COMPLETED, done.error
    assert attempts(done) == [("first", "COMPLETED", 1), ("second", "COMPLETED", 1)]


@pytest.mark.workers
def test_cancel_during_a_wait_node_ends_the_run_within_a_second(workers: WorkerPool):
    workers.start("w1")
    run = queue(chain(("first", 0), ("long", 30), ("after", 0)))
    wait_for(node_is(run, "long", NodeStatus.RUNNING), timeout=30)
    result = control.signal(run.pk, Action.CANCEL)
    assert result.status == RunStatus.CANCELLING
    assert result.message == (
        f"Pipeline run {run.pk} is cancelling: node 'long' is being stopped; "
        "no further node will start."
    )

    done = wait_for(run_is(run, *TERMINAL), timeout=1.0)
    assert done.status == RunStatus.CANCELLED
    long = NodeRun.objects.get(run=run, node_id="long")
    assert (long.status, long.error) == ("CANCELLED", "Cancelled while running")
    assert not NodeRun.objects.filter(run=run, node_id="after").exists()
    assert kinds(done) == [RunEvent.QUEUED, RunEvent.CANCEL_REQUESTED, RunEvent.CANCELLED]


@pytest.mark.workers
def test_resume_while_pausing_withdraws_the_pause_on_a_worker(workers: WorkerPool):
    workers.start("w1")
    run = queue(chain(("slow", 1.5), ("next", 0)))
    wait_for(node_is(run, "slow", NodeStatus.RUNNING), timeout=30)
    assert control.signal(run.pk, Action.PAUSE).status == RunStatus.PAUSING
    result = control.signal(run.pk, Action.RESUME)
    assert (result.previous, result.status) == ("PAUSING", "RUNNING")

    done = wait_for(run_is(run, RunStatus.PAUSED, *TERMINAL), timeout=30)
    assert done.status == RunStatus.COMPLETED, done.error
    assert attempts(done) == [("slow", "COMPLETED", 1), ("next", "COMPLETED", 1)]
    assert RunEvent.PAUSED not in kinds(done)


@pytest.mark.workers
def test_a_duplicate_delivery_while_pausing_leaves_the_pause_to_the_node_in_flight(
    workers: WorkerPool,
):
    worker = workers.start("w1", concurrency=2)
    definition = chain(("slow", 2.0), ("next", 0))
    run = queue(definition)
    wait_for(node_is(run, "slow", NodeStatus.RUNNING), timeout=30)
    control.signal(run.pk, Action.PAUSE)
    dispatch.get().enqueue_node(run.pk, definition.node("slow"))  # the broker delivers it again
    wait_for(lambda: "succeeded" in worker.output(), timeout=30)
    assert status_of(run) == RunStatus.PAUSING  # slow still runs: it alone settles the pause

    paused = wait_for(run_is(run, RunStatus.PAUSED, *TERMINAL), timeout=30)
    assert (paused.status, paused.nodes_in(NodeStatus.QUEUED)) == ("PAUSED", ["next"])
    control.signal(run.pk, Action.RESUME)
    done = wait_for(run_is(run, *TERMINAL), timeout=30)
    assert done.status == RunStatus.COMPLETED, done.error
    assert attempts(done) == [("slow", "COMPLETED", 1), ("next", "COMPLETED", 1)]
