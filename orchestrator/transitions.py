"""Run-level transitions applied by the engine: advancing to the next node, settling a pause or
cancel at a node boundary, completing and failing. Each is a compare-and-set through the state
table in :mod:`orchestrator.state`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone

from orchestrator import definitions, dispatch, events
from orchestrator.errors import OrchestratorError
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.plans import plans
from orchestrator.state import Action, NodeStatus, RunStatus, transition


def advance(run_id: int, spec: definitions.NodeSpec) -> None:
    """Inside the node's transaction: enqueue ``next`` after commit, or complete the run."""
    if spec.next is None:
        move_run(run_id, Action.COMPLETE)
        return
    for _ in range(5):
        if PipelineRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
            current_node=spec.next, dispatched_at=timezone.now()
        ):
            break
        if (
            settle(run_id, resume_from=spec.next)
            or not PipelineRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).exists()
        ):
            return
        # A pause was withdrawn between the two statements: advance after all.
    else:
        return
    enqueue_after_commit(run_id, spec.next)


def enqueue_after_commit(
    run_id: int, node_id: str, on_error: Callable[[Exception], None] | None = None
) -> None:
    """Hand ``node_id`` of the run to the executor once the current transaction commits;
    ``on_error`` is told, instead of the caller's caller, if the executor cannot take it."""
    nxt = plans.get(run_id).definition.node(node_id)
    if on_error is None:
        transaction.on_commit(lambda: dispatch.get().enqueue_node(run_id, nxt))
        return

    def publish() -> None:
        try:
            dispatch.get().enqueue_node(run_id, nxt)
        except Exception as exc:  # kombu raises transport-specific errors
            on_error(exc)

    transaction.on_commit(publish)


def abandon(run_id: int, error: str) -> RunStatus | None:
    """Fail a run that could not be handed to any executor."""
    return move_run(run_id, Action.FAIL, error=error)


def settle(run_id: int, resume_from: str = "") -> RunStatus | None:
    """At a node boundary: PAUSING becomes PAUSED (resuming at ``resume_from``), CANCELLING
    becomes CANCELLED. Any other status is left as it is."""
    return move_run(run_id, Action.SETTLE, resume_from=resume_from)


def ended_fields(started_at: Any, now: Any) -> dict[str, Any]:
    """The fields a run gets when it reaches a terminal status."""
    started = started_at or now
    return {
        "finished_at": now,
        "current_node": "",
        "duration_ms": round((now - started).total_seconds() * 1000, 2),
    }


def cancel_pending_nodes(run_id: int, now: Any) -> None:
    """Nodes of a cancelled run that were queued or waiting for a retry will not run."""
    NodeRun.objects.filter(
        run_id=run_id, status__in=[NodeStatus.QUEUED, NodeStatus.RETRYING]
    ).update(status=NodeStatus.CANCELLED, finished_at=now)


EFFECT_EVENTS = {
    RunStatus.PAUSED: RunEvent.PAUSED,
    RunStatus.COMPLETED: RunEvent.COMPLETED,
    RunStatus.FAILED: RunEvent.FAILED,
    RunStatus.CANCELLED: RunEvent.CANCELLED,
}


def move_run(
    run_id: int, action: Action, *, resume_from: str = "", error: str = ""
) -> RunStatus | None:
    """Apply an engine step to the run through the state table, as a compare-and-set."""
    for _ in range(5):
        row = PipelineRun.objects.filter(pk=run_id).values("status", "started_at").first()
        if row is None:
            return None
        target = transition(row["status"], action)
        if not isinstance(target, RunStatus):
            return None
        now = timezone.now()
        fields: dict[str, Any] = {"status": target, "current_node": ""}
        details: dict[str, Any] = {}
        if target == RunStatus.PAUSED:
            fields["resume_from"] = details["resume_from"] = resume_from
        else:
            fields.update(ended_fields(row["started_at"], now))
        if error:
            fields["error"] = details["error"] = error
        # The status and its event land together, so the trail never shows them out of order.
        # Inside a node's transaction no savepoint is needed: a failure here fails it all.
        with transaction.atomic(savepoint=False):
            if PipelineRun.objects.filter(pk=run_id, status=row["status"]).update(**fields):
                if target == RunStatus.CANCELLED:
                    cancel_pending_nodes(run_id, now)
                event = events.record(run_id, EFFECT_EVENTS[target], **details)
                _after_effect(run_id, target, event.pk)
                return target
    raise OrchestratorError(f"Run {run_id} kept changing status; could not {action} it")


def _after_effect(run_id: int, status: RunStatus, event_id: int) -> None:
    """Once a pause or cancel has taken effect: mirror it to a linked Clarifai run."""
    if status in (RunStatus.PAUSED, RunStatus.CANCELLED):
        from orchestrator import mirror

        mirror.schedule(run_id, event_id)
