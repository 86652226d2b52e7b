"""The engine's entry points: create a run and hand it to the executor, and execute one node.

A node is a unit of work that claims itself (:mod:`orchestrator.claims`), runs and records itself
(:mod:`orchestrator.execution`) and moves the run's graph on (:mod:`orchestrator.branches`: its
successors, a fan-out's several, a join once its last predecessor ended) or settles the run
(:mod:`orchestrator.transitions`). Each node boundary is a compare-and-set, so pause and cancel
requests from other hosts, and branches ending on other workers, race safely with it. A no-op
node in a line costs four queries: claim the run, claim the node, record the node together with
its successor's arrival (one statement each on PostgreSQL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from orchestrator import definitions, dispatch, events
from orchestrator.claims import Claim, claim_node
from orchestrator.execution import execute_node
from orchestrator.models import PipelineDefinition, PipelineRun, RunEvent
from orchestrator.plans import RunPlan, node_timeout, plans
from orchestrator.state import RunStatus
from orchestrator.transitions import (
    abandon,
    cancel_pending_nodes,
    ended_fields,
    enqueue_after_commit,
    ready_nodes,
    record_ready,
    settle,
)

__all__ = [
    "Claim",
    "ClarifaiLink",
    "RunPlan",
    "abandon",
    "cancel_pending_nodes",
    "claim_node",
    "create_run",
    "dispatch_run",
    "ended_fields",
    "enqueue_after_commit",
    "execute_node",
    "node_timeout",
    "plans",
    "ready_nodes",
    "settle",
]


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
            queued_by=events.hostname(),
            **(link.as_fields() if link else {}),
        )
        record_ready(run.pk, definition.entry, now)
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
