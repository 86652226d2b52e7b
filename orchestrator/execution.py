"""Executing one claimed node: run its handler with heartbeats, a deadline and cooperative
cancel, then record the outcome and advance the run, all as compare-and-set writes.

The inline runner and the Celery task both call :func:`execute_node`. A node whose predecessors
were all skipped, or whose ``when`` does not hold, is recorded SKIPPED (with the reason) instead
of running, and its successors learn that it was skipped. Each database step is retried while
the database is away (:mod:`orchestrator.outages`), so an outage is never recorded as the node's
failure and a computed result waits in memory for the database to come back.
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
    conditions,
    conf,
    definitions,
    dispatch,
    events,
    graph,
    nodes,
    outages,
    reclaim,
    signals,
    statements,
)
from orchestrator.branches import advance, failure_of, successors_of
from orchestrator.claims import Claim, Deferred, claim_node, start_action
from orchestrator.errors import NodeCancelled, NodeError, NodeTimeout
from orchestrator.heartbeat import Heartbeat, deadline
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.plans import RunPlan, node_timeout, plans
from orchestrator.state import NodeStatus, RunStatus
from orchestrator.transitions import fail, lock_run, settle

logger = logging.getLogger(__name__)

#: Run statuses at which a node stops when it polls ``cancel_requested()``: a cancel, and for
#: the run proper (not its on_failure path) a failure elsewhere in the run.
CANCEL_STATUSES = (RunStatus.CANCELLING, RunStatus.CANCELLED)
FAILURE_STATUSES = (RunStatus.FAILING, RunStatus.FAILED)


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


class _CancelCheck:
    """A cheap ``cancel_requested()``: reads the run's status at most every poll interval."""

    def __init__(self, run_id: int, timeout_at: float, stop_on: tuple[RunStatus, ...]) -> None:
        self.run_id = run_id
        self.timeout_at = timeout_at
        self.stop_on = stop_on
        self.interval = conf.get("ORCHESTRATOR_CANCEL_POLL_SECONDS")
        # The claim has just seen the run let this node start, so the first read can wait.
        self.next_read = time.monotonic() + self.interval
        self.seen: str | None = None

    def __call__(self) -> bool:
        now = time.monotonic()
        if now >= self.timeout_at:
            raise NodeTimeout()
        if self.seen is None and now >= self.next_read:
            self.next_read = now + self.interval
            try:
                status = (
                    PipelineRun.objects.filter(pk=self.run_id)
                    .values_list("status", flat=True)
                    .first()
                )
            except Error as exc:
                # The database is away: the node carries on; the next poll asks again.
                if not outages.transient(exc):
                    raise
                outages.drop_connection()
                return False
            if status in self.stop_on:
                self.seen = status
        return self.seen is not None

    @property
    def why(self) -> str:
        if self.seen in FAILURE_STATUSES:
            return "Stopped: another node of the run failed"
        return "Cancelled while running"


def execute_node(run_id: int, node_id: str, task_id: str = "") -> NodeStatus | None:
    """Run one node of one run end to end; returns the node's final status, or None if another
    delivery or another status of the run had it not run here."""
    plan = outages.retrying(plans.get, run_id, what="reading the run")
    spec = plan.definition.node(node_id)
    claim = outages.retrying(claim_node, run_id, spec, task_id, what="claiming the node")
    if isinstance(claim, Deferred):
        # Held by a process that may be running it: this message must not be the one dropped.
        dispatch.get().enqueue_node(run_id, spec, claim.countdown)
        return None
    if claim is None:
        return None
    reason = outages.retrying(
        _skip_reason, run_id, spec, claim, plan, what="checking whether the node runs"
    )
    if reason is not None:
        status = _finish(_end, run_id, spec, claim, NodeStatus.SKIPPED, reason=reason)
        if status is not None:
            signals.node_finished.send(
                sender=PipelineRun, run_id=run_id, node_id=spec.id, status=status, error=reason
            )
        return status
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


def _finish(step: Any, *args: Any, **kwargs: Any) -> NodeStatus | None:
    """Record the node's outcome, waiting for the database if it is away."""
    return outages.retrying(step, *args, what="recording the node", **kwargs)


