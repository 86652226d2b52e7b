"""The dispatcher of a long-lived process with no broker (``orchestrator serve``).

Work handed over from any thread (a run started or resumed from the console or the API) is
executed in one background thread of this process, through the same engine as everywhere else.
A job's own follow-on nodes run before the next job is taken, so runs execute one at a time,
each to its end (or its pause) before the next, and no request thread ever executes a node.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from django.db import close_old_connections

if TYPE_CHECKING:
    from orchestrator.definitions import NodeSpec

logger = logging.getLogger(__name__)

Job = tuple[str, int, object, float]


class BackgroundDispatcher:
    """Hands work to this process's run thread; the caller never executes it."""

    #: The caller does not run the work itself: it is queued, here to the run thread.
    inline = False

    def __init__(self) -> None:
        self._jobs: queue.Queue[Job] = queue.Queue()
        self._follow: deque[Job] = deque()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def check(self) -> None:
        return None

    def enqueue_node(self, run_id: int, spec: NodeSpec, countdown: float = 0) -> None:
        self._submit(("node", run_id, spec.id, countdown))

    def enqueue_mirror(self, run_id: int, event_id: int) -> None:
        self._submit(("mirror", run_id, event_id, 0))

    def queue_depths(self, queues: list[str]) -> dict[str, int | None]:
        return {}  # no broker to ask: a recovery pass sends every stalled node again

    def idle(self, timeout: float) -> bool:
        """Wait until every job handed over so far has been executed; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._jobs.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _submit(self, job: Job) -> None:
        if threading.current_thread() is self._thread:
            self._follow.append(job)  # the next node of the run being executed: it goes on now
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name="orchestrator-runs", daemon=True
                )
                self._thread.start()
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            self._follow.append(self._jobs.get())
            try:
                while self._follow:
                    self._execute(self._follow.popleft())
            finally:
                self._jobs.task_done()

    def _execute(self, job: Job) -> None:
        from orchestrator.dispatch import run_job

        kind, run_id = job[0], job[1]
        try:
            run_job(*job)
        except Exception:  # a failure outside any node (the database went away): log, go on
            logger.exception("Background %s job for run %s failed", kind, run_id)
        finally:
            close_old_connections()
