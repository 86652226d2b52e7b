"""Who may take over a node that is already RUNNING: a pure rule, applied by :mod:`claims`.

A delivery of a node finds it held by another claim when Celery re-delivered the message (the
pool process running it was killed), when the database dropped this process's own claim answer,
or when the message is a duplicate. The rule:

======================================  =========  ==============================================
the node's holder                       verdict    why
======================================  =========  ==============================================
this process, still running it          WAIT       a duplicate message: try again later
this process, no longer running it      REUSE      its own claim (the database lost the answer)
heartbeat stale                         TAKE_OVER  the holder went silent: a lost worker
same host, process gone (or pid reused) TAKE_OVER  a lost worker, known at once
same host, process alive                WAIT       it is running it: try again later
another host, heartbeat fresh           WAIT       it may be running it: try again later
unknown (no holder recorded)            WAIT       only the heartbeat can tell
======================================  =========  ==============================================

A delivery that waits never drops the only message: it is sent again to arrive just after the
heartbeat would go stale (:func:`countdown`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from orchestrator.holders import Holder


class Verdict(str, Enum):
    TAKE_OVER = "take over"  # the holder is gone: claim it again here, as a new attempt
    REUSE = "reuse"  # the holder is this very process: carry on with its claim
    WAIT = "wait"  # a live holder may be running it: deliver this message again later

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str
    #: Whether the holder's worker was lost (counted towards ORCHESTRATOR_MAX_WORKER_LOSSES).
    lost: bool = False


def decide(
    holder: Holder | None,
    me: Holder,
    heartbeat_age: float | None,
    timeout: float,
    *,
    running_here: bool,
    alive: Callable[[Holder], bool],
) -> Decision:
    """What a delivery running as ``me`` may do with a node RUNNING under ``holder``.

    ``heartbeat_age`` is the seconds since its last heartbeat (None: never beat), ``timeout``
    the age at which a heartbeat is stale, ``running_here`` whether this process is executing
    that node right now, and ``alive`` tells whether a holder on this host still runs (it is
    called only for one).
    """
    if running_here:
        return Decision(Verdict.WAIT, "this process is running it")
    if heartbeat_age is None or heartbeat_age >= timeout:
        return Decision(Verdict.TAKE_OVER, "its heartbeat is stale", lost=True)
    if holder is None:
        return Decision(Verdict.WAIT, "its holder is unknown; its heartbeat is fresh")
    if holder.same_process(me):
        return Decision(Verdict.REUSE, "this process holds its claim")
    if holder.same_host(me):
        if not alive(holder):
            return Decision(
                Verdict.TAKE_OVER, f"its process {holder.describe()} is gone", lost=True
            )
        return Decision(Verdict.WAIT, f"its process {holder.describe()} is alive")
    return Decision(Verdict.WAIT, f"{holder.describe()} on another host beats for it")


def countdown(heartbeat_age: float | None, timeout: float, interval: float) -> float:
    """Seconds a waiting delivery waits: until just after the holder's heartbeat would be stale
    if it stopped now (one heartbeat interval late), and at least one second."""
    age = heartbeat_age or 0.0
    return max(1.0, timeout - age + interval)


def losses_message(losses: int) -> str:
    """The node's error once its worker was lost ``losses`` times (the limit)."""
    return f"its worker was lost {losses} times while running it"
