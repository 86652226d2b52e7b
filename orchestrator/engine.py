"""The engine: create runs, and execute one node as a unit of work that claims itself,
records itself and decides what runs next.

The inline runner and the Celery task both call :func:`execute_node`. Each node boundary is a
compare-and-set on the run row, so pause and cancel requests from other hosts race safely with it.
A no-op node costs four queries: claim the run, claim the node, record the node, advance the run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from orchestrator import conf, definitions, dispatch, events, nodes, signals, statements
from orchestrator.errors import NodeCancelled, NodeError, NodeTimeout, OrchestratorError
from orchestrator.heartbeat import Heartbeat, deadline
from orchestrator.models import NodeRun, PipelineDefinition, PipelineRun, RunEvent
from orchestrator.state import Action, NodeStatus, RunStatus, transition

logger = logging.getLogger(__name__)

CANCEL_STATUSES = (RunStatus.CANCELLING, RunStatus.CANCELLED)


@dataclass(frozen=True)
class ClarifaiLink:
    """The Clarifai pipeline version run a local run mirrors its control changes to."""

    user_id: str
    app_id: str
    pipeline_id: str
    pipeline_version_id: str
    pipeline_version_run_id: str

    def as_fields(self) -> dict[str, str]:
        return {
            "clarifai_user_id": self.user_id,
            "clarifai_app_id": self.app_id,
            "clarifai_pipeline_id": self.pipeline_id,
            "clarifai_pipeline_version_id": self.pipeline_version_id,
            "clarifai_pipeline_version_run_id": self.pipeline_version_run_id,
        }


@dataclass(frozen=True)
class RunPlan:
    """What a worker needs to know about a run to execute its nodes; immutable once queued."""

    definition: definitions.Definition
    payload: dict[str, Any]
    source: str
    environment: str
    trace_id: str


class _PlanCache:
    """Parsed run snapshots by run id, so no node re-reads and re-parses the whole definition."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._plans: OrderedDict[int, RunPlan] = OrderedDict()

    def get(self, run_id: int) -> RunPlan:
        plan = self._plans.get(run_id)
        if plan is not None:
            self._plans.move_to_end(run_id)
            return plan
        row = (
            PipelineRun.objects.filter(pk=run_id)
            .values("config", "pipeline_name", "payload", "source", "environment", "trace_id")
            .first()
        )
        if row is None:
            raise OrchestratorError(f"Pipeline run not found: {run_id}")
        plan = RunPlan(
            definition=definitions.parse(row["config"], name=row["pipeline_name"]),
            payload=row["payload"],
            source=row["source"],
            environment=row["environment"],
            trace_id=str(row["trace_id"]),
        )
        self.put(run_id, plan)
        return plan

    def put(self, run_id: int, plan: RunPlan) -> None:
        self._plans[run_id] = plan
        while len(self._plans) > self.size:
            self._plans.popitem(last=False)


plans = _PlanCache()


def create_run(
    definition: definitions.Definition,
    *,
    payload: dict[str, Any],
    source: str = "cli",
    environment: str = "development",
    stored: PipelineDefinition | None = None,
    link: ClarifaiLink | None = None,
) -> PipelineRun:
    """Record a QUEUED run of ``definition``; :func:`dispatch_run` then hands it to the executor."""
    now = timezone.now()
    with transaction.atomic():
        run = PipelineRun.objects.create(
            definition=stored,
            pipeline_name=definition.name,
            config=definition.raw,
            payload=payload,
            source=source,
            environment=environment,
            status=RunStatus.QUEUED,
            current_node=definition.entry.id,
            dispatched_at=now,
            queued_by=events.hostname(),
            **(link.as_fields() if link else {}),
        )
        events.record(run.pk, RunEvent.QUEUED, pipeline=definition.name, source=source)
    plans.put(
        run.pk,
        RunPlan(definition, payload, source, environment, str(run.trace_id)),
    )
    return run


def dispatch_run(run: PipelineRun) -> None:
    """Hand the run's entry node to the executor (a worker, or this process inline)."""
    plan = plans.get(run.pk)
    dispatch.get().enqueue_node(run.pk, plan.definition.entry)


def node_timeout(spec: definitions.NodeSpec) -> float:
    return float(spec.timeout_seconds or conf.get("ORCHESTRATOR_DEFAULT_TIMEOUT"))


# --- claiming -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    node_run_id: int
    attempt: int


