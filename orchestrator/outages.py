"""Database outages inside the engine: a lost or refused connection is not a node failure.

A step of the engine (reading the plan, claiming, recording the outcome) that fails because the
connection was lost or refused is run again on a new connection, with backoff, for up to
``ORCHESTRATOR_DB_RETRY_SECONDS``; whatever the step needs (the node's computed result) is kept
in memory meanwhile. Reads that only inform (``cancel_requested()``, heartbeats) skip a beat
instead. Any other database error is a real error and is raised at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import Error, InterfaceError, OperationalError, connection

from orchestrator import conf

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: SQLite reports a busy database as an OperationalError too; other OperationalErrors there
#: (a missing table, a read-only file) are not outages.
SQLITE_TRANSIENT = ("locked", "busy", "disk i/o")


def transient(exc: BaseException, vendor: str | None = None) -> bool:
    """Whether ``exc`` says the database is away (a lost, refused or busy connection)."""
    vendor = vendor or connection.vendor
    if isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    if vendor == "sqlite":
        return any(word in str(exc).lower() for word in SQLITE_TRANSIENT)
    return True


def backoff(attempt: int, first: float = 0.2, cap: float = 10.0) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...): doubling from ``first``, capped."""
    return min(cap, first * (2 ** (attempt - 1)))


def drop_connection() -> None:
    """Close this thread's connection, broken or not; the next query opens a new one."""
    try:
        connection.close()
    except Error:  # closing a dead connection can fail too; it is gone either way
        connection.connection = None


def retrying(step: Callable[..., T], *args: object, what: str, **kwargs: object) -> T:
    """``step(*args, **kwargs)``, run again with backoff while the database is away.

    Only outside a transaction: a step that fails inside one is retried whole by its caller.
    Gives up (raising the last error) after ``ORCHESTRATOR_DB_RETRY_SECONDS``.
    """
    deadline = time.monotonic() + float(conf.get("ORCHESTRATOR_DB_RETRY_SECONDS"))
    attempt = 0
    while True:
        try:
            return step(*args, **kwargs)
        except Error as exc:
            if connection.in_atomic_block or not transient(exc):
                raise
            attempt += 1
            delay = backoff(attempt)
            if time.monotonic() + delay > deadline:
                raise
            logger.warning(
                "Database unavailable while %s (%s); retrying in %.1f s",
                what,
                str(exc).strip() or type(exc).__name__,
                delay,
            )
            drop_connection()
            time.sleep(delay)
