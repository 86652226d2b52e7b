"""Live progress: one line per node as it starts and ends, with the elapsed time.

Inline runs report through the engine's signals; queued runs are followed by polling the
database, which is where workers on other hosts record their nodes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext, redirect_stdout
from typing import Any, TextIO, TypeVar

from django.core.management.base import CommandError

from orchestrator import control, signals
from orchestrator.models import NodeRun, PipelineRun
from orchestrator.state import TERMINAL, Action, NodeStatus, RunStatus

T = TypeVar("T")

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
    """Poll the run until it ends or pauses, printing node changes; returns the run."""
    seen: dict[str, tuple[str, int]] = {}
    while True:
        run = PipelineRun.objects.get(pk=run_id)
        report(seen, NodeRun.objects.filter(run_id=run_id).order_by("position", "id"), progress)
        if RunStatus(run.status) in FOLLOW_UNTIL:
            return run
        time.sleep(interval)


def report(seen: dict[str, tuple[str, int]], nodes: Iterable[NodeRun], progress: Progress) -> None:
    """Print what changed in ``nodes`` since ``seen`` (updated): starts, ends and retries."""
    for node in nodes:
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


def wait_for_effect(
    run_id: int,
    action: Action,
    timeout: float,
    fetch: Callable[[], tuple[T, str, bool]],
    *,
    interval: float = 0.1,
) -> T:
    """Poll ``fetch`` (the run, its status, whether a node is running) until the signal
    ``action`` has taken effect; returns the run. ``pr <verb> --wait`` blocks on this."""
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
        if time.monotonic() > deadline:
            raise CommandError(
                f"Timed out after {timeout:g} s waiting for pipeline run {run_id} to {action} "
                f"(it is {status})"
            )
        time.sleep(interval)
