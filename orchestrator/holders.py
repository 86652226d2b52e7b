"""Who holds a claimed node: this process's identity, and whether a holder on this host lives.

A holder is named by its host, its pid namespace (a pid names one process only within one
namespace: containers sharing a host name do not share pids), its pid, and its start time (a pid
reused by a later process has another start time).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

from orchestrator import events

SEPARATOR = "|"


@dataclass(frozen=True)
class Holder:
    """The process holding a node's claim."""

    host: str
    namespace: str
    pid: int
    started: float

    def token(self) -> str:
        """The form stored on the node run."""
        return SEPARATOR.join((self.host, self.namespace, str(self.pid), f"{self.started:.2f}"))

    @classmethod
    def parse(cls, token: str) -> Holder | None:
        """The holder a stored token names, or None for an empty or foreign one."""
        parts = token.rsplit(SEPARATOR, 3)
        if len(parts) != 4:
            return None
        host, namespace, pid, started = parts
        try:
            return cls(host, namespace, int(pid), float(started))
        except ValueError:
            return None

    def same_host(self, other: Holder) -> bool:
        """Whether ``other`` runs where this process can see its pid."""
        return self.host == other.host and self.namespace == other.namespace

    def same_process(self, other: Holder) -> bool:
        return (
            self.same_host(other)
            and self.pid == other.pid
            and _same_start(self.started, other.started)
        )

    def describe(self) -> str:
        """``host:pid``, as the node run's worker column shows it."""
        return f"{self.host}:{self.pid}"


def _same_start(one: float, other: float) -> bool:
    # Start times are stored to the hundredth of a second; the kernel counts in clock ticks.
    return abs(one - other) < 0.05


def _namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:  # no /proc (not Linux): the host name alone must tell hosts apart
        return ""


_current: tuple[int, Holder] | None = None


def current() -> Holder:
    """This process as a holder (computed once per process, again after a fork)."""
    global _current
    pid = os.getpid()
    if _current is None or _current[0] != pid:
        started = psutil.Process(pid).create_time()
        _current = (pid, Holder(events.hostname(), _namespace(), pid, round(started, 2)))
    return _current[1]


def is_alive(holder: Holder) -> bool:
    """Whether the process ``holder`` names still runs (it must be on this host)."""
    try:
        process = psutil.Process(holder.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return _same_start(process.create_time(), holder.started)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # cannot tell: take it to be alive (its heartbeat will tell)
        return True
