"""Run-level transitions applied by the engine: settling a run at a node boundary (complete,
pause, cancel, fail, start its on_failure path), failing it, abandoning it. Each goes through
the state table in :mod:`orchestrator.state`, on the run row locked for the decision.

With branches, several nodes of a run end on several workers at once, and a step such as
"pause once no node runs" depends on all of them. Each step therefore locks the run row first
(``SELECT ... FOR UPDATE``; SQLite serialises writers anyway), then looks at the nodes with a
fresh read: whichever boundary comes last sees every other one, and the step happens once.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from django.db import transaction
from django.utils import timezone

from orchestrator import dispatch, events
from orchestrator.errors import OrchestratorError
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.plans import plans
from orchestrator.state import (
    OPEN_NODES,
    PENDING_NODES,
    SETTLE_STEPS,
    Action,
    Idle,
    NodeStatus,
    RunStatus,
    transition,
)


def enqueue_after_commit(
    run_id: int,
    node_id: str,
    countdown: float = 0,
    on_error: Callable[[Exception], None] | None = None,
) -> None:
    """Hand ``node_id`` of the run to the executor once the current transaction commits;
    ``on_error`` is told, instead of the caller's caller, if the executor cannot take it."""
    nxt = plans.get(run_id).definition.node(node_id)
    if on_error is None:
        transaction.on_commit(lambda: dispatch.get().enqueue_node(run_id, nxt, countdown))
        return

    def publish() -> None:
        try:
            dispatch.get().enqueue_node(run_id, nxt, countdown)
        except Exception as exc:  # kombu raises transport-specific errors
            on_error(exc)

    transaction.on_commit(publish)


def abandon(run_id: int, error: str) -> RunStatus | None:
    """Fail a run that could not be handed to any executor."""
    return move_run(run_id, Action.FAIL, error=error)


def ended_fields(started_at: Any, now: Any) -> dict[str, Any]:
    """The fields a run gets when it reaches a terminal status."""
    started = started_at or now
    return {
        "finished_at": now,
        "duration_ms": round((now - started).total_seconds() * 1000, 2),
    }


def cancel_pending_nodes(run_id: int, now: Any) -> None:
    """Nodes of an ended run that were waiting, ready or waiting for a retry will not run."""
    NodeRun.objects.filter(run_id=run_id, status__in=PENDING_NODES).update(
        status=NodeStatus.CANCELLED, finished_at=now
    )


def record_ready(run_id: int, spec: Any, now: Any) -> NodeRun:
    """Record a node with no predecessor to wait for (the entry, the on_failure node) as ready
    and handed out now."""
    return NodeRun.objects.create(
        run_id=run_id,
        node_id=spec.id,
        node_type=spec.type,
        position=spec.position,
        status=NodeStatus.QUEUED,
        dispatched_at=now,
    )


def ready_nodes(run_id: int) -> list[str]:
    """The run's nodes that are ready to start (queued, or waiting for a retry)."""
    rows = NodeRun.objects.filter(
        run_id=run_id, status__in=[NodeStatus.QUEUED, NodeStatus.RETRYING]
    ).order_by("position", "id")
    return list(rows.values_list("node_id", flat=True))


EFFECT_EVENTS = {
    RunStatus.PAUSED: RunEvent.PAUSED,
    RunStatus.COMPLETED: RunEvent.COMPLETED,
    RunStatus.FAILED: RunEvent.FAILED,
    RunStatus.CANCELLED: RunEvent.CANCELLED,
}


def lock_run(run_id: int) -> None:
    """Inside a transaction: take the run row's lock before any node row's, as every step that
    writes both does, so that two of them never wait on each other."""
    PipelineRun.objects.select_for_update().filter(pk=run_id).exists()


def _locked(run_id: int) -> dict[str, Any] | None:
    """The run's status and start, with its row locked until the transaction ends."""
    return (
        PipelineRun.objects.select_for_update()
        .filter(pk=run_id)
        .values("status", "started_at")
        .first()
    )


def _busy(run_id: int, idle: Idle, failure_path: Collection[str]) -> bool:
    """Whether a node of the run still holds back a step that needs ``idle``."""
    nodes = NodeRun.objects.filter(run_id=run_id)
    if idle == Idle.OPEN:
        return nodes.filter(status__in=OPEN_NODES).exists()
    if nodes.filter(status=NodeStatus.RUNNING).exists():
        return True
    return idle == Idle.FAILURE_PATH and (
        nodes.filter(status__in=OPEN_NODES, node_id__in=list(failure_path)).exists()
    )


