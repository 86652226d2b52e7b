"""Recovery: re-dispatch nodes whose worker went silent and ready nodes that nothing is
executing, branch by branch, and settle runs whose last boundary was left half done.

Every worker runs a pass periodically (:mod:`orchestrator.healing`), one at a time across all
hosts under a lease; celery beat may too, and ``orchestrator recover`` runs one on demand. Every
re-dispatch is a compare-and-set, so passes running twice, or on two hosts at once, start
nothing twice; a pass sends a stalled node again only when its queue is missing messages
(:mod:`orchestrator.backlog`), and a run it cannot handle is recorded and passed over.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import Error, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from orchestrator import backlog, conf, dispatch, engine, events, lease
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.state import OPEN_NODES, NodeStatus, RunStatus

logger = logging.getLogger(__name__)

ACTIVE = [
    RunStatus.QUEUED,
    RunStatus.RUNNING,
    RunStatus.PAUSING,
    RunStatus.CANCELLING,
    RunStatus.FAILING,
]
#: Runs whose ready nodes may start now (the on_failure path's, for a failing run).
STARTING = [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.FAILING]
#: The lease every periodic pass takes, so that one pass runs at a time across all hosts.
LEASE = "orchestrator-recovery"


@dataclass
class RecoveryReport:
    stale_nodes: list[tuple[int, str]] = field(default_factory=list)
    stalled_runs: list[tuple[int, str]] = field(default_factory=list)
    settled_runs: list[tuple[int, str]] = field(default_factory=list)
    #: Runs this pass could not handle: (run id, node id, reason); each is a RECOVERY_FAILED event.
    failed: list[tuple[int, str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[dict[str, object]]]:
        return {
            "stale_nodes": [{"run_id": r, "node_id": n} for r, n in self.stale_nodes],
            "stalled_runs": [{"run_id": r, "node_id": n} for r, n in self.stalled_runs],
            "settled_runs": [{"run_id": r, "status": s} for r, s in self.settled_runs],
            "failed": [{"run_id": r, "node_id": n, "reason": why} for r, n, why in self.failed],
        }

    @property
    def total(self) -> int:
        return len(self.stale_nodes) + len(self.stalled_runs) + len(self.settled_runs)


def recover_under_lease(
    wait: float = 0.0, redispatch_after: float | None = None
) -> RecoveryReport | None:
    """One pass if the recovery lease can be had within ``wait`` seconds, else None."""
    with lease.held(LEASE, wait=wait) as acquired:
        if not acquired:
            return None
        began = time.time()
        report = recover(redispatch_after=redispatch_after)
        logger.info(
            "Recovery pass held the lease from %.6f to %.6f: %d re-dispatched, %d failed",
            began,
            time.time(),
            report.total,
            len(report.failed),
        )
        return report


def recover(redispatch_after: float | None = None) -> RecoveryReport:
    """One recovery pass; returns what it re-dispatched and settled.

    ``redispatch_after`` overrides ORCHESTRATOR_REDISPATCH_AFTER for this pass (0: every run
    waiting on the broker counts as stalled now). Raises BrokerUnavailable, having changed
    nothing, when the broker cannot take the work.
    """
    dispatch.get().check()
    report = RecoveryReport()
    now = timezone.now()
    _redispatch_silent(report, now)
    if redispatch_after is None:
        redispatch_after = conf.get("ORCHESTRATOR_REDISPATCH_AFTER")
    quiet_before = now - timedelta(seconds=redispatch_after)
    for pk, run_id, node_id, dispatched_at in _stalled(report, now, quiet_before):
        with _each_run(report, run_id, node_id):
            if _redispatch_stalled(pk, run_id, node_id, dispatched_at, now):
                report.stalled_runs.append((run_id, node_id))
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
        with _each_run(report, run_id, node_id):
            if _requeue_silent(pk, run_id, node_id, heartbeat, now):
                report.stale_nodes.append((run_id, node_id))


def _requeue_silent(
    pk: int, run_id: int, node_id: str, heartbeat: datetime | None, now: datetime
) -> bool:
    with transaction.atomic():
        # Back to QUEUED only if nobody beat or reclaimed it since we looked; its worker is lost.
        if not NodeRun.objects.filter(pk=pk, status=NodeStatus.RUNNING, heartbeat=heartbeat).update(
            status=NodeStatus.QUEUED, heartbeat=now, dispatched_at=now, losses=F("losses") + 1
        ):
            return False
        events.record(
            run_id,
            RunEvent.NODE_REDISPATCHED,
            node_id,
            reason="worker went silent",
            last_heartbeat=heartbeat.isoformat() if heartbeat else None,
        )
        engine.enqueue_after_commit(run_id, node_id)
    return True


def _stalled(
    report: RecoveryReport, now: datetime, quiet_before: datetime
) -> list[tuple[int, int, str, datetime]]:
    """Ready nodes handed to the broker before ``quiet_before`` and never claimed (their message
    may be lost), as many per queue as that queue is missing messages: (node run id, run id,
    node id, when it was handed out), the longest waiting first."""
    waiting = (
        NodeRun.objects.filter(
            status__in=[NodeStatus.QUEUED, NodeStatus.RETRYING],
            dispatched_at__lte=now,
            run__status__in=STARTING,
        )
        .order_by("dispatched_at", "run_id", "position")
        .values_list("pk", "run_id", "node_id", "dispatched_at", "run__status")
    )
    stalled: dict[str, list[tuple[int, int, str, datetime]]] = {}
    on_queue: Counter[str] = Counter()
    for pk, run_id, node_id, dispatched_at, run_status in waiting:
        try:
            spec = engine.plans.get(run_id).definition.node(node_id)
        except Error:
            raise  # the database is away: the whole pass stops, to run again later
        except Exception as exc:  # a run this host cannot read: recorded once it is stalled
            if dispatched_at < quiet_before:
                _record_failure(report, run_id, node_id, exc)
            continue
        if run_status == RunStatus.FAILING and not spec.on_failure_path:
            continue  # it will never start: settling the run cancels it
        queue = spec.queue or conf.get("ORCHESTRATOR_DEFAULT_QUEUE")
        on_queue[queue] += 1
        if dispatched_at < quiet_before:
            stalled.setdefault(queue, []).append((pk, run_id, node_id, dispatched_at))
    depths = _depths(list(stalled))
    chosen = [
        item
        for queue, items in stalled.items()
        for item in backlog.to_send_again(items, on_queue[queue], depths.get(queue))
    ]
    return sorted(chosen, key=lambda item: (item[3], item[1]))


def _depths(queues: list[str]) -> dict[str, int | None]:
    """Messages waiting in each queue, as the broker reports them (None where it cannot)."""
    if not queues:
        return {}
    try:
        return dict(dispatch.get().queue_depths(queues))
    except Exception as exc:  # kombu raises transport-specific errors
        logger.warning("Could not read queue depths (%s); sending every stalled node again", exc)
        return {}


def _redispatch_stalled(
    pk: int, run_id: int, node_id: str, dispatched_at: datetime, now: datetime
) -> bool:
    """Hand a stalled node to the broker again, unless it was claimed or handed out since."""
    with transaction.atomic():
        if not NodeRun.objects.filter(
            pk=pk,
            status__in=[NodeStatus.QUEUED, NodeStatus.RETRYING],
            dispatched_at=dispatched_at,
        ).update(dispatched_at=now):
            return False
        events.record(
            run_id,
            RunEvent.NODE_REDISPATCHED,
            node_id,
            reason="nothing running or queued",
            dispatched_at=dispatched_at.isoformat(),
        )
        engine.enqueue_after_commit(run_id, node_id)
    return True


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
        with _each_run(report, run_id, ""):
            moved = engine.settle(run_id)
            if moved is not None:
                report.settled_runs.append((run_id, str(moved)))


class _each_run:
    """Around one run's recovery: any error but the database's is recorded on that run (a
    ``recovery failed`` event) and the pass goes on with the next."""

    def __init__(self, report: RecoveryReport, run_id: int, node_id: str) -> None:
        self.report, self.run_id, self.node_id = report, run_id, node_id

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> bool:
        if exc is None or isinstance(exc, Error) or not isinstance(exc, Exception):
            return False  # the database is away: the whole pass stops, to run again later
        _record_failure(self.report, self.run_id, self.node_id, exc)
        return True


def _record_failure(report: RecoveryReport, run_id: int, node_id: str, exc: Exception) -> None:
    reason = " ".join(str(exc).split()) or type(exc).__name__  # one line, for the timeline
    logger.warning("Recovery of run %s failed: %s", run_id, reason)
    report.failed.append((run_id, node_id, reason))
    last = RunEvent.objects.filter(run_id=run_id).order_by("-id").values("kind", "details").first()
    # The same failure on every pass is recorded once, not every few seconds.
    if last == {"kind": RunEvent.RECOVERY_FAILED, "details": {"reason": reason}}:
        return
    events.record(run_id, RunEvent.RECOVERY_FAILED, node_id, reason=reason)
