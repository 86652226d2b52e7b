"""The run state machine: the pure table in orchestrator/state.py answers as DESIGN.md says."""

from __future__ import annotations

import pytest

from orchestrator.state import (
    ALLOWED_WHEN,
    SETTLE_STEPS,
    TABLE,
    Action,
    Outcome,
    RunStatus,
    advancing,
    is_terminal,
    sources_for,
    transition,
)

REFUSED = "refused"
NOOP = "no-op"

#: The table of DESIGN.md, written out: status -> (pause, cancel, resume).
DESIGN_TABLE = {
    "QUEUED": ("PAUSED", "CANCELLED", REFUSED),
    "RUNNING": ("PAUSING", "CANCELLING", REFUSED),
    "PAUSING": (NOOP, "CANCELLING", "RUNNING"),
    "PAUSED": (NOOP, "CANCELLED", "RUNNING"),
    "CANCELLING": (REFUSED, NOOP, REFUSED),
    "FAILING": (REFUSED, "CANCELLING", REFUSED),
    "COMPLETED": (REFUSED, REFUSED, REFUSED),
    "FAILED": (REFUSED, REFUSED, REFUSED),
    "CANCELLED": (REFUSED, REFUSED, REFUSED),
}
ACTIONS = (Action.PAUSE, Action.CANCEL, Action.RESUME)
PAIRS = [
    (status, action, answers[i])
    for status, answers in DESIGN_TABLE.items()
    for i, action in enumerate(ACTIONS)
]


def _as_word(answer: RunStatus | Outcome) -> str:
    if answer is Outcome.REFUSED:
        return REFUSED
    if answer is Outcome.NOOP:
        return NOOP
    return str(answer)


def test_the_design_table_names_every_run_status():
    assert set(DESIGN_TABLE) == {s.value for s in RunStatus}


@pytest.mark.parametrize(("status", "action", "expected"), PAIRS)
def test_each_status_and_signal_gives_the_design_tables_answer(status, action, expected):
    assert _as_word(transition(status, action)) == expected
    assert _as_word(transition(RunStatus(status), action)) == expected


def test_sources_for_each_signal_are_the_statuses_it_changes():
    assert set(sources_for(Action.PAUSE)) == {RunStatus.QUEUED, RunStatus.RUNNING}
    assert set(sources_for(Action.CANCEL)) == {
        RunStatus.QUEUED,
        RunStatus.RUNNING,
        RunStatus.PAUSING,
        RunStatus.PAUSED,
        RunStatus.FAILING,
    }
    assert set(sources_for(Action.RESUME)) == {RunStatus.PAUSING, RunStatus.PAUSED}


def test_sources_for_leave_out_no_ops():
    assert RunStatus.PAUSING not in sources_for(Action.PAUSE)
    assert RunStatus.PAUSED not in sources_for(Action.PAUSE)
    assert RunStatus.CANCELLING not in sources_for(Action.CANCEL)


def test_a_node_starts_only_on_a_queued_or_running_run():
    assert set(sources_for(Action.START)) == {RunStatus.QUEUED, RunStatus.RUNNING}
    assert transition("QUEUED", Action.START) == RunStatus.RUNNING
    for status in (
        "PAUSING",
        "PAUSED",
        "CANCELLING",
        "FAILING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
    ):
        assert transition(status, Action.START) is Outcome.REFUSED, status


def test_only_the_on_failure_path_starts_on_a_failing_run():
    assert sources_for(Action.ON_FAILURE) == [RunStatus.FAILING]
    assert transition("FAILING", Action.ON_FAILURE) == RunStatus.FAILING


def test_a_node_boundary_settles_only_pausing_cancelling_and_failing():
    assert set(sources_for(Action.SETTLE)) == {
        RunStatus.PAUSING,
        RunStatus.CANCELLING,
        RunStatus.FAILING,
    }
    assert transition("PAUSING", Action.SETTLE) == RunStatus.PAUSED
    assert transition("CANCELLING", Action.SETTLE) == RunStatus.CANCELLED
    assert transition("FAILING", Action.SETTLE) == RunStatus.FAILED


