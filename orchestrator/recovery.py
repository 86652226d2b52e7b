"""Recovery: re-dispatch nodes whose worker went silent and runs that nothing is executing.

Run periodically by celery beat and on demand by ``orchestrator recover``. Every re-dispatch is
a compare-and-set, so passes running twice, or on two hosts at once, start nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from orchestrator import conf, dispatch, engine, events
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.state import NodeStatus, RunStatus

ACTIVE = [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSING, RunStatus.CANCELLING]


@dataclass
class RecoveryReport:
    stale_nodes: list[tuple[int, str]] = field(default_factory=list)
    stalled_runs: list[tuple[int, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[dict[str, object]]]:
        return {
            "stale_nodes": [{"run_id": r, "node_id": n} for r, n in self.stale_nodes],
            "stalled_runs": [{"run_id": r, "node_id": n} for r, n in self.stalled_runs],
        }

    @property
    def total(self) -> int:
        return len(self.stale_nodes) + len(self.stalled_runs)


def recover() -> RecoveryReport:
    """One recovery pass; returns what it re-dispatched.

    Raises BrokerUnavailable, having changed nothing, when the broker cannot take the work.
    """
    dispatch.get().check()
    report = RecoveryReport()
    now = timezone.now()
    stale_before = now - timedelta(seconds=conf.get("ORCHESTRATOR_HEARTBEAT_TIMEOUT"))
    silent = NodeRun.objects.filter(
        Q(heartbeat__lt=stale_before) | Q(heartbeat__isnull=True, started_at__lt=stale_before),
        status=NodeStatus.RUNNING,
        run__status__in=ACTIVE,
    ).values_list("pk", "run_id", "node_id", "heartbeat")
    for pk, run_id, node_id, heartbeat in silent:
        with transaction.atomic():
            # Back to QUEUED only if nobody beat or reclaimed it since we looked.
            if not NodeRun.objects.filter(
                pk=pk, status=NodeStatus.RUNNING, heartbeat=heartbeat
            ).update(status=NodeStatus.QUEUED, heartbeat=now):
                continue
            PipelineRun.objects.filter(pk=run_id).update(dispatched_at=now)
            events.record(
                run_id,
                RunEvent.NODE_REDISPATCHED,
                node_id,
                reason="worker went silent",
                last_heartbeat=heartbeat.isoformat() if heartbeat else None,
            )
            engine.enqueue_after_commit(run_id, node_id)
        report.stale_nodes.append((run_id, node_id))

    quiet_before = now - timedelta(seconds=conf.get("ORCHESTRATOR_REDISPATCH_AFTER"))
    stalled = (
        PipelineRun.objects.filter(status__in=ACTIVE, dispatched_at__lt=quiet_before)
        .exclude(current_node="")
        .values_list("pk", "current_node", "dispatched_at")
    )
    for run_id, node_id, dispatched_at in stalled:
        node_status = (
            NodeRun.objects.filter(run_id=run_id, node_id=node_id)
            .values_list("status", flat=True)
            .first()
        )
        if node_status == NodeStatus.COMPLETED:
            # The node was recorded but the process stopped before settling a pause or cancel
            # asked for meanwhile (two statements apart): settle it now.
            nxt = engine.plans.get(run_id).definition.node(node_id).next
            if engine.settle(run_id, resume_from=nxt or ""):
                report.stalled_runs.append((run_id, node_id))
            continue
        if node_status == NodeStatus.RUNNING:
            continue
        with transaction.atomic():
            if not PipelineRun.objects.filter(pk=run_id, dispatched_at=dispatched_at).update(
                dispatched_at=now
            ):
                continue
            events.record(
                run_id,
                RunEvent.NODE_REDISPATCHED,
                node_id,
                reason="nothing running or queued",
                dispatched_at=dispatched_at.isoformat(),
            )
            engine.enqueue_after_commit(run_id, node_id)
        report.stalled_runs.append((run_id, node_id))
    return report