def claim_node(run_id: int, spec: definitions.NodeSpec, task_id: str = "") -> Claim | None:
    """Claim ``spec`` of the run for this process, or None when it must not run now.

    The run must be QUEUED or RUNNING with this node as its current one (a PAUSING run settles
    to PAUSED before this node, a CANCELLING one to CANCELLED); the node must be new, queued for
    a retry, or RUNNING with a heartbeat gone stale. A COMPLETED node, or one running elsewhere,
    is left alone, and so is the run.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=conf.get("ORCHESTRATOR_HEARTBEAT_TIMEOUT"))
    for _ in range(5):
        # Only a delivery of the node the run waits on may start it; a duplicate delivery of an
        # earlier node must not move the run back.
        run_claimed, node = statements.claim(
            run_id, spec.id, spec.type, spec.position, task_id, events.identity(), now, stale
        )
        if run_claimed:
            break
        if not _awaits(run_id, spec.id, stale) or settle(run_id, resume_from=spec.id):
            return None
        # Nothing to settle: a pause was withdrawn meanwhile, so the node may start after all.
    else:
        return None
    if node is None:
        logger.info("Node %s of run %s is completed or running elsewhere; skipped", spec.id, run_id)
        return None
    return Claim(node_run_id=node[0], attempt=node[1])


def _awaits(run_id: int, node_id: str, stale: Any) -> bool:
    """Whether the run waits on ``node_id`` with no node of it running: only then may this
    delivery settle a pause or cancel (a duplicate of a node in flight leaves that to the node)."""
    busy = NodeRun.objects.filter(run_id=run_id, status=NodeStatus.RUNNING, heartbeat__gte=stale)
    return (
        not busy.exists() and PipelineRun.objects.filter(pk=run_id, current_node=node_id).exists()
    )


# --- executing ----------------------------------------------------------------------------------


class _Outputs(Mapping[str, Any]):
    """Earlier nodes' outputs, read from the database only when a handler looks at them."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self._data: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._data is None:
            rows = NodeRun.objects.filter(run_id=self.run_id, status=NodeStatus.COMPLETED)
            self._data = dict(rows.values_list("node_id", "output"))
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


def _cancel_check(run_id: int, timeout_at: float) -> Any:
    """A cheap ``cancel_requested()``: reads the run's status at most every poll interval."""
    interval = conf.get("ORCHESTRATOR_CANCEL_POLL_SECONDS")
    # The claim has just seen the run RUNNING, so the first read can wait one interval.
    state = {"next": time.monotonic() + interval, "cancelled": False}

    def check() -> bool:
        now = time.monotonic()
        if now >= timeout_at:
            raise NodeTimeout()
        if not state["cancelled"] and now >= state["next"]:
            state["next"] = now + interval
            status = PipelineRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
            state["cancelled"] = status in CANCEL_STATUSES
        return state["cancelled"]

    return check


def execute_node(run_id: int, node_id: str, task_id: str = "") -> NodeStatus | None:
    """Run one node of one run end to end; returns the node's final status, or None if skipped."""
    plan = plans.get(run_id)
    spec = plan.definition.node(node_id)
    claim = claim_node(run_id, spec, task_id)
    if claim is None:
        return None
    signals.node_started.send(
        sender=PipelineRun,
        run_id=run_id,
        node_id=spec.id,
        node_type=spec.type,
        attempt=claim.attempt,
    )
    status, error = _execute_claimed(run_id, spec, claim, plan)
    if status is not None:
        signals.node_finished.send(
            sender=PipelineRun, run_id=run_id, node_id=spec.id, status=status, error=error
        )
    return status


def _execute_claimed(
    run_id: int, spec: definitions.NodeSpec, claim: Claim, plan: RunPlan
) -> tuple[NodeStatus | None, str]:
    handler_cls = nodes.get(spec.type)
    if handler_cls is None:
        error = f"Node type '{spec.type}' is not installed here"
        return _finish_failed(run_id, spec, claim, error), error
    timeout = node_timeout(spec)
    ctx = nodes.NodeContext(
        run_id=run_id,
        node_id=spec.id,
        config=spec.config,
        payload=plan.payload,
        outputs=_Outputs(run_id),
        source=plan.source,
        environment=plan.environment,
        trace_id=plan.trace_id,
        attempt=claim.attempt,
        logger=logging.getLogger(f"orchestrator.nodes.{spec.type}"),
        cancel_check=_cancel_check(run_id, time.monotonic() + timeout),
    )
    started = time.monotonic()
    try:
        with Heartbeat(claim.node_run_id, claim.attempt), deadline(timeout):
            output = handler_cls().execute(ctx)
            json.dumps(output)  # an output the database cannot store fails the node, not the run
    except NodeCancelled:
        return _finish_cancelled(run_id, spec, claim, started), ""
    except NodeTimeout:
        error = f"Node '{spec.id}' timed out after {timeout:g} s"
        return _finish_failed(run_id, spec, claim, error, started), error
    except Exception as exc:  # any handler failure is recorded on the node, never lost
        # A NodeError is the handler's message for the operator; anything else may be a bug.
        logger.warning(
            "Node %s of run %s failed: %s",
            spec.id,
            run_id,
            exc,
            exc_info=not isinstance(exc, NodeError),
        )
        error = str(exc) or type(exc).__name__
        return _finish_failed(run_id, spec, claim, error, started), error
    return _finish_completed(run_id, spec, claim, output, started), ""


