"""A named lease that one process across all hosts holds at a time (the recovery pass's).

On PostgreSQL it is a session advisory lock, released by the server when the holder's
connection ends, however the holder ends. On SQLite, whose writers share one file on one host,
it is an exclusive ``flock`` on a file beside the database, released by the kernel when the
holder exits. Elsewhere every caller gets it (the passes are compare-and-set, so that is safe,
only less tidy).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Iterator

from django.db import Error, connection

from orchestrator import outages


def lock_key(name: str) -> int:
    """The signed 64-bit advisory lock key for ``name``."""
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


def _try_postgres(name: str) -> object | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock_key(name)])
        return name if cursor.fetchone()[0] else None


def _release_postgres(token: object) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_key(str(token))])
    except Error:  # the session is gone, and its lock with it
        outages.drop_connection()


def _lock_path(name: str) -> str | None:
    database = str(connection.settings_dict["NAME"])
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return f"{database}.{name}.lock"


def _try_file(name: str) -> object | None:
    path = _lock_path(name)
    if path is None:
        return name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _release_file(token: object) -> None:
    if isinstance(token, int):
        # Unlock before closing: a process forked meanwhile shares the descriptor.
        fcntl.flock(token, fcntl.LOCK_UN)
        os.close(token)


def _try(name: str) -> object | None:
    if connection.vendor == "postgresql":
        return _try_postgres(name)
    if connection.vendor == "sqlite":
        return _try_file(name)
    return name


def _release(token: object) -> None:
    if connection.vendor == "postgresql":
        _release_postgres(token)
    else:
        _release_file(token)


@contextlib.contextmanager
def held(name: str, wait: float = 0.0, poll: float = 0.1) -> Iterator[bool]:
    """Hold the lease ``name`` for the block if it can be had within ``wait`` seconds; yields
    whether it is held."""
    deadline = time.monotonic() + wait
    token = _try(name)
    while token is None and time.monotonic() < deadline:
        time.sleep(poll)
        token = _try(name)
    try:
        yield token is not None
    finally:
        if token is not None:
            _release(token)