def _apply(
    run_id: int,
    row: dict[str, Any],
    action: Action,
    *,
    error: str = "",
    idle: Idle | None = None,
    failure_path: Collection[str] = (),
) -> RunStatus | None:
    """Inside a transaction holding the run row: apply ``action`` if the table allows it from
    the run's status and, when ``idle`` is given, no node holds it back."""
    target = transition(row["status"], action)
    if not isinstance(target, RunStatus):
        return None
    if idle is not None and _busy(run_id, idle, failure_path):
        return None
    now = timezone.now()
    fields: dict[str, Any] = {"status": target}
    details: dict[str, Any] = {}
    if target == RunStatus.PAUSED:
        details["resume_from"] = ready_nodes(run_id)
    elif target in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED):
        fields.update(ended_fields(row["started_at"], now))
    if error:
        fields["error"] = details["error"] = error
    if not PipelineRun.objects.filter(pk=run_id, status=row["status"]).update(**fields):
        raise OrchestratorError(f"Run {run_id} changed status while locked; could not {action} it")
    row["status"] = target
    if target in (RunStatus.CANCELLED, RunStatus.FAILED):
        cancel_pending_nodes(run_id, now)
    if target in EFFECT_EVENTS:
        # The status and its event land together, so the trail never shows them out of order.
        event = events.record(run_id, EFFECT_EVENTS[target], **details)
        _after_effect(run_id, target, event.pk)
    return target


def move_run(
    run_id: int, action: Action, *, error: str = "", idle: Idle | None = None
) -> RunStatus | None:
    """Apply an engine step to the run through the state table, as a compare-and-set on its
    locked row; None when the table or the run's nodes do not allow it now."""
    with transaction.atomic():
        row = _locked(run_id)
        if row is None:
            return None
        return _apply(run_id, row, action, error=error, idle=idle)


def settle(run_id: int) -> RunStatus | None:
    """At a node boundary: take the run's next step if nothing holds it back any more. A
    running run whose nodes have all ended completes; a pausing one pauses once no node runs
    (or completes); a cancelling one is cancelled once no node runs; a failing one starts its
    on_failure node once no node runs, then fails once that path has ended. Returns the status
    the run moved to, or None."""
    with transaction.atomic():
        row = _locked(run_id)
        if row is None or RunStatus(row["status"]) not in SETTLE_STEPS:
            return None
        status = RunStatus(row["status"])
        path: Collection[str] = ()
        if status == RunStatus.FAILING:
            definition = plans.get(run_id).definition
            path = definition.graph.failure_path
            if _start_on_failure(run_id, definition):
                return status
        for action, idle in SETTLE_STEPS[status]:
            moved = _apply(run_id, row, action, idle=idle, failure_path=path)
            if moved is not None:
                return moved
    return None


def _start_on_failure(run_id: int, definition: Any) -> bool:
    """Under the run's lock: ready the on_failure node once nothing runs, if it never was."""
    spec = definition.on_failure
    if spec is None or NodeRun.objects.filter(run_id=run_id, node_id=spec.id).exists():
        return False
    if _busy(run_id, Idle.RUNNING, ()):
        return False
    now = timezone.now()
    cancel_pending_nodes(run_id, now)  # nodes of the run proper that will never start now
    record_ready(run_id, spec, now)
    events.record(run_id, RunEvent.ON_FAILURE, spec.id)
    enqueue_after_commit(run_id, spec.id)
    return True


def fail(run_id: int, error: str) -> RunStatus | None:
    """A required node failed: the run is FAILING (nodes in flight are asked to stop), then
    settles (its on_failure path runs, or it is FAILED at once when nothing else runs)."""
    with transaction.atomic():
        moved = move_run(run_id, Action.FAIL, error=error)
        settled = settle(run_id)
    return settled or moved


def _after_effect(run_id: int, status: RunStatus, event_id: int) -> None:
    """Once a pause or cancel has taken effect: mirror it to a linked Clarifai run."""
    if status in (RunStatus.PAUSED, RunStatus.CANCELLED):
        from orchestrator import mirror

        mirror.schedule(run_id, event_id)
