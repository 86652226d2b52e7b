"""Recovery: re-dispatch nodes whose worker went silent and ready nodes that nothing is
executing, branch by branch, and settle runs whose last boundary was left half done.

Run periodically by celery beat and on demand by ``orchestrator recover``. Every re-dispatch is
a compare-and-set, so passes running twice, or on two hosts at once, start nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from orchestrator import conf, dispatch, engine, events
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.state import OPEN_NODES, NodeStatus, RunStatus

ACTIVE = [
    RunStatus.QUEUED,
    RunStatus.RUNNING,
    RunStatus.PAUSING,
    RunStatus.CANCELLING,
    RunStatus.FAILING,
]
#: Runs whose ready nodes may start now (the on_failure path's, for a failing run).
STARTING = [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.FAILING]


@dataclass
class RecoveryReport:
    stale_nodes: list[tuple[int, str]] = field(default_factory=list)
    stalled_runs: list[tuple[int, str]] = field(default_factory=list)
    settled_runs: list[tuple[int, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[dict[str, object]]]:
        return {
            "stale_nodes": [{"run_id": r, "node_id": n} for r, n in self.stale_nodes],
            "stalled_runs": [{"run_id": r, "node_id": n} for r, n in self.stalled_runs],
            "settled_runs": [{"run_id": r, "status": s} for r, s in self.settled_runs],
        }

    @property
    def total(self) -> int:
        return len(self.stale_nodes) + len(self.stalled_runs) + len(self.settled_runs)


def recover() -> RecoveryReport:
    """One recovery pass; returns what it re-dispatched and settled.

    Raises BrokerUnavailable, having changed nothing, when the broker cannot take the work.
    """
    dispatch.get().check()
    report = RecoveryReport()
    now = timezone.now()
    _redispatch_silent(report, now)
    _redispatch_stalled(report, now)
    _settle_idle(report)
    return report


def _redispatch_silent(report: RecoveryReport, now: datetime) -> None:
    """Running nodes whose worker stopped beating go back to QUEUED and to the broker."""
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
            ).update(status=NodeStatus.QUEUED, heartbeat=now, dispatched_at=now):
                continue
            events.record(
                run_id,
                RunEvent.NODE_REDISPATCHED,
                node_id,
                reason="worker went silent",
                last_heartbeat=heartbeat.isoformat() if heartbeat else None,
            )
            engine.enqueue_after_commit(run_id, node_id)
        report.stale_nodes.append((run_id, node_id))


def _redispatch_stalled(report: RecoveryReport, now: datetime) -> None:
    """Ready nodes handed to the broker long ago and never claimed: their message was lost."""
    quiet_before = now - timedelta(seconds=conf.get("ORCHESTRATOR_REDISPATCH_AFTER"))
    stalled = NodeRun.objects.filter(
        status__in=[NodeStatus.QUEUED, NodeStatus.RETRYING],
        dispatched_at__lt=quiet_before,
        run__status__in=STARTING,
    ).values_list("pk", "run_id", "node_id", "dispatched_at", "run__status")
    for pk, run_id, node_id, dispatched_at, run_status in stalled.order_by("run_id", "position"):
        if run_status == RunStatus.FAILING:
            spec = engine.plans.get(run_id).definition.node(node_id)
            if not spec.on_failure_path:
                continue  # it will never start: settling the run cancels it
        with transaction.atomic():
            if not NodeRun.objects.filter(pk=pk, dispatched_at=dispatched_at).update(
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


def _settle_idle(report: RecoveryReport) -> None:
    """Runs with nothing running whose settling was left undone (a process stopped between
    recording its node and settling the run): pause, cancel, fail or complete them now."""
    running = NodeRun.objects.filter(run_id=OuterRef("pk"), status=NodeStatus.RUNNING)
    open_nodes = NodeRun.objects.filter(run_id=OuterRef("pk"), status__in=OPEN_NODES)
    rows = (
        PipelineRun.objects.annotate(has_running=Exists(running), has_open=Exists(open_nodes))
        .filter(
            Q(status__in=[RunStatus.PAUSING, RunStatus.CANCELLING, RunStatus.FAILING])
            & Q(has_running=False)
            | Q(status=RunStatus.RUNNING, has_open=False)
        )
        .values_list("pk", flat=True)
    )
    for run_id in rows:
        moved = engine.settle(run_id)
        if moved is not None:
            report.settled_runs.append((run_id, str(moved)))
