"""Handing work to an executor: Celery workers when a broker is configured, else this process.

The engine only calls :func:`get` and the two ``enqueue_*`` methods, so the inline runner and the
workers share every rule about claiming, recording and advancing.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Protocol

from django.utils.module_loading import import_string

from orchestrator import conf

if TYPE_CHECKING:
    from orchestrator.definitions import NodeSpec


class Dispatcher(Protocol):
    inline: bool

    def check(self) -> None:
        """Raise BrokerUnavailable when work handed over now could not be delivered."""

    def enqueue_node(self, run_id: int, spec: NodeSpec, countdown: float = 0) -> None:
        """Arrange for ``spec`` of run ``run_id`` to be executed once, after ``countdown`` s."""

    def enqueue_mirror(self, run_id: int, event_id: int) -> None:
        """Arrange for the transition recorded as ``event_id`` to be mirrored to Clarifai."""

    def queue_depths(self, queues: list[str]) -> dict[str, int | None]:
        """How many messages wait in each queue (None, or absent, where that cannot be told)."""


class InlineDispatcher:
    """The embedded default: nodes run in this process, one after another, without recursion."""

    inline = True

    def __init__(self) -> None:
        self._queue: deque[tuple[str, int, object, float]] = deque()
        self._draining = False

    def check(self) -> None:
        return None

    def enqueue_node(self, run_id: int, spec: NodeSpec, countdown: float = 0) -> None:
        self._queue.append(("node", run_id, spec.id, countdown))
        self._drain()

    def enqueue_mirror(self, run_id: int, event_id: int) -> None:
        self._queue.append(("mirror", run_id, event_id, 0))
        self._drain()

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Keep the work handed over inside the block for :meth:`run_pending`, so that a caller
        can say what it did (a resume) before the rest of the run executes here."""
        held, self._draining = self._draining, True
        try:
            yield
        except BaseException:
            self._queue.clear()
            raise
        finally:
            self._draining = held

    def run_pending(self) -> None:
        """Execute the work kept by :meth:`deferred`."""
        self._drain()

    def queue_depths(self, queues: list[str]) -> dict[str, int | None]:
        return {}  # nothing waits in a queue: work handed over here runs at once

    def _drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            while self._queue:
                run_job(*self._queue.popleft())
        finally:
            self._draining = False
            self._queue.clear()


def run_job(kind: str, run_id: int, target: object, countdown: float) -> None:
    """Execute one piece of work handed over in this process: a node, or a mirror delivery."""
    from orchestrator import engine, mirror

    if countdown:
        time.sleep(countdown)
    if kind == "node":
        engine.execute_node(run_id, str(target))
    else:
        mirror.deliver_with_retries(run_id, int(target))  # type: ignore[call-overload]


@cache
def _load(path: str) -> Dispatcher:
    return import_string(path)()


def get() -> Dispatcher:
    """The dispatcher for this process: Celery's when a broker is configured, else inline
    (``orchestrator serve`` sets ORCHESTRATOR_INLINE_DISPATCHER to its background thread's)."""
    if conf.broker_url():
        return _load(conf.get("ORCHESTRATOR_DISPATCHER"))
    return _load(conf.get("ORCHESTRATOR_INLINE_DISPATCHER"))