def _node_row(claim: Claim) -> Any:
    return NodeRun.objects.filter(
        pk=claim.node_run_id, status=NodeStatus.RUNNING, attempt=claim.attempt
    )


def _elapsed_ms(started: float | None) -> float | None:
    return None if started is None else round((time.monotonic() - started) * 1000, 2)


def _finish_completed(
    run_id: int, spec: definitions.NodeSpec, claim: Claim, output: Any, started: float
) -> NodeStatus | None:
    # On PostgreSQL recording and advancing is one statement, atomic by itself.
    alone = spec.next is not None and statements.one_statement_completion()
    with contextlib.nullcontext() if alone else transaction.atomic():
        if spec.next is not None:
            # The common case, in as few round trips as the database allows.
            recorded, advanced = statements.complete_and_advance(
                claim.node_run_id,
                claim.attempt,
                output,
                _elapsed_ms(started),
                run_id,
                spec.next,
                timezone.now(),
            )
        else:
            recorded = _node_row(claim).update(
                status=NodeStatus.COMPLETED,
                output=output,
                finished_at=timezone.now(),
                duration_ms=_elapsed_ms(started),
            )
            advanced = False
        if not recorded:  # another worker reclaimed this node meanwhile; its result stands
            return None
        if advanced:
            enqueue_after_commit(run_id, spec.next)
        else:
            _advance(run_id, spec)
    return NodeStatus.COMPLETED


def _advance(run_id: int, spec: definitions.NodeSpec) -> None:
    """Inside the node's transaction: enqueue ``next`` after commit, or complete the run."""
    if spec.next is None:
        _move_run(run_id, Action.COMPLETE)
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


def enqueue_after_commit(run_id: int, node_id: str) -> None:
    """Hand ``node_id`` of the run to the executor once the current transaction commits."""
    nxt = plans.get(run_id).definition.node(node_id)
    transaction.on_commit(lambda: dispatch.get().enqueue_node(run_id, nxt))


def _finish_failed(
    run_id: int, spec: definitions.NodeSpec, claim: Claim, error: str, started: float | None = None
) -> NodeStatus | None:
    with transaction.atomic():
        if claim.attempt <= spec.retries:
            countdown = spec.retry_backoff_seconds * (2 ** (claim.attempt - 1))
            if not _node_row(claim).update(status=NodeStatus.RETRYING, error=error):
                return None
            PipelineRun.objects.filter(pk=run_id).update(
                dispatched_at=timezone.now() + timedelta(seconds=countdown)
            )
            events.record(
                run_id,
                RunEvent.NODE_RETRY,
                spec.id,
                attempt=claim.attempt,
                error=error,
                countdown=countdown,
            )
            transaction.on_commit(lambda: dispatch.get().enqueue_node(run_id, spec, countdown))
            return NodeStatus.RETRYING
        if not _node_row(claim).update(
            status=NodeStatus.FAILED,
            error=error,
            finished_at=timezone.now(),
            duration_ms=_elapsed_ms(started),
        ):
            return None
        events.record(
            run_id,
            RunEvent.NODE_FAILED,
            spec.id,
            attempt=claim.attempt,
            error=error,
            required=spec.required,
        )
        if spec.required:
            _move_run(run_id, Action.FAIL, error=f"Node '{spec.id}' failed: {error}")
        else:
            _advance(run_id, spec)
    return NodeStatus.FAILED


def _finish_cancelled(
    run_id: int, spec: definitions.NodeSpec, claim: Claim, started: float
) -> NodeStatus | None:
    with transaction.atomic():
        if not _node_row(claim).update(
            status=NodeStatus.CANCELLED,
            finished_at=timezone.now(),
            duration_ms=_elapsed_ms(started),
            error="Cancelled while running",
        ):
            return None
        settle(run_id)
    return NodeStatus.CANCELLED


# --- run-level transitions ------------------------------------------------------------------------


def abandon(run_id: int, error: str) -> RunStatus | None:
    """Fail a run that could not be handed to any executor."""
    return _move_run(run_id, Action.FAIL, error=error)


def settle(run_id: int, resume_from: str = "") -> RunStatus | None:
    """At a node boundary: PAUSING becomes PAUSED (resuming at ``resume_from``), CANCELLING
    becomes CANCELLED. Any other status is left as it is."""
    return _move_run(run_id, Action.SETTLE, resume_from=resume_from)


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


def _move_run(
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
        with transaction.atomic():
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
