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
from orchestrator.branches import dispatch_ready
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
        unqueued: list[tuple[str, Exception]] = []
        message = _apply(run, action, previous, target, link, unqueued.append)
        if unqueued:
            names = [node_id for node_id, _ in unqueued]
            pronoun = "it" if len(names) == 1 else "them"
            raise DispatchDeferred(
                f"Pipeline run {run.pk} has been resumed, but {_node_names(names)} could not be "
                f"queued ({unqueued[0][1]}); the recovery pass will queue {pronoun}."
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
    unqueued: Callable[[tuple[str, Exception]], None],
) -> str | None:
    """Compare-and-set the run from ``previous`` to ``target``; the operator's line, or None
    when another host changed the run first. ``unqueued`` hears of each resumed node the broker
    would not take, and why."""
    now = timezone.now()
    fields: dict[str, Any] = {"status": target, **link}
    effect = None
    if target == RunStatus.PAUSED:
        effect = RunEvent.PAUSED
    elif target == RunStatus.CANCELLED:
        # A cancelled run resumes from nowhere.
        fields.update(transitions.ended_fields(run.started_at, now))
        effect = RunEvent.CANCELLED
    with transaction.atomic():
        if not PipelineRun.objects.filter(pk=run.pk, status=previous).update(**fields):
            return None
        for name, value in fields.items():
            setattr(run, name, value)
        request = events.record(
            run.pk, REQUEST_EVENTS[action], previous=str(previous), status=str(target)
        )
        mirrored = request
        if effect is not None:
            paused = effect == RunEvent.PAUSED
            details = {"resume_from": transitions.ready_nodes(run.pk)} if paused else {}
            mirrored = events.record(run.pk, effect, **details)
        if target == RunStatus.CANCELLED:
            transitions.cancel_pending_nodes(run.pk, now)
        handed: list[str] = []
        if target == RunStatus.RUNNING:
            # Resumed, or a pause withdrawn: every ready node is handed out, including those
            # that became ready while the run was pausing.
            # Inline, a node runs right here, and its own errors are its own.
            handed = dispatch_ready(run.pk, on_error=None if dispatch.get().inline else unqueued)
        message = _message(run, action, previous, handed)
        if effect is not None or (target == RunStatus.RUNNING and previous == RunStatus.PAUSED):
            mirror.schedule(run.pk, mirrored.pk)
    return message


def _names(node_ids: list[str]) -> str:
    return ", ".join(f"'{n}'" for n in node_ids)


def _message(run: PipelineRun, action: Action, previous: RunStatus, handed: list[str]) -> str:
    status = RunStatus(run.status)
    head = f"Pipeline run {run.pk}"
    if status == RunStatus.PAUSED:
        return f"{head} has been paused. Resume it with: orchestrator pr resume {run.pk}"
    if status == RunStatus.CANCELLED:
        return f"{head} has been cancelled."
    running = run.nodes_in(NodeStatus.RUNNING)
    if status == RunStatus.PAUSING:
        if not running:
            ready = transitions.ready_nodes(run.pk)
            return f"{head} is pausing: it will pause before {_node_names(ready)} starts."
        if len(running) > 1:
            return (
                f"{head} is pausing: nodes {_names(running)} are running; the run will pause "
                "once they have ended."
            )
        successors = plans.get(run.pk).definition.node(running[0]).successors
        if not successors:
            return (
                f"{head} is pausing: node '{running[0]}' is running and is the last node, "
                "so the run will complete."
            )
        return (
            f"{head} is pausing: node '{running[0]}' is running; the run will pause before "
            f"{_names(list(successors))}."
        )
    if status == RunStatus.CANCELLING:
        if not running:
            return f"{head} is cancelling: no further node will start."
        verb = "is" if len(running) == 1 else "are"
        return (
            f"{head} is cancelling: {_node_names(running)} {verb} being stopped; "
            "no further node will start."
        )
    if previous == RunStatus.PAUSING:
        carrying = running or handed
        verb = "carries" if len(carrying) == 1 else "carry"
        return (
            f"{head} has been resumed: the pause was withdrawn; {_node_names(carrying)} {verb} on."
        )
    if dispatch.get().inline:
        verb = "runs" if len(handed) == 1 else "run"
        return (
            f"{head} has been resumed: {_node_names(handed)} {verb} here, inline "
            "(no broker is configured)."
        )
    verb = "is" if len(handed) == 1 else "are"
    return f"{head} has been resumed: {_node_names(handed)} {verb} queued."


def _node_names(node_ids: list[str]) -> str:
    """``node 'a'`` or ``nodes 'a', 'b'``."""
    return f"node{'s' if len(node_ids) != 1 else ''} {_names(node_ids)}"


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
    transitions.settle(run.pk)  # nothing runs any more: the run is cancelled
