"""Live progress: one line per node as it starts and ends, with the elapsed time.

Inline runs report through the engine's signals; queued runs are followed in the database,
which is where workers on other hosts record their nodes: re-read when a change is announced
(:mod:`orchestrator.changes`, PostgreSQL), polled elsewhere.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, redirect_stdout
from typing import Any, TextIO

from django.core.management.base import CommandError

from orchestrator import changes, control, signals
from orchestrator.models import NodeRun, PipelineRun
from orchestrator.state import TERMINAL, NodeStatus, RunStatus

MARKS = {
    NodeStatus.COMPLETED: "✓",
    NodeStatus.FAILED: "✗",
    NodeStatus.CANCELLED: "✗",
    NodeStatus.RETRYING: "↻",
}


class Progress:
    def __init__(self, stream: TextIO, enabled: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled
        self.t0 = time.monotonic()

    def say(self, text: str) -> None:
        if self.enabled:
            elapsed = time.monotonic() - self.t0
            self.stream.write(f"[{elapsed:7.2f}s] {text}\n")
            self.stream.flush()

    def started(self, node_id: str, node_type: str, attempt: int) -> None:
        again = f" (attempt {attempt})" if attempt > 1 else ""
        self.say(f"▶ {node_id} [{node_type}] started{again}")

    def finished(self, node_id: str, status: str, duration_ms: float | None, error: str) -> None:
        took = f" in {duration_ms:.0f}ms" if duration_ms is not None else ""
        why = f": {error}" if error else ""
        self.say(f"{MARKS.get(NodeStatus(status), '•')} {node_id} {str(status).lower()}{took}{why}")


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
    with inline_progress(progress, lambda: run_id), quiet:
        try:
            yield
        except KeyboardInterrupt:
            control.interrupt(run_id)
            raise CommandError(f"Interrupted: pipeline run {run_id} was cancelled.") from None


#: Where following a run stops: it ended, or it waits for a resume.
FOLLOW_UNTIL = TERMINAL | {RunStatus.PAUSED}


def follow(run_id: int, progress: Progress, *, interval: float = 0.2) -> PipelineRun:
    """Follow the run until it ends or pauses, printing node changes; returns the run.

    The run is re-read when a change is announced (PostgreSQL), else every ``interval``."""
    with changes.Follower(run_id, interval) as follower:
        return _follow(run_id, progress, follower)


def _follow(run_id: int, progress: Progress, follower: changes.Follower) -> PipelineRun:
    seen: dict[str, tuple[str, int]] = {}
    while True:
        run = PipelineRun.objects.get(pk=run_id)
        for node in NodeRun.objects.filter(run_id=run_id).order_by("position", "id"):
            key = (node.status, node.attempt)
            if seen.get(node.node_id) == key:
                continue
            before = seen.get(node.node_id)
            seen[node.node_id] = key
            if node.status == NodeStatus.RUNNING:
                progress.started(node.node_id, node.node_type, node.attempt)
                continue
            if before is None and node.status != NodeStatus.QUEUED and node.started_at is not None:
                progress.started(node.node_id, node.node_type, node.attempt)
            if node.status != NodeStatus.QUEUED:
                progress.finished(node.node_id, node.status, node.duration_ms, node.error)
        if RunStatus(run.status) in FOLLOW_UNTIL:
            return run
        follower.wait()
