"""Run and node statuses, and the run state machine as one pure table.

Everything that changes a run's status asks :func:`transition` first; nothing else decides
which status follows which.
"""

from __future__ import annotations

from enum import Enum


class RunStatus(str, Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    PAUSING = "PAUSING"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"
    FAILING = "FAILING"  # a required node failed: in-flight nodes stop, then on_failure runs
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    def __str__(self) -> str:
        return self.value


class NodeStatus(str, Enum):
    WAITING = "WAITING"  # a join: some of its predecessors have ended, not all
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"

    def __str__(self) -> str:
        return self.value


class Action(str, Enum):
    """What can happen to a run: operator signals first, then the engine's own steps."""

    PAUSE = "pause"
    CANCEL = "cancel"
    RESUME = "resume"
    START = "start"  # a node is claimed
    ON_FAILURE = "on_failure"  # a node of the on_failure path is claimed
    SETTLE = "settle"  # a node boundary reached while pausing or cancelling
    COMPLETE = "complete"
    FAIL = "fail"

    def __str__(self) -> str:
        return self.value


TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class Outcome(str, Enum):
    """How a control signal lands, besides a change of status."""

    NOOP = "noop"  # already in (or heading to) the asked-for state
    REFUSED = "refused"


S = RunStatus
A = Action

#: (status, action) -> next status, or an Outcome. Pairs absent from the table are refused.
TABLE: dict[tuple[RunStatus, Action], RunStatus | Outcome] = {
    (S.QUEUED, A.PAUSE): S.PAUSED,
    (S.QUEUED, A.CANCEL): S.CANCELLED,
    (S.RUNNING, A.PAUSE): S.PAUSING,
    (S.RUNNING, A.CANCEL): S.CANCELLING,
    (S.PAUSING, A.PAUSE): Outcome.NOOP,
    (S.PAUSING, A.CANCEL): S.CANCELLING,
    (S.PAUSING, A.RESUME): S.RUNNING,
    (S.PAUSED, A.PAUSE): Outcome.NOOP,
    (S.PAUSED, A.CANCEL): S.CANCELLED,
    (S.PAUSED, A.RESUME): S.RUNNING,
    (S.CANCELLING, A.CANCEL): Outcome.NOOP,
    # The engine's own steps.
    (S.QUEUED, A.START): S.RUNNING,
    (S.RUNNING, A.START): S.RUNNING,
    (S.PAUSING, A.SETTLE): S.PAUSED,
    (S.CANCELLING, A.SETTLE): S.CANCELLED,
    (S.RUNNING, A.COMPLETE): S.COMPLETED,
    (S.PAUSING, A.COMPLETE): S.COMPLETED,  # the last node ended: nothing is left to pause before
    (S.CANCELLING, A.COMPLETE): S.CANCELLED,
    # A required node failed: nodes in flight are asked to stop, then on_failure runs, then the
    # run settles to FAILED. A run being cancelled stays so: it settles to CANCELLED.
    (S.RUNNING, A.FAIL): S.FAILING,
    (S.PAUSING, A.FAIL): S.FAILING,
    (S.FAILING, A.FAIL): Outcome.NOOP,
    (S.CANCELLING, A.FAIL): Outcome.NOOP,
    (S.QUEUED, A.FAIL): S.FAILED,  # it could not be handed to any executor
    (S.FAILING, A.ON_FAILURE): S.FAILING,
    (S.FAILING, A.SETTLE): S.FAILED,
    (S.FAILING, A.CANCEL): S.CANCELLING,
}

#: When each control signal is allowed, in the words the CLI prints.
ALLOWED_WHEN: dict[Action, str] = {
    A.PAUSE: "Pause is allowed only when the run is Queued or Running.",
    A.CANCEL: "Cancel is allowed when the run is not already in a terminal state "
    "(Completed, Failed, Cancelled).",
    A.RESUME: "Resume is allowed only when the run is Paused.",
}


class Idle(str, Enum):
    """Which of a run's nodes must have stopped before an engine step may apply to it."""

    OPEN = "open"  # no node ready or running
    RUNNING = "running"  # no node running
    FAILURE_PATH = "failure path"  # no node running, and no node of the on_failure path ready


#: Node statuses of a node that is ready or running.
OPEN_NODES = (NodeStatus.QUEUED, NodeStatus.RUNNING, NodeStatus.RETRYING)
#: Node statuses of a node that has not started and will not once its run has ended.
PENDING_NODES = (NodeStatus.WAITING, NodeStatus.QUEUED, NodeStatus.RETRYING)

#: At a node boundary, the steps a run in each status may take, in order, each once the nodes
#: named have stopped. A failing run starts its on_failure node first, if it has one.
SETTLE_STEPS: dict[RunStatus, tuple[tuple[Action, Idle], ...]] = {
    S.RUNNING: ((A.COMPLETE, Idle.OPEN),),
    S.PAUSING: ((A.COMPLETE, Idle.OPEN), (A.SETTLE, Idle.RUNNING)),
    S.CANCELLING: ((A.SETTLE, Idle.RUNNING),),
    S.FAILING: ((A.SETTLE, Idle.FAILURE_PATH),),
}


def transition(status: RunStatus | str, action: Action) -> RunStatus | Outcome:
    """The status that ``action`` leads to from ``status``, or NOOP / REFUSED."""
    return TABLE.get((RunStatus(status), action), Outcome.REFUSED)


def sources_for(action: Action) -> list[RunStatus]:
    """Every status from which ``action`` changes the status (for compare-and-set filters)."""
    return [s for (s, a), target in TABLE.items() if a == action and isinstance(target, RunStatus)]


def advancing(start: Action) -> tuple[list[RunStatus], list[RunStatus]]:
    """For nodes claimed with ``start`` (START, or ON_FAILURE on the on_failure path): the run
    statuses in which a node that ended moves the graph on (records its successors' arrivals),
    and those of them in which ready successors are handed out at once. A pausing run records
    them, to be handed out on resume; a cancelling or failing one starts nothing more."""
    dispatching = sources_for(start)
    held = [S.PAUSING] if start == A.START else []
    return dispatching + held, dispatching


def is_terminal(status: RunStatus | str) -> bool:
    return RunStatus(status) in TERMINAL


#: Clarifai orchestration status codes (``status_code_pb2``) for each run status.
CLARIFAI_CODES: dict[RunStatus, str] = {
    S.QUEUED: "JOB_QUEUED",
    S.RUNNING: "JOB_RUNNING",
    S.PAUSED: "JOB_PAUSED",
    S.CANCELLED: "JOB_CANCELLED",
    S.COMPLETED: "JOB_COMPLETED",
    S.FAILED: "JOB_FAILED",
}

#: The status each control signal leaves the run in once it has taken effect.
SIGNAL_EFFECTS: dict[Action, RunStatus] = {
    A.PAUSE: S.PAUSED,
    A.CANCEL: S.CANCELLED,
    A.RESUME: S.RUNNING,
}
