"""Claiming a node: the compare-and-set that lets exactly one delivery of a node run it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from orchestrator import conf, definitions, events, statements
from orchestrator.state import Action
from orchestrator.transitions import settle

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    node_run_id: int
    attempt: int
    #: How many of the node's predecessors ended without being skipped.
    reached: int = 0


def start_action(spec: definitions.NodeSpec) -> Action:
    """How a node starts: as part of the run, or on the on_failure path once the run failed."""
    return Action.ON_FAILURE if spec.on_failure_path else Action.START


def claim_node(run_id: int, spec: definitions.NodeSpec, task_id: str = "") -> Claim | None:
    """Claim ``spec`` of the run for this process, or None when it must not run now.

    The run must let a node start (QUEUED or RUNNING; FAILING for the on_failure path) and the
    node must be ready (QUEUED, or RETRYING after a failed attempt), or RUNNING with a heartbeat
    gone stale. A completed node, a node not ready yet, or one running elsewhere is left alone.
    A delivery that finds its run pausing, cancelling or failing settles the run if nothing
    else holds it back (no node of it running).
    """
    now = timezone.now()
    stale = now - timedelta(seconds=conf.get("ORCHESTRATOR_HEARTBEAT_TIMEOUT"))
    run_claimed, node = statements.claim(
        run_id, spec.id, start_action(spec), task_id, events.identity(), now, stale
    )
    if not run_claimed:
        settle(run_id)
        return None
    if node is None:
        logger.info(
            "Node %s of run %s is not ready or is running elsewhere; skipped", spec.id, run_id
        )
        return None
    return Claim(node_run_id=node.node_run_id, attempt=node.attempt, reached=node.reached)
