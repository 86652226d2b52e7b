"""Seed the database with many finished runs (default 10,000 runs, 100,000 node runs) for the
scale measurement, with ``bulk_create`` in batches."""

from __future__ import annotations

import random
import time
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.state import NodeStatus, RunStatus

#: How seeded runs ended, with weights: mostly completed, as on a healthy installation.
ENDINGS = (
    (RunStatus.COMPLETED, 85),
    (RunStatus.FAILED, 8),
    (RunStatus.CANCELLED, 4),
    (RunStatus.PAUSED, 3),
)
PIPELINES = ("health-check", "alert-triage", "nightly-report", "disk-cleanup", "deploy-verify")


def snapshot(name: str, nodes: int) -> dict[str, Any]:
    """A definition of ``nodes`` noop nodes linked in a line."""
    ids = [f"step-{i:02d}" for i in range(nodes)]
    return {
        "name": name,
        "nodes": [
            {"id": node_id, "type": "noop", "next": ids[i + 1] if i + 1 < nodes else None}
            for i, node_id in enumerate(ids)
        ],
    }


def seed(runs: int, node_runs: int, batch: int = 1000, rng_seed: int = 6) -> dict[str, Any]:
    """Insert ``runs`` finished runs holding ``node_runs`` node runs between them, plus their
    queued and final events; returns counts and the time taken."""
    rng = random.Random(rng_seed)
    per_run = max(1, node_runs // max(runs, 1))
    configs = {name: snapshot(name, per_run) for name in PIPELINES}
    statuses = [status for status, _ in ENDINGS]
    weights = [weight for _, weight in ENDINGS]
    started = time.perf_counter()
    created_runs = created_nodes = created_events = 0
    base = timezone.now() - timedelta(days=30)
    while created_runs < runs:
        size = min(batch, runs - created_runs)
        rows = []
        for i in range(size):
            name = PIPELINES[(created_runs + i) % len(PIPELINES)]
            status = rng.choices(statuses, weights)[0]
            begun = base + timedelta(seconds=(created_runs + i) * 240)
            took = None if status == RunStatus.PAUSED else rng.uniform(5, 900)
            rows.append(
                PipelineRun(
                    pipeline_name=name,
                    config=configs[name],
                    payload={"server": f"web-{rng.randint(1, 40):02d}", "seq": created_runs + i},
                    source="bench",
                    status=status,
                    error="Node 'step-07' failed: seeded" if status == RunStatus.FAILED else "",
                    started_at=begun,
                    finished_at=None if took is None else begun + timedelta(milliseconds=took),
                    duration_ms=took,
                    queued_by="bench-seed",
                )
            )
        with transaction.atomic():
            saved = PipelineRun.objects.bulk_create(rows, batch_size=batch)
            nodes = [
                NodeRun(
                    run_id=run.pk,
                    node_id=f"step-{k:02d}",
                    node_type="noop",
                    position=k,
                    status=_node_status(run.status, k),
                    attempt=1,
                    task_id=f"seed-{run.pk}-{k}",
                    worker="bench-seed:1",
                    heartbeat=run.started_at,
                    started_at=run.started_at,
                    finished_at=run.started_at,
                    duration_ms=rng.uniform(0.5, 90),
                    output={"ok": True, "n": k},
                )
                for run in saved
                for k in range(per_run)
            ]
            NodeRun.objects.bulk_create(nodes, batch_size=5000)
            events = [
                RunEvent(run_id=run.pk, kind=kind, host="bench-seed", pid=1, details={})
                for run in saved
                for kind in (RunEvent.QUEUED, _final_event(run.status))
            ]
            RunEvent.objects.bulk_create(events, batch_size=5000)
        created_runs += size
        created_nodes += len(nodes)
        created_events += len(events)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return {
        "runs": created_runs,
        "node_runs": created_nodes,
        "events": created_events,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _node_status(run_status: str, position: int) -> NodeStatus:
    if run_status == RunStatus.COMPLETED or position < 5:
        return NodeStatus.COMPLETED
    if run_status == RunStatus.FAILED and position == 7:
        return NodeStatus.FAILED
    return NodeStatus.CANCELLED if run_status != RunStatus.PAUSED else NodeStatus.QUEUED


def _final_event(run_status: str) -> str:
    return {
        RunStatus.COMPLETED: RunEvent.COMPLETED,
        RunStatus.FAILED: RunEvent.FAILED,
        RunStatus.CANCELLED: RunEvent.CANCELLED,
        RunStatus.PAUSED: RunEvent.PAUSED,
    }[RunStatus(run_status)]
