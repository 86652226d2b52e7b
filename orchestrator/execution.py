"""Executing one claimed node: run its handler with heartbeats, a deadline and cooperative
cancel, then record the outcome and advance the run, all as compare-and-set writes.

The inline runner and the Celery task both call :func:`execute_node`. Each database step is
retried while the database is away (:mod:`orchestrator.outages`), so an outage is never recorded
as the node's failure and a computed result waits in memory for the database to come back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

from django.db import Error, transaction
from django.utils import timezone

from orchestrator import (
    conf,
    definitions,
    dispatch,
    events,
    nodes,
    outages,
    reclaim,
    signals,
    statements,
)
from orchestrator.claims import Claim, Deferred, claim_node
from orchestrator.errors import NodeCancelled, NodeError, NodeTimeout
from orchestrator.heartbeat import Heartbeat, deadline
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.plans import RunPlan, node_timeout, plans
from orchestrator.state import Action, NodeStatus, RunStatus
from orchestrator.transitions import advance, enqueue_after_commit, move_run, settle

logger = logging.getLogger(__name__)

CANCEL_STATUSES = (RunStatus.CANCELLING, RunStatus.CANCELLED)


class _Outputs(Mapping[str, Any]):
    """Earlier nodes' outputs, read from the database only when a handler looks at them."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self._data: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._data is None:
            self._data = outages.retrying(self._read, what="reading earlier outputs")
        return self._data

    def _read(self) -> dict[str, Any]:
        rows = NodeRun.objects.filter(run_id=self.run_id, status=NodeStatus.COMPLETED)
        return dict(rows.values_list("node_id", "output"))

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
            try:
                status = (
                    PipelineRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
                )
            except Error as exc:
                # The database is away: the node carries on; the next poll asks again.
                if not outages.transient(exc):
                    raise
                outages.drop_connection()
                return False
            state["cancelled"] = status in CANCEL_STATUSES
        return state["cancelled"]

    return check


def execute_node(run_id: int, node_id: str, task_id: str = "") -> NodeStatus | None:
    """Run one node of one run end to end; returns the node's final status, or None if skipped."""
    plan = outages.retrying(plans.get, run_id, what="reading the run")
    spec = plan.definition.node(node_id)
    claim = outages.retrying(claim_node, run_id, spec, task_id, what="claiming the node")
    if isinstance(claim, Deferred):
        # Held by a process that may be running it: this message must not be the one dropped.
        dispatch.get().enqueue_node(run_id, spec, claim.countdown)
        return None
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


def _finish(step: Any, *args: Any) -> NodeStatus | None:
    """Record the node's outcome, waiting for the database if it is away."""
    return outages.retrying(step, *args, what="recording the node")


def _execute_claimed(
    run_id: int, spec: definitions.NodeSpec, claim: Claim, plan: RunPlan
) -> tuple[NodeStatus | None, str]:
    if claim.losses >= int(conf.get("ORCHESTRATOR_MAX_WORKER_LOSSES")):
        error = reclaim.losses_message(claim.losses)
        return _finish(_finish_failed, run_id, spec, claim, error), error
    handler_cls = nodes.get(spec.type)
    if handler_cls is None:
        error = f"Node type '{spec.type}' is not installed here"
        return _finish(_finish_failed, run_id, spec, claim, error), error
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
        return _finish(_finish_cancelled, run_id, spec, claim, started), ""
    except NodeTimeout:
        error = f"Node '{spec.id}' timed out after {timeout:g} s"
        return _finish(_finish_failed, run_id, spec, claim, error, started), error
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
        return _finish(_finish_failed, run_id, spec, claim, error, started), error
    return _finish(_finish_completed, run_id, spec, claim, output, started), ""


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
            advance(run_id, spec)
    return NodeStatus.COMPLETED


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
            move_run(run_id, Action.FAIL, error=f"Node '{spec.id}' failed: {error}")
        else:
            advance(run_id, spec)
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
