"""Mirror pause, cancel and resume of linked runs to their Clarifai pipeline version runs.

The local transition always happens first and is never rolled back here. Each transition is
mirrored at most once: a delivery first looks for a ``mirrored`` event naming it.
"""

from __future__ import annotations

import time

from django.db import transaction

from orchestrator import clarifai, conf, dispatch, events
from orchestrator.errors import ClarifaiError
from orchestrator.models import PipelineRun, RunEvent
from orchestrator.state import CLARIFAI_CODES, RunStatus

#: Which Clarifai status each effect event is mirrored as.
CODES = {
    RunEvent.PAUSED: CLARIFAI_CODES[RunStatus.PAUSED],
    RunEvent.CANCELLED: CLARIFAI_CODES[RunStatus.CANCELLED],
    RunEvent.RESUMED: CLARIFAI_CODES[RunStatus.RUNNING],
}


def schedule(run_id: int, event_id: int) -> None:
    """After commit, hand the transition ``event_id`` to the mirror if the run is linked."""
    linked = PipelineRun.objects.filter(pk=run_id).exclude(clarifai_pipeline_version_run_id="")
    if linked.exists():
        transaction.on_commit(lambda: dispatch.get().enqueue_mirror(run_id, event_id))


def stored_link(run: PipelineRun) -> dict[str, str]:
    return {
        "user_id": run.clarifai_user_id,
        "app_id": run.clarifai_app_id,
        "pipeline_id": run.clarifai_pipeline_id,
        "pipeline_version_id": run.clarifai_pipeline_version_id,
    }


def deliver(run_id: int, event_id: int, attempt: int = 1) -> bool:
    """Send one transition to Clarifai; True when it is there (now or before).

    Raises ClarifaiError when the failure is worth retrying; every attempt is a RunEvent.
    """
    run = PipelineRun.objects.get(pk=run_id)
    event = RunEvent.objects.get(pk=event_id, run_id=run_id)
    code = CODES[event.kind]
    if RunEvent.objects.filter(
        run_id=run_id, kind=RunEvent.MIRRORED, details__event=event_id
    ).exists():
        return True
    try:
        ids = clarifai.resolve_ids(
            run.clarifai_pipeline_version_run_id, stored=stored_link(run), cwd=None
        )
        # The client reads ORCHESTRATOR_CLARIFAI_TIMEOUT itself and reports a bad value as a
        # ClarifaiError, which is recorded below instead of crashing the worker.
        clarifai.patch_run_status(ids, code)
    except ClarifaiError as exc:
        retryable = bool(getattr(exc, "retryable", False))
        events.record(
            run_id,
            RunEvent.MIRROR_FAILED,
            event=event_id,
            code=code,
            attempt=attempt,
            error=str(exc),
            retryable=retryable,
        )
        if retryable:
            raise
        return False
    events.record(
        run_id,
        RunEvent.MIRRORED,
        event=event_id,
        code=code,
        attempt=attempt,
        pipeline_version_run_id=ids.pipeline_version_run_id,
    )
    return True


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1``."""
    return float(conf.get("ORCHESTRATOR_MIRROR_BACKOFF")) * (2 ** (attempt - 1))


def deliver_with_retries(run_id: int, event_id: int) -> bool:
    """Inline delivery: retry with exponential backoff, never raising."""
    attempts = int(conf.get("ORCHESTRATOR_MIRROR_RETRIES"))
    for attempt in range(1, attempts + 1):
        try:
            return deliver(run_id, event_id, attempt)
        except ClarifaiError:
            if attempt < attempts:
                time.sleep(backoff(attempt))
    return False


def state(run: PipelineRun) -> str:
    """A one-line mirror state for ``pr status``: the last mirror event, if any."""
    last = (
        RunEvent.objects.filter(run_id=run.pk, kind__in=[RunEvent.MIRRORED, RunEvent.MIRROR_FAILED])
        .order_by("-id")
        .first()
    )
    if last is None:
        return "not mirrored yet"
    if last.kind == RunEvent.MIRRORED:
        return f"{last.details.get('code')} mirrored at {last.at:%Y-%m-%d %H:%M:%S}"
    return (
        f"{last.details.get('code')} failed (attempt {last.details.get('attempt')}): "
        f"{last.details.get('error')}"
    )