def test_a_required_node_failing_makes_the_run_failing_until_its_nodes_have_stopped():
    assert transition("RUNNING", Action.FAIL) == RunStatus.FAILING
    assert transition("PAUSING", Action.FAIL) == RunStatus.FAILING
    assert transition("FAILING", Action.FAIL) is Outcome.NOOP  # a second branch failing
    assert transition("QUEUED", Action.FAIL) == RunStatus.FAILED  # could not be queued at all


def test_a_run_that_was_asked_to_cancel_never_completes_or_fails():
    assert transition("CANCELLING", Action.COMPLETE) == RunStatus.CANCELLED
    assert transition("CANCELLING", Action.FAIL) is Outcome.NOOP
    assert transition("CANCELLING", Action.SETTLE) == RunStatus.CANCELLED


def test_the_last_node_ending_while_pausing_completes_the_run():
    assert transition("PAUSING", Action.COMPLETE) == RunStatus.COMPLETED


def test_nothing_leaves_a_terminal_status():
    for status in ("COMPLETED", "FAILED", "CANCELLED"):
        assert is_terminal(status)
        for action in Action:
            assert transition(status, action) is Outcome.REFUSED, (status, action)
    assert not any(is_terminal(s) for s in ("QUEUED", "RUNNING", "PAUSING", "PAUSED"))
    assert not is_terminal("CANCELLING") and not is_terminal("FAILING")


#: When a run settles at a node boundary: status -> the steps, each once the nodes named stopped.
SETTLE_TABLE = [
    ("RUNNING", [("complete", "open")]),
    ("PAUSING", [("complete", "open"), ("settle", "running")]),
    ("CANCELLING", [("settle", "running")]),
    ("FAILING", [("settle", "failure path")]),
]


@pytest.mark.parametrize(("status", "steps"), SETTLE_TABLE)
def test_settle_steps_wait_for_the_right_nodes(status, steps):
    assert [(str(a), i.value) for a, i in SETTLE_STEPS[RunStatus(status)]] == steps
    for action, _ in SETTLE_STEPS[RunStatus(status)]:
        assert isinstance(transition(status, action), RunStatus)


def test_no_settle_step_for_a_queued_paused_or_ended_run():
    assert set(SETTLE_STEPS) == {"RUNNING", "PAUSING", "CANCELLING", "FAILING"}


@pytest.mark.parametrize(
    ("start", "moving", "dispatching"),
    [
        (Action.START, {"QUEUED", "RUNNING", "PAUSING"}, {"QUEUED", "RUNNING"}),
        (Action.ON_FAILURE, {"FAILING"}, {"FAILING"}),
    ],
)
def test_which_runs_move_their_graph_on_and_hand_out_ready_nodes(start, moving, dispatching):
    records, hands_out = advancing(start)
    assert set(records) == moving and set(hands_out) == dispatching


def test_every_table_entry_goes_to_a_real_status_or_a_no_op():
    for (status, action), target in TABLE.items():
        assert isinstance(status, RunStatus) and isinstance(action, Action)
        assert isinstance(target, RunStatus) or target is Outcome.NOOP
        if target is Outcome.NOOP:
            assert action in (*ACTIONS, Action.FAIL)


def test_allowed_when_texts_are_the_ones_operators_read():
    assert ALLOWED_WHEN == {
        Action.PAUSE: "Pause is allowed only when the run is Queued or Running.",
        Action.CANCEL: "Cancel is allowed when the run is not already in a terminal state "
        "(Completed, Failed, Cancelled).",
        Action.RESUME: "Resume is allowed only when the run is Paused.",
    }


def test_an_unknown_status_is_an_error_not_a_refusal():
    with pytest.raises(ValueError):
        transition("SLEEPING", Action.PAUSE)
