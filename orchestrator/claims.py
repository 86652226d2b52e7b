"""Claiming a node: the compare-and-set that lets exactly one delivery of a node run it.

A claim names its holder (:mod:`orchestrator.holders`). A delivery that finds its node RUNNING
asks :mod:`orchestrator.reclaim` whether the holder is gone (take it over at once), is this very
process (carry on with its claim), or may be running it (send this message again later).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import F
from django.utils import timezone

from orchestrator import conf, definitions, events, heartbeat, holders, reclaim, statements
from orchestrator.models import NodeRun, RunEvent
from orchestrator.reclaim import Verdict
from orchestrator.state import Action, NodeStatus
from orchestrator.transitions import settle

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    node_run_id: int
    attempt: int
    #: How many of the node's predecessors ended without being skipped.
    reached: int = 0
    #: Workers lost while running this node so far (see ORCHESTRATOR_MAX_WORKER_LOSSES).
    losses: int = 0


def start_action(spec: definitions.NodeSpec) -> Action:
    """How a node starts: as part of the run, or on the on_failure path once the run failed."""
    return Action.ON_FAILURE if spec.on_failure_path else Action.START


@dataclass(frozen=True)
class Deferred:
    """The node is held by a process that may be running it: deliver it again in ``countdown``."""

    countdown: float
    reason: str


def claim_node(
    run_id: int, spec: definitions.NodeSpec, task_id: str = ""
) -> Claim | Deferred | None:
    """Claim ``spec`` of the run for this process; None when it must not run, Deferred when it
    must be tried again later.

    The run must let a node start (QUEUED or RUNNING; FAILING for the on_failure path) and the
    node must be ready (QUEUED, or RETRYING after a failed attempt), RUNNING with a heartbeat
    gone stale, or RUNNING under a holder that is gone. A completed node or a node not ready yet
    is left alone. A delivery that finds its run pausing, cancelling or failing settles the run
    if nothing else holds it back (no node of it running).
    """
    now = timezone.now()
    stale = now - timedelta(seconds=conf.get("ORCHESTRATOR_HEARTBEAT_TIMEOUT"))
    me = holders.current()
    run_claimed, node = statements.claim(
        run_id, spec.id, start_action(spec), task_id, me.describe(), me.token(), now, stale
    )
    if not run_claimed:
        settle(run_id)
        return None
    if node is None:
        return _take_over(run_id, spec, task_id, now)
    return Claim(
        node_run_id=node.node_run_id, attempt=node.attempt, reached=node.reached, losses=node.losses
    )


def _take_over(
    run_id: int, spec: definitions.NodeSpec, task_id: str, now: datetime
) -> Claim | Deferred | None:
    """The node is not claimable as new: take it over if its holder is gone or is this process,
    defer this delivery if the holder may be running it, else (it ended) skip it."""
    row = (
        NodeRun.objects.filter(run_id=run_id, node_id=spec.id)
        .values("id", "status", "attempt", "reached", "holder", "heartbeat", "losses")
        .first()
    )
    if row is None or row["status"] != NodeStatus.RUNNING:
        logger.info("Node %s of run %s has ended or is not ready; skipped", spec.id, run_id)
        return None
    timeout = float(conf.get("ORCHESTRATOR_HEARTBEAT_TIMEOUT"))
    age = (now - row["heartbeat"]).total_seconds() if row["heartbeat"] else None
    me = holders.current()
    decision = reclaim.decide(
        holders.Holder.parse(row["holder"]),
        me,
        age,
        timeout,
        running_here=heartbeat.running_here(row["id"]),
        alive=holders.is_alive,
    )
    if decision.verdict is Verdict.WAIT:
        interval = float(conf.get("ORCHESTRATOR_HEARTBEAT_SECONDS"))
        countdown = reclaim.countdown(age, timeout, interval)
        logger.info(
            "Node %s of run %s is held (%s); delivering it again in %.1f s",
            spec.id,
            run_id,
            decision.reason,
            countdown,
        )
        return Deferred(countdown, decision.reason)
    fields: dict[str, Any] = {"heartbeat": now, "task_id": task_id, "holder": me.token()}
    attempt, losses = row["attempt"], row["losses"]
    if decision.verdict is Verdict.TAKE_OVER:
        attempt, losses = attempt + 1, losses + int(decision.lost)
        fields.update(
            worker=me.describe(),
            attempt=F("attempt") + 1,
            losses=F("losses") + int(decision.lost),
            started_at=now,
            error="",
        )
    # Compare-and-set: only from the claim that was read, so two deliveries never both win.
    if not NodeRun.objects.filter(
        pk=row["id"], status=NodeStatus.RUNNING, attempt=row["attempt"], holder=row["holder"]
    ).update(**fields):
        return None
    if decision.verdict is Verdict.TAKE_OVER:
        events.record(
            run_id,
            RunEvent.NODE_RECLAIMED,
            spec.id,
            reason=decision.reason,
            attempt=attempt,
            losses=losses,
        )
    return Claim(node_run_id=row["id"], attempt=attempt, reached=row["reached"], losses=losses)
