"""Moving a run's graph on: after a node ended, hand out the successors it made ready (a
fan-out hands out several, a join is handed out by its last predecessor), or settle the run
when this may have been its last boundary; on resume, hand out every ready node.

The rules are in :mod:`orchestrator.graph` (joins, skips) and :mod:`orchestrator.state`
(which run statuses move the graph on); the writes in :mod:`orchestrator.statements`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

from django.utils import timezone

from orchestrator import definitions, statements
from orchestrator.models import NodeRun
from orchestrator.plans import plans
from orchestrator.state import NodeStatus, RunStatus
from orchestrator.transitions import enqueue_after_commit, settle


def successors_of(run_id: int, spec: definitions.NodeSpec) -> list[tuple[str, str, int, int]]:
    """(id, type, position, number of predecessors) of each node after ``spec``."""
    definition = plans.get(run_id).definition
    return [
        (nxt.id, nxt.type, nxt.position, len(nxt.predecessors))
        for nxt in (definition.node(node_id) for node_id in spec.successors)
    ]


def advance(run_id: int, ended: statements.Ended) -> None:
    """After a node's end was recorded (in the caller's transaction, if any): hand out the
    successors it readied, else settle the run."""
    handed = [node for node, status, out in ended.arrivals if out and status == NodeStatus.QUEUED]
    for node_id in handed:
        enqueue_after_commit(run_id, node_id)
    if handed:
        return
    waiting = any(status == NodeStatus.WAITING for _, status, _ in ended.arrivals)
    if waiting and ended.run_status == RunStatus.RUNNING:
        # A join awaits another predecessor, still to end in this running run: that end, not
        # this one, is the run's next boundary.
        return
    settle(run_id)


def dispatch_ready(
    run_id: int, on_error: Callable[[tuple[str, Exception]], None] | None = None
) -> list[str]:
    """Inside a transaction that let the run's nodes start (resume): hand out every ready node,
    keeping what is left of a retry's backoff. Nodes whose message is still with the broker get
    a second one; the claim lets only one of them run. ``on_error`` hears of each node the
    executor would not take after commit (its ``dispatched_at`` lets recovery send it again)."""
    now = timezone.now()
    rows = list(
        NodeRun.objects.filter(
            run_id=run_id, status__in=[NodeStatus.QUEUED, NodeStatus.RETRYING]
        ).order_by("position", "id")
    )
    for row in rows:
        due = row.dispatched_at if row.status == NodeStatus.RETRYING else None
        countdown = max(0.0, (due - now).total_seconds()) if due else 0.0
        NodeRun.objects.filter(pk=row.pk).update(dispatched_at=now + timedelta(seconds=countdown))
        told = None if on_error is None else partial(_tell, on_error, row.node_id)
        enqueue_after_commit(run_id, row.node_id, countdown, on_error=told)
    return [row.node_id for row in rows]


def _tell(on_error: Callable[[tuple[str, Exception]], None], node_id: str, exc: Exception) -> None:
    on_error((node_id, exc))


def failure_of(run_id: int) -> dict[str, Any] | None:
    """The failure an on_failure node handles: the first required node that failed, and why."""
    definition = plans.get(run_id).definition
    failed = NodeRun.objects.filter(run_id=run_id, status=NodeStatus.FAILED).order_by(
        "finished_at", "id"
    )
    for node_id, error in failed.values_list("node_id", "error"):
        if definition.node(node_id).required:
            return {"node": node_id, "error": error}
    return None
