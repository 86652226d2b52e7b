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
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.reclaim import Verdict
from orchestrator.state import NodeStatus
from orchestrator.transitions import settle

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    node_run_id: int
    attempt: int
    #: Workers lost while running this node so far (see ORCHESTRATOR_MAX_WORKER_LOSSES).
    losses: int = 0


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

    The run must be QUEUED or RUNNING with this node as its current one (a PAUSING run settles
    to PAUSED before this node, a CANCELLING one to CANCELLED); the node must be new, queued for
    a retry, RUNNING with a heartbeat gone stale, or RUNNING under a holder that is gone. A
    COMPLETED node is left alone, and so is the run.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=conf.get("ORCHESTRATOR_HEARTBEAT_TIMEOUT"))
    me = holders.current()
    for _ in range(5):
        # Only a delivery of the node the run waits on may start it; a duplicate delivery of an
        # earlier node must not move the run back.
        run_claimed, node = statements.claim(
            run_id,
            spec.id,
            spec.type,
            spec.position,
            task_id,
            me.describe(),
            me.token(),
            now,
            stale,
        )
        if run_claimed:
            break
        if not _awaits(run_id, spec.id, stale) or settle(run_id, resume_from=spec.id):
            return None
        # Nothing to settle: a pause was withdrawn meanwhile, so the node may start after all.
    else:
        return None
    if node is None:
        return _take_over(run_id, spec, task_id, now)
    return Claim(node_run_id=node[0], attempt=node[1], losses=node[2])


def _take_over(
    run_id: int, spec: definitions.NodeSpec, task_id: str, now: datetime
) -> Claim | Deferred | None:
    """The node is not claimable as new: take it over if its holder is gone or is this process,
    defer this delivery if the holder may be running it, else (it ended) skip it."""
    row = (
        NodeRun.objects.filter(run_id=run_id, node_id=spec.id)
        .values("id", "status", "attempt", "holder", "heartbeat", "losses")
        .first()
    )
    if row is None or row["status"] != NodeStatus.RUNNING:
        logger.info("Node %s of run %s has ended or is not due; skipped", spec.id, run_id)
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
    return Claim(node_run_id=row["id"], attempt=attempt, losses=losses)


def _awaits(run_id: int, node_id: str, stale: Any) -> bool:
    """Whether the run waits on ``node_id`` with no node of it running: only then may this
    delivery settle a pause or cancel (a duplicate of a node in flight leaves that to the node)."""
    busy = NodeRun.objects.filter(run_id=run_id, status=NodeStatus.RUNNING, heartbeat__gte=stale)
    return (
        not busy.exists() and PipelineRun.objects.filter(pk=run_id, current_node=node_id).exists()
    )
