"""Pause, cancel and resume: operator signals as compare-and-set transitions on the run row.

A signal is decided by the state table in :mod:`orchestrator.state`. Where its effect is
immediate (a queued or paused run) it happens here; where a node is in flight, the run goes to
PAUSING or CANCELLING and the worker settles it at the node boundary (or, for a cancel, inside a
node that polls ``cancel_requested()``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from orchestrator import dispatch, events, mirror, runref, transitions
from orchestrator.errors import DispatchDeferred, RunNotFound, TransitionRefused, UsageError
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.plans import plans
from orchestrator.state import ALLOWED_WHEN, Action, NodeStatus, Outcome, RunStatus, transition

VERBS = {Action.PAUSE: "pause", Action.CANCEL: "cancel", Action.RESUME: "resume"}
REQUEST_EVENTS = {
    Action.PAUSE: RunEvent.PAUSE_REQUESTED,
    Action.CANCEL: RunEvent.CANCEL_REQUESTED,
    Action.RESUME: RunEvent.RESUMED,
}
LINK_FIELDS = {
    "user_id": "clarifai_user_id",
    "app_id": "clarifai_app_id",
    "pipeline_id": "clarifai_pipeline_id",
    "pipeline_version_id": "clarifai_pipeline_version_id",
}


@dataclass(frozen=True)
class ControlResult:
    """What a signal did: the statuses before and after, and one line for the operator."""

    run: PipelineRun
    action: Action
    previous: RunStatus
    status: RunStatus
    noop: bool
    message: str

    @property
    def settled(self) -> bool:
        """Whether the change has fully taken effect (no worker still has to act on it)."""
        return self.status not in (RunStatus.PAUSING, RunStatus.CANCELLING)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run.pk,
            "action": str(self.action),
            "previous_status": str(self.previous),
            "status": str(self.status),
            "noop": self.noop,
            "message": self.message,
        }


def find_run(ref: str | int, scope: str | None = None) -> PipelineRun | None:
    """The run ``ref`` names: a local run id, or the Clarifai run id of a linked run.

    ``scope`` 'local' or 'remote' keeps one reading. Raises UsageError for a malformed id, or
    for an id that is both one run's local id and another run's Clarifai id.
    """
    if isinstance(ref, int):
        return PipelineRun.objects.filter(pk=ref).first()
    parsed = runref.parse(ref, scope)
    local = linked = None
    if parsed.local_id is not None:
        local = PipelineRun.objects.filter(pk=parsed.local_id).first()
    if parsed.clarifai_id is not None:
        linked = (
            PipelineRun.objects.filter(clarifai_pipeline_version_run_id=parsed.clarifai_id)
            .exclude(clarifai_pipeline_version_run_id="")
            .order_by("-id")
            .first()
        )
    if local is not None and linked is not None and local.pk != linked.pk:
        raise UsageError(
            f"Run id {parsed.text} is ambiguous: it is local pipeline run {local.pk}, and the "
            f"Clarifai pipeline version run linked to pipeline run {linked.pk}. "
            "Pass --local or --remote to choose."
        )
    return local or linked


def get_run(ref: str | int, scope: str | None = None) -> PipelineRun:
    run = find_run(ref, scope)
    if run is None:
        raise RunNotFound(f"Pipeline run not found: {ref}")
    return run


def link_fields(**ids: str | None) -> dict[str, str]:
    """The run fields for the Clarifai ids given on a control command (empty ones left out)."""
    return {LINK_FIELDS[key]: value for key, value in ids.items() if value and key in LINK_FIELDS}


def signal(ref: str | int, action: Action, link: dict[str, str] | None = None) -> ControlResult:
    """Apply ``action`` to the run ``ref``; raises TransitionRefused when the table refuses it.

    ``link`` (from :func:`link_fields`) is stored on the run in the same compare-and-set as the
    change, so a refused signal writes nothing. A resume that must hand a node to the broker
    checks the broker first (BrokerUnavailable, nothing changed); if the broker fails it after
    the resume was committed, DispatchDeferred says so and the recovery pass queues the node.
    """
    link = link or {}
    run = get_run(ref)
    if action == Action.RESUME and run.status == RunStatus.PAUSED:
        dispatch.get().check()
    for _ in range(10):
        previous = RunStatus(run.status)
        target = transition(previous, action)
        if target is Outcome.REFUSED:
            raise TransitionRefused(
                f"Cannot {VERBS[action]} pipeline run {run.pk}: it is {previous}. "
                f"{ALLOWED_WHEN[action]}"
            )
        if target is Outcome.NOOP:
            if _record_noop(run, action, previous, link):
                return ControlResult(
                    run, action, previous, previous, True, _noop_message(run, previous)
                )
            run.refresh_from_db()
            continue
        unqueued: list[Exception] = []
        message = _apply(run, action, previous, target, link, unqueued.append)
        if unqueued:
            raise DispatchDeferred(
                f"Pipeline run {run.pk} has been resumed, but node '{run.current_node}' could "
                f"not be queued ({unqueued[0]}); the recovery pass will queue it."
            )
        if message is not None:
            return ControlResult(run, action, previous, target, False, message)
        run.refresh_from_db()  # another host or a worker changed it first: decide again
    raise TransitionRefused(f"Pipeline run {run.pk} keeps changing status; try again")


def _record_noop(run: PipelineRun, action: Action, status: RunStatus, link: dict[str, str]) -> bool:
    """Record a repeated request (still a request, for the trail) if the run is still ``status``;
    the row is written as by a transition, so the event takes its place in the trail in order."""
    with transaction.atomic():
        if not PipelineRun.objects.filter(pk=run.pk, status=status).update(status=status, **link):
            return False
        for name, value in link.items():
            setattr(run, name, value)
        events.record(
            run.pk, REQUEST_EVENTS[action], previous=str(status), status=str(status), noop=True
        )
    return True


def _apply(
    run: PipelineRun,
    action: Action,
    previous: RunStatus,
    target: RunStatus,
    link: dict[str, str],
    unqueued: Callable[[Exception], None],
) -> str | None:
    """Compare-and-set the run from ``previous`` to ``target``; the operator's line, or None
    when another host changed the run first. ``unqueued`` hears of a resumed node the broker
    would not take."""
    now = timezone.now()
    fields: dict[str, Any] = {"status": target, **link}
    effect = None
    resumed = target == RunStatus.RUNNING and previous == RunStatus.PAUSED
    resume_node = run.resume_from
    if target == RunStatus.PAUSED:
        fields.update(resume_from=run.current_node, current_node="")
        effect = RunEvent.PAUSED
    elif target == RunStatus.CANCELLED:
        # A cancelled run resumes from nowhere.
        fields.update(transitions.ended_fields(run.started_at, now), resume_from="")
        effect = RunEvent.CANCELLED
    elif resumed:
        fields.update(current_node=resume_node, resume_from="", dispatched_at=now)
    # A field this change reads must not have moved since the run was read either: a run paused,
    # resumed and paused again by others meanwhile has the same status but a new resume_from.
    unchanged = {"current_node": run.current_node} if target == RunStatus.PAUSED else {}
    if resumed:
        unchanged["resume_from"] = resume_node
    with transaction.atomic():
        if not PipelineRun.objects.filter(pk=run.pk, status=previous, **unchanged).update(**fields):
            return None
        for name, value in fields.items():
            setattr(run, name, value)
        request = events.record(
            run.pk, REQUEST_EVENTS[action], previous=str(previous), status=str(target)
        )
        mirrored = request
        if effect is not None:
            details = {"resume_from": run.resume_from} if effect == RunEvent.PAUSED else {}
            mirrored = events.record(run.pk, effect, **details)
        if target == RunStatus.CANCELLED:
            transitions.cancel_pending_nodes(run.pk, now)
        message = _message(run, action, previous)
        if effect is not None or resumed:
            mirror.schedule(run.pk, mirrored.pk)
        if resumed:
            # Inline, the node runs right here, and its own errors are its own.
            inline = dispatch.get().inline
            transitions.enqueue_after_commit(
                run.pk, resume_node, on_error=None if inline else unqueued
            )
    return message


def _next_of(run: PipelineRun, node_id: str) -> str | None:
    return plans.get(run.pk).definition.node(node_id).next


def _running_node(run: PipelineRun) -> str | None:
    return (
        NodeRun.objects.filter(run_id=run.pk, status=NodeStatus.RUNNING)
        .values_list("node_id", flat=True)
        .first()
    )


def _message(run: PipelineRun, action: Action, previous: RunStatus) -> str:
    status = RunStatus(run.status)
    head = f"Pipeline run {run.pk}"
    if status == RunStatus.PAUSED:
        return f"{head} has been paused. Resume it with: orchestrator pr resume {run.pk}"
    if status == RunStatus.CANCELLED:
        return f"{head} has been cancelled."
    if status == RunStatus.PAUSING:
        running = _running_node(run)
        if running is None:
            return f"{head} is pausing: it will pause before node '{run.current_node}' starts."
        nxt = _next_of(run, running)
        if nxt is None:
            return (
                f"{head} is pausing: node '{running}' is running and is the last node, "
                "so the run will complete."
            )
        return f"{head} is pausing: node '{running}' is running; the run will pause before '{nxt}'."
    if status == RunStatus.CANCELLING:
        running = _running_node(run)
        if running is None:
            return f"{head} is cancelling: no further node will start."
        return (
            f"{head} is cancelling: node '{running}' is being stopped; no further node will start."
        )
    if previous == RunStatus.PAUSING:
        running = _running_node(run) or run.current_node
        return f"{head} has been resumed: the pause was withdrawn; node '{running}' carries on."
    if dispatch.get().inline:
        return (
            f"{head} has been resumed: node '{run.current_node}' runs here, inline "
            "(no broker is configured)."
        )
    return f"{head} has been resumed: node '{run.current_node}' is queued."


def _noop_message(run: PipelineRun, status: RunStatus) -> str:
    return f"Pipeline run {run.pk} is already {status.value.lower()}."


def interrupt(ref: str | int) -> None:
    """The process executing a run inline is stopping (Ctrl-C): cancel the run and its node."""
    run = get_run(ref)
    try:
        signal(run.pk, Action.CANCEL)
    except TransitionRefused:
        return
    NodeRun.objects.filter(run_id=run.pk, status=NodeStatus.RUNNING).update(
        status=NodeStatus.CANCELLED, finished_at=timezone.now(), error="Interrupted"
    )
    transitions.settle(run.pk)
