"""Mirror pause, cancel and resume of linked runs to their Clarifai pipeline version runs.

The local transition always happens first and is never rolled back here. Each transition is
patched once even when two deliveries of it race: a delivery first claims the transition's event
row (a compare-and-set on ``mirror_until``), and only the delivery holding the claim calls
Clarifai. A claim whose holder died expires after a call's deadline and a margin.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

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
        transaction.on_commit(lambda: _hand_over(run_id, event_id))


def _hand_over(run_id: int, event_id: int) -> None:
    """Hand the transition to the mirror; a broker that cannot take it is a recorded mirror
    failure, never an error for the change that was just committed."""
    try:
        dispatch.get().enqueue_mirror(run_id, event_id)
    except Exception as exc:  # kombu raises transport-specific errors
        events.record(
            run_id,
            RunEvent.MIRROR_FAILED,
            event=event_id,
            code=CODES.get(RunEvent.objects.get(pk=event_id).kind, ""),
            attempt=0,
            error=f"Could not queue the mirror: {exc}",
            retryable=False,
        )


#: The claim of a transition that was patched, or refused for good: never claimed again.
SETTLED = datetime(9999, 1, 1, tzinfo=dt_timezone.utc)
#: Seconds a claim outlives one call's deadline before another delivery may take it over.
CLAIM_MARGIN = 60.0


def _claim_seconds() -> float:
    try:
        return max(0.0, float(conf.get("ORCHESTRATOR_CLARIFAI_TIMEOUT"))) + CLAIM_MARGIN
    except ValueError:  # reported by the client as a recorded failure; the claim still expires
        return CLAIM_MARGIN


def _claim(run_id: int, event_id: int) -> datetime | None:
    """Claim the transition for this delivery; its expiry, or None if another delivery holds it
    or it was settled."""
    now = timezone.now()
    until = now + timedelta(seconds=_claim_seconds())
    free = Q(mirror_until__isnull=True) | Q(mirror_until__lt=now)
    if RunEvent.objects.filter(free, pk=event_id, run_id=run_id).update(mirror_until=until):
        return until
    return None


def _release(event_id: int, until: datetime, settled: bool) -> None:
    """Settle the claim for good, or hand it back for a retry (only if still held by us)."""
    RunEvent.objects.filter(pk=event_id, mirror_until=until).update(
        mirror_until=SETTLED if settled else timezone.now()
    )


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
    until = _claim(run_id, event_id)
    if until is None:  # mirrored, refused, or being mirrored by another delivery right now
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
        with transaction.atomic():
            _release(event_id, until, settled=not retryable)
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
    with transaction.atomic():
        _release(event_id, until, settled=True)
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
