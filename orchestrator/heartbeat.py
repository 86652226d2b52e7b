"""Liveness and limits for a running node: a heartbeat thread and a time limit."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType

from django.db import Error, connection
from django.utils import timezone

from orchestrator import conf, outages, statements
from orchestrator.errors import NodeTimeout
from orchestrator.models import NodeRun
from orchestrator.state import NodeStatus


class _Beater:
    """One thread per process writes the heartbeat of every node this process is running, so
    that recovery can tell a busy worker from a lost one (and no node pays for a thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._beating: dict[int, int] = {}  # node run id -> attempt
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def add(self, node_run_id: int, attempt: int) -> None:
        with self._lock:
            self._beating[node_run_id] = attempt
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="orchestrator-heartbeat", daemon=True
                )
                self._thread.start()

    def remove(self, node_run_id: int) -> None:
        with self._lock:
            self._beating.pop(node_run_id, None)

    def running(self, node_run_id: int) -> bool:
        with self._lock:
            return node_run_id in self._beating

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(conf.get("ORCHESTRATOR_HEARTBEAT_SECONDS"))
                with self._lock:
                    beating = dict(self._beating)
                if not beating:
                    continue
                try:
                    self._beat(beating)
                except Error as exc:
                    # The database went away: beat again next time, on a new connection.
                    if not outages.transient(exc):
                        raise
                    outages.drop_connection()
        finally:
            connection.close()

    def _beat(self, beating: dict[int, int]) -> None:
        now = timezone.now()
        # A lost heartbeat makes a node look stale sooner, at worst run again: no flush.
        with statements.unflushed():
            for node_run_id, attempt in beating.items():
                NodeRun.objects.filter(
                    pk=node_run_id, status=NodeStatus.RUNNING, attempt=attempt
                ).update(heartbeat=now)
        connection.close_if_unusable_or_obsolete()

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._beating = {}
        self._thread = None


_beater = _Beater()
os.register_at_fork(after_in_child=_beater.reset_after_fork)


def running_here(node_run_id: int) -> bool:
    """Whether this process is executing the node run now."""
    return _beater.running(node_run_id)


class Heartbeat:
    """While the block runs, the node run's heartbeat is written every heartbeat interval."""

    def __init__(self, node_run_id: int, attempt: int) -> None:
        self.node_run_id = node_run_id
        self.attempt = attempt

    def __enter__(self) -> Heartbeat:
        _beater.add(self.node_run_id, self.attempt)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _beater.remove(self.node_run_id)


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