def _skip_reason(
    run_id: int, spec: definitions.NodeSpec, claim: Claim, plan: RunPlan
) -> str | None:
    """Why the claimed node must not run: every predecessor was skipped, or its ``when``."""
    reason = graph.skip_reason(len(spec.predecessors), claim.reached)
    if reason is not None or not spec.when:
        return reason
    data: dict[str, Any] = {}
    if any(c.root not in (conditions.PAYLOAD, conditions.FAILURE) for c in spec.when):
        data.update(_Outputs(run_id))
    data[conditions.PAYLOAD] = plan.payload
    if spec.on_failure_path:
        data[conditions.FAILURE] = outages.retrying(
            failure_of, run_id, what="reading the run's failure"
        )
    return conditions.evaluate(spec.when, data)


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
    stop_on = CANCEL_STATUSES if spec.on_failure_path else CANCEL_STATUSES + FAILURE_STATUSES
    check = _CancelCheck(run_id, time.monotonic() + timeout, stop_on)
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
        cancel_check=check,
        failure=(
            outages.retrying(failure_of, run_id, what="reading the run's failure")
            if spec.on_failure_path
            else None
        ),
    )
    started = time.monotonic()
    try:
        with Heartbeat(claim.node_run_id, claim.attempt), deadline(timeout):
            output = handler_cls().execute(ctx)
            json.dumps(output)  # an output the database cannot store fails the node, not the run
    except NodeCancelled:
        return _finish(_finish_cancelled, run_id, claim, started, check.why), ""
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
    return _finish(
        _end, run_id, spec, claim, NodeStatus.COMPLETED, output=output, started=started
    ), ""


def _node_row(claim: Claim) -> Any:
    return NodeRun.objects.filter(
        pk=claim.node_run_id, status=NodeStatus.RUNNING, attempt=claim.attempt
    )


def _elapsed_ms(started: float | None) -> float | None:
    return None if started is None else round((time.monotonic() - started) * 1000, 2)


def _end(
    run_id: int,
    spec: definitions.NodeSpec,
    claim: Claim,
    status: NodeStatus,
    *,
    output: Any = None,
    error: str = "",
    reason: str = "",
    started: float | None = None,
) -> NodeStatus | None:
    """Record the node as ended (completed, skipped, or failed but optional) together with its
    successors' arrivals, then move the run on. On PostgreSQL the recording is one statement."""
    alone = statements.one_statement_end()
    with contextlib.nullcontext() if alone else transaction.atomic():
        ended = statements.end_node(
            claim.node_run_id,
            claim.attempt,
            status,
            run_id=run_id,
            start=start_action(spec),
            successors=successors_of(run_id, spec),
            now=timezone.now(),
            output=output,
            error=error,
            reason=reason,
            duration_ms=_elapsed_ms(started),
        )
        if not ended.recorded:  # another worker reclaimed this node meanwhile; its result stands
            return None
        advance(run_id, ended)
    return status


def _finish_failed(
    run_id: int, spec: definitions.NodeSpec, claim: Claim, error: str, started: float | None = None
) -> NodeStatus | None:
    if claim.attempt <= spec.retries:
        return _retry(run_id, spec, claim, error)
    if not spec.required:
        status = _end(run_id, spec, claim, NodeStatus.FAILED, error=error, started=started)
        if status is not None:
            events.record(
                run_id,
                RunEvent.NODE_FAILED,
                spec.id,
                attempt=claim.attempt,
                error=error,
                required=False,
            )
        return status
    with transaction.atomic():
        lock_run(run_id)
        if not _node_row(claim).update(
            status=NodeStatus.FAILED,
            error=error,
            finished_at=timezone.now(),
            duration_ms=_elapsed_ms(started),
        ):
            return None
        events.record(
            run_id, RunEvent.NODE_FAILED, spec.id, attempt=claim.attempt, error=error, required=True
        )
        fail(run_id, f"Node '{spec.id}' failed: {error}")
    return NodeStatus.FAILED


def _retry(run_id: int, spec: definitions.NodeSpec, claim: Claim, error: str) -> NodeStatus | None:
    countdown = spec.retry_backoff_seconds * (2 ** (claim.attempt - 1))
    now = timezone.now()
    with transaction.atomic():
        lock_run(run_id)
        if not _node_row(claim).update(
            status=NodeStatus.RETRYING,
            error=error,
            dispatched_at=now + timedelta(seconds=countdown),
        ):
            return None
        events.record(
            run_id,
            RunEvent.NODE_RETRY,
            spec.id,
            attempt=claim.attempt,
            error=error,
            countdown=countdown,
        )
        transaction.on_commit(lambda: dispatch.get().enqueue_node(run_id, spec, countdown))
        settle(run_id)  # a pause waits for running nodes only, not for this one's backoff
    return NodeStatus.RETRYING


def _finish_cancelled(run_id: int, claim: Claim, started: float, why: str) -> NodeStatus | None:
    with transaction.atomic():
        lock_run(run_id)
        if not _node_row(claim).update(
            status=NodeStatus.CANCELLED,
            finished_at=timezone.now(),
            duration_ms=_elapsed_ms(started),
            error=why,
        ):
            return None
        settle(run_id)
    return NodeStatus.CANCELLED
