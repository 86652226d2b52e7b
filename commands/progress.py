"""Live progress: one line per node as it starts and ends, with the elapsed time.

Inline runs report through the engine's signals; queued runs are followed in the database,
which is where workers on other hosts record their nodes: re-read when a change is announced
(:mod:`orchestrator.changes`, PostgreSQL), polled elsewhere.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext, redirect_stdout
from datetime import datetime
from typing import Any, TextIO, TypeVar

from django.core.management.base import CommandError
from django.utils import timezone

from orchestrator import changes, conf, control, dispatch, signals
from orchestrator.models import NodeRun, PipelineRun
from orchestrator.plans import plans
from orchestrator.state import TERMINAL, Action, NodeStatus, RunStatus

T = TypeVar("T")

MARKS = {
    NodeStatus.COMPLETED: "✓",
    NodeStatus.FAILED: "✗",
    NodeStatus.CANCELLED: "✗",
    NodeStatus.RETRYING: "↻",
    NodeStatus.SKIPPED: "↷",
}
#: Statuses of a node that has not started: nothing to say about it yet.
NOT_STARTED = (NodeStatus.WAITING, NodeStatus.QUEUED)


class Progress:
    """Progress lines stamped with the seconds since ``origin`` (a run's creation, so that lines
    replayed from the records carry their real times), else since this object was made."""

    def __init__(
        self,
        stream: TextIO,
        enabled: bool = True,
        origin: datetime | None = None,
        log: TextIO | None = None,
    ) -> None:
        self.stream = stream
        self.enabled = enabled
        self.origin = origin
        self.log = log
        self.t0 = time.monotonic()

    def say(self, text: str, at: datetime | None = None) -> None:
        if not self.enabled and self.log is None:
            return
        if self.origin is not None:
            elapsed = ((at or timezone.now()) - self.origin).total_seconds()
        else:
            elapsed = time.monotonic() - self.t0
        line = f"[{elapsed:7.2f}s] {text}\n"
        for stream in (self.stream if self.enabled else None, self.log):
            if stream is not None:
                stream.write(line)
                stream.flush()

    def started(
        self, node_id: str, node_type: str, attempt: int, at: datetime | None = None
    ) -> None:
        again = f" (attempt {attempt})" if attempt > 1 else ""
        self.say(f"▶ {node_id} [{node_type}] started{again}", at)

    def finished(
        self,
        node_id: str,
        status: str,
        duration_ms: float | None,
        error: str,
        at: datetime | None = None,
    ) -> None:
        took = f" in {duration_ms:.0f}ms" if duration_ms is not None else ""
        why = f": {error}" if error else ""
        mark = MARKS.get(NodeStatus(status), "•")
        self.say(f"{mark} {node_id} {str(status).lower()}{took}{why}", at)


@contextmanager
def inline_progress(progress: Progress, run_id: Callable[[], int | None]) -> Iterator[None]:
    """Print node lines for the run being executed in this process."""

    def on_start(sender: Any, **kw: Any) -> None:
        if kw["run_id"] == run_id():
            progress.started(kw["node_id"], kw["node_type"], kw["attempt"])

    def on_finish(sender: Any, **kw: Any) -> None:
        if kw["run_id"] == run_id():
            duration = (
                NodeRun.objects.filter(run_id=kw["run_id"], node_id=kw["node_id"])
                .values_list("duration_ms", flat=True)
                .first()
            )
            progress.finished(kw["node_id"], kw["status"], duration, kw["error"])

    signals.node_started.connect(on_start, weak=False)
    signals.node_finished.connect(on_finish, weak=False)
    try:
        yield
    finally:
        signals.node_started.disconnect(on_start)
        signals.node_finished.disconnect(on_finish)


@contextmanager
def executing_here(run_id: int, progress: Progress, as_json: bool) -> Iterator[None]:
    """Nodes of ``run_id`` run in this process (no broker): progress lines, stdout kept for
    --json alone, and Ctrl-C cancels the run, since nothing else would ever finish it."""
    quiet = redirect_stdout(sys.stderr) if as_json else nullcontext()
    with inline_progress(progress, lambda: run_id), quiet, _node_failures_shown_once():
        try:
            yield
        except KeyboardInterrupt:
            control.interrupt(run_id)
            raise CommandError(f"Interrupted: pipeline run {run_id} was cancelled.") from None


@contextmanager
def _node_failures_shown_once() -> Iterator[None]:
    """The progress line reports a node's failure here; the engine's log line would repeat it."""
    engine_log = logging.getLogger("orchestrator.execution")
    level = engine_log.level
    engine_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        engine_log.setLevel(level)


#: Where following a run stops: it ended, or it waits for a resume.
FOLLOW_UNTIL = TERMINAL | {RunStatus.PAUSED}


def follow(
    run_id: int,
    progress: Progress,
    *,
    interval: float = 0.2,
    timeout: float | None = None,
) -> PipelineRun:
    """Follow the run until it ends or pauses, printing node changes; returns the run.

    The run is re-read when a change is announced (PostgreSQL), else every ``interval``.
    Lines for what happened before are stamped with their recorded times. When the run waits
    for a worker longer than ``ORCHESTRATOR_WORKER_NOTICE_SECONDS`` and none listens on its
    queue, it says so once. Raises FollowTimeout after ``timeout`` seconds.
    """
    with changes.Follower(run_id, interval) as follower:
        return _follow(run_id, progress, follower, timeout)


def _follow(
    run_id: int, progress: Progress, follower: changes.Follower, timeout: float | None
) -> PipelineRun:
    seen: dict[str, tuple[str, int]] = {}
    started = time.monotonic()
    last_change = started
    noticed = False
    while True:
        run = PipelineRun.objects.get(pk=run_id)
        if progress.origin is None:
            progress.origin = run.created_at
        nodes = NodeRun.objects.filter(run_id=run_id).order_by("position", "id")
        changed, running = report(seen, nodes, progress)
        if changed:
            last_change = time.monotonic()
        if RunStatus(run.status) in FOLLOW_UNTIL:
            return run
        now = time.monotonic()
        notice_at = last_change + float(conf.get("ORCHESTRATOR_WORKER_NOTICE_SECONDS"))
        waiting = not running and run.status in (RunStatus.QUEUED, RunStatus.RUNNING)
        if not noticed and waiting and now >= notice_at:
            noticed = True
            if (notice := worker_notice(run)) is not None:
                progress.say(notice)
        if timeout is not None and now - started >= timeout:
            raise FollowTimeout(run)
        # Woken by the run's next change; never past the timeout, nor past a notice's time.
        limits = [started + timeout] if timeout is not None else []
        if not noticed and waiting:
            limits.append(notice_at)
        follower.wait(max(0.0, min(limits) - now) if limits else None)


def report(
    seen: dict[str, tuple[str, int]], nodes: Iterable[NodeRun], progress: Progress
) -> tuple[bool, bool]:
    """Print what changed in ``nodes`` since ``seen`` (updated): starts, ends and retries, at
    their recorded times. Returns whether anything changed and whether a node is running."""
    changed = running = False
    for node in nodes:
        running = running or node.status == NodeStatus.RUNNING
        key = (node.status, node.attempt)
        if seen.get(node.node_id) == key:
            continue
        changed = True
        before = seen.get(node.node_id)
        seen[node.node_id] = key
        if node.status == NodeStatus.RUNNING:
            progress.started(node.node_id, node.node_type, node.attempt, node.started_at)
            continue
        if (
            before is None
            and node.status not in (*NOT_STARTED, NodeStatus.SKIPPED)
            and node.started_at is not None
        ):
            progress.started(node.node_id, node.node_type, node.attempt, node.started_at)
        if node.status not in NOT_STARTED:
            why = node.reason if node.status == NodeStatus.SKIPPED else node.error
            progress.finished(node.node_id, node.status, node.duration_ms, why, node.finished_at)
    return changed, running


def wait_for_effect(
    run_id: int,
    action: Action,
    timeout: float,
    fetch: Callable[[], tuple[T, str, bool]],
    *,
    interval: float = 0.1,
    pause: Callable[[float], object] | None = None,
) -> T:
    """Read ``fetch`` (the run, its status, whether a node is running) until the signal
    ``action`` has taken effect; returns the run. ``pr <verb> --wait`` blocks on this.

    Between reads it calls ``pause`` with the seconds left (a :class:`changes.Follower`'s
    ``wait``, woken by the run's next change), else sleeps ``interval``."""
    deadline = time.monotonic() + timeout
    while True:
        run, raw_status, node_running = fetch()
        status = RunStatus(raw_status)
        if action == Action.PAUSE and status in (RunStatus.PAUSED, *TERMINAL):
            return run
        if action == Action.CANCEL and status in TERMINAL:
            return run
        if action == Action.RESUME and (
            status in (*TERMINAL, RunStatus.PAUSED, RunStatus.PAUSING) or node_running
        ):
            return run
        left = deadline - time.monotonic()
        if left < 0:
            raise CommandError(
                f"Timed out after {timeout:g} s waiting for pipeline run {run_id} to {action} "
                f"(it is {status})"
            )
        if pause is not None:
            pause(left)
        else:
            time.sleep(min(interval, left))


class FollowTimeout(Exception):
    """Raised by :func:`follow` when its time is up before the run ends or pauses."""

    def __init__(self, run: PipelineRun) -> None:
        super().__init__(run.pk)
        self.run = run


def worker_notice(run: PipelineRun) -> str | None:
    """The line to print when no worker listens on a queue that a ready node of the run waits in
    (the first such queue, in definition order)."""
    if dispatch.get().inline:
        return None
    ready = run.nodes_in(NodeStatus.QUEUED)
    if not ready:
        return None
    from workers.presence import listening_workers

    definition = plans.get(run.pk).definition
    named: dict[str, bool] = {}  # each queue: whether a node names it (else the default)
    for node_id in ready:
        spec = definition.node(node_id)
        named.setdefault(spec.queue or conf.get("ORCHESTRATOR_DEFAULT_QUEUE"), bool(spec.queue))
    for queue, explicit in named.items():
        if listening_workers(queue) == []:
            start = "orchestrator worker" + (f" -Q {queue}" if explicit else "")
            return f"Waiting for a worker on queue '{queue}'; start one with: {start}"
    return None  # some worker listens on each (and is busy), or the broker could not be asked
