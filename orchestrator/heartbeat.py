"""Liveness and limits for a running node: a heartbeat thread and a time limit."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType

from django.db import connection
from django.utils import timezone

from orchestrator import conf
from orchestrator.errors import NodeTimeout
from orchestrator.models import NodeRun
from orchestrator.state import NodeStatus


class Heartbeat:
    """Writes the node run's heartbeat every interval while the node runs, from its own thread,
    so recovery can tell a busy worker from a lost one."""

    def __init__(self, node_run_id: int, attempt: int, interval: float | None = None) -> None:
        self.node_run_id = node_run_id
        self.attempt = attempt
        self.interval = interval or conf.get("ORCHESTRATOR_HEARTBEAT_SECONDS")
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name="orchestrator-heartbeat", daemon=True
        )

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                NodeRun.objects.filter(
                    pk=self.node_run_id, status=NodeStatus.RUNNING, attempt=self.attempt
                ).update(heartbeat=timezone.now())
        finally:
            connection.close()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise NodeTimeout in this thread after ``seconds`` (main thread only; elsewhere the
    node's cooperative checks and the worker's hard time limit enforce it)."""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise NodeTimeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
