"""Run change notifications: writers announce a change to a run, followers wait for one.

On PostgreSQL a change is announced with ``NOTIFY`` on the run's own channel, inside the
transaction that makes it, so it is delivered when (and only if) that transaction commits; a
follower ``LISTEN``s on the channel from a connection of its own and re-reads the run when woken.
Elsewhere (SQLite) there is nothing to listen to, and a follower polls.

A notification only says "look again": it carries no state, so a lost or spurious one costs a
late or a wasted read, never a wrong display. Followers also re-read now and then without one
(:data:`SAFETY_INTERVAL`), for writes that announce nothing (heartbeats, recovery).
"""

from __future__ import annotations

import time
from contextlib import suppress
from types import TracebackType
from typing import Any

from django.db import connection, transaction

#: Prefix of a run's channel name; the run id follows (``orchestrator_run_42``).
CHANNEL_PREFIX = "orchestrator_run_"
#: An expression announcing a change to the run ``%(run)s``, for SQL that does it in passing.
ANNOUNCE = f"pg_notify('{CHANNEL_PREFIX}' || %(run)s, '')"
ANNOUNCE_SQL = f"SELECT {ANNOUNCE}"
#: Seconds a follower waits for a notification before re-reading the run anyway.
SAFETY_INTERVAL = 1.0


def channel(run_id: int) -> str:
    return f"{CHANNEL_PREFIX}{int(run_id)}"


def supported() -> bool:
    """Whether changes are announced on this database (PostgreSQL); else followers poll."""
    return connection.vendor == "postgresql"


def announce(run_id: int) -> None:
    """Announce a change to the run, delivered when the current transaction commits.

    Call it inside the transaction that makes the change: on its own, a notification is a
    transaction of its own (and a commit to wait for).
    """
    if supported():
        with transaction.atomic(savepoint=False), connection.cursor() as cursor:
            cursor.execute(ANNOUNCE_SQL, {"run": int(run_id)})


class Follower:
    """Waits for changes to one run: woken by its notifications on PostgreSQL, else by a timer.

    Enter it before the first read of the run, so that no change between that read and the
    first :meth:`wait` goes unnoticed.
    """

    def __init__(self, run_id: int, interval: float = 0.2) -> None:
        self.run_id = int(run_id)
        self.interval = interval
        self._listener: Any = None
        #: When to try listening (again); None where changes are not announced.
        self._relisten_at: float | None = None

    @property
    def listening(self) -> bool:
        return self._listener is not None

    def __enter__(self) -> Follower:
        self._relisten_at = 0.0 if supported() else None
        self._start_listening()
        return self

    def _start_listening(self) -> None:
        """Listen on the run's channel if changes are announced here and it is time to try;
        on failure poll meanwhile, and try again :data:`SAFETY_INTERVAL` later."""
        if self._relisten_at is None or time.monotonic() < self._relisten_at:
            return
        try:
            self._listener = _listen(channel(self.run_id))
        except Exception:  # the database is away or refuses: poll, and try again later
            self._listener = None
            self._relisten_at = time.monotonic() + SAFETY_INTERVAL

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._listener is not None:
            with suppress(Exception):  # a broken connection is gone either way
                self._listener.close()
            self._listener = None

    def wait(self, limit: float | None = None) -> bool:
        """Block until the run is announced changed, or for the poll interval when nothing is
        announced here (:data:`SAFETY_INTERVAL` while listening), and never past ``limit``
        seconds; True if woken by a notification."""
        if self._listener is None:
            time.sleep(self.interval if limit is None else min(self.interval, limit))
            # Changes made while nobody listened are seen by the caller's next read.
            self._start_listening()
            return False
        timeout = SAFETY_INTERVAL if limit is None else min(SAFETY_INTERVAL, limit)
        try:
            woken = any(True for _ in self._listener.notifies(timeout=timeout, stop_after=1))
            # Several changes may have been announced meanwhile: one read covers them all.
            for _ in self._listener.notifies(timeout=0):
                pass
        except Exception:  # the listening connection broke: poll until it can listen again
            self.close()
            self._relisten_at = time.monotonic() + SAFETY_INTERVAL
            return False
        return woken


def _listen(name: str) -> Any:
    """A new autocommit connection to the default database, listening on ``name``."""
    import psycopg

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    listener = psycopg.connect(**params, autocommit=True)
    listener.execute(f'LISTEN "{name}"')
    return listener
