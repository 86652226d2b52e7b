"""Celery tasks: run one node, mirror one transition, run a recovery pass. Thin by design."""

from __future__ import annotations

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from orchestrator import engine, mirror, recovery
from orchestrator.errors import ClarifaiError
from workers.celery import app


@app.task(name="workers.tasks.run_node", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_node(self: Task, run_id: int, node_id: str) -> str | None:
    """Execute node ``node_id`` of run ``run_id`` (claim, run, record, enqueue next)."""
    try:
        status = engine.execute_node(run_id, node_id, task_id=self.request.id or "")
    except SoftTimeLimitExceeded:  # the engine's own limit fires first; this is a backstop
        return None
    return None if status is None else str(status)


@app.task(name="workers.tasks.mirror_transition", bind=True, max_retries=None)
def mirror_transition(self: Task, run_id: int, event_id: int) -> bool:
    """Mirror one pause, cancel or resume to Clarifai, retrying with exponential backoff."""
    attempt = self.request.retries + 1
    try:
        return mirror.deliver(run_id, event_id, attempt)
    except ClarifaiError as exc:
        from orchestrator import conf

        if attempt >= conf.get("ORCHESTRATOR_MIRROR_RETRIES"):
            return False
        raise self.retry(exc=exc, countdown=mirror.backoff(attempt)) from exc


@app.task(name="workers.tasks.recover")
def recover() -> dict:
    """One recovery pass (scheduled by celery beat), unless another holds the lease."""
    report = recovery.recover_under_lease()
    if report is None:
        return {"skipped": "another recovery pass holds the lease"}
    return report.as_dict()
