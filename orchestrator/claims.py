"""Claiming a node: the compare-and-set that lets exactly one delivery of a node run it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone

from orchestrator import conf, definitions, events, statements
from orchestrator.models import NodeRun, PipelineRun
from orchestrator.state import NodeStatus
from orchestrator.transitions import settle

logger = logging.getLogger(__name__)


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
