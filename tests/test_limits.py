"""Hostile input as pure rules: JSON the databases refuse, run ids, numeric options in range,
definition size limits, and graph checks whose work grows linearly with the definition."""

from __future__ import annotations

import json
import math

import pytest

from orchestrator import definitions, limits, runref
from orchestrator.errors import InputError, UsageError


def chain(count: int, **node: object) -> dict:
    """A valid definition of ``count`` wait nodes linked in order."""
    return {
        "name": "chain",
        "nodes": [
            {
                "id": f"n{i}",
                "type": "wait",
                "config": {"seconds": 0},
                "next": f"n{i + 1}" if i + 1 < count else None,
                **node,
            }
            for i in range(count)
        ],
    }


# --- JSON -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"a": NaN}', "NaN is not a number JSON allows"),
        ('{"a": Infinity}', "Infinity is not a number JSON allows"),
        ('{"a": -Infinity}', "-Infinity is not a number JSON allows"),
        ('{"a": 1e400}', "1e400 is too large a number"),
        ('{"a": "x\\u0000y"}', "the text at $.a contains a NUL character (\\u0000)"),
        ('{"a": "\\ud800"}', "the text at $.a is not valid Unicode (lone surrogate \\ud800)"),
        ('{"\\u0000": 1}', "a key at $ contains a NUL character (\\u0000)"),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        ("[" * 101 + "]" * 101, "nested more than 100 levels deep"),
        ('{"a": ' + "1" * 4301 + "}", "an integer has too many digits"),
        ("{", "Expecting property name enclosed in double quotes"),
    ],
)
def test_json_the_databases_refuse_is_one_line_naming_why(text: str, reason: str) -> None:
    with pytest.raises(InputError) as raised:
        limits.loads(text, "--payload")
    message = str(raised.value)
    assert message.startswith("Invalid JSON in --payload: ")
    assert reason in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "value",
    [{"a": [1, 2.5, True, None, "ü"]}, [[[[]]]], "text", 10**4000, {"deep": [[[[[[1]]]]]]}],
)
def test_ordinary_json_is_accepted(value: object) -> None:
    assert limits.loads(json.dumps(value), "x") == value
    assert limits.json_problem(value) is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"a": math.nan}, "the number at $.a is nan, not a finite number"),
        ([math.inf], "the number at $[0] is inf, not a finite number"),
        ({1: 2}, "a key at $ is not a string"),
        ({"a": {1, 2}}, "the value at $.a is a set, not JSON"),
    ],
)
def test_values_built_in_python_are_checked_too(value: object, problem: str) -> None:
    assert limits.json_problem(value) == problem


# --- run ids --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "scope", "local", "clarifai"),
    [
        ("12", None, 12, "12"),
        ("abc-12_x.y", None, None, "abc-12_x.y"),
        ("0", None, None, "0"),  # not a row id; may still be a Clarifai id
        (str(2**63), None, None, str(2**63)),  # beyond every row id
        ("12", "local", 12, None),
        ("12", "remote", None, "12"),
    ],
)
def test_a_run_id_is_a_positive_ascii_number_or_a_clarifai_id(
    text: str, scope: str | None, local: int | None, clarifai: str | None
) -> None:
    assert runref.parse(text, scope) == runref.RunRef(text, local, clarifai)


@pytest.mark.parametrize(
    ("text", "scope"),
    [
        ("", None),
        (" ", None),
        ("\t\n", None),
        (" 12", None),
        ("\uff11\uff12", None),  # full-width digits are not run 12
        ("12\x00", None),
        ("a b", None),
        ("x" * 201, None),
        ("abc", "local"),
        ("-1", "local"),
        ("a b", "remote"),
    ],
)
def test_anything_else_is_a_usage_error(text: str, scope: str | None) -> None:
    with pytest.raises(UsageError) as raised:
        runref.parse(text, scope)
    assert str(raised.value).startswith("Invalid run id ")
    assert "\n" not in str(raised.value)


# --- numeric options ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "key", "value", "problem"),
    [
        ("node", "timeout_seconds", math.nan, "is nan, not a finite number"),
        ("defaults", "timeout_seconds", math.inf, "is inf, not a finite number"),
        ("node", "retry_backoff_seconds", math.nan, "is nan, not a finite number"),
        ("node", "retries", 10**30, "retries must be at most 20 (ORCHESTRATOR_MAX_RETRIES)"),
        ("defaults", "retry_backoff_seconds", 1e12, "must be at most 21600"),
        ("node", "queue", "q" * 201, "queue is 201 characters long; the limit is 200"),
    ],
)
def test_every_numeric_option_is_finite_and_in_range(
    where: str, key: str, value: object, problem: str
) -> None:
    data = chain(2)
    if where == "node":
        data["nodes"][0][key] = value
    else:
        data["defaults"] = {key: value}
    problems = definitions.validate(data)
    assert len(problems) == 1 and problem in problems[0], problems


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"seconds": math.nan}, "is nan, not a finite number"),
        ({"seconds": 10**9}, "seconds must be at most 21600 (ORCHESTRATOR_MAX_NODE_TIMEOUT)"),
        ({"seconds": -1}, "seconds must be a non-negative number"),
        ({"fail_attempts": 2**40}, "fail_attempts must be a non-negative integer"),
    ],
)
def test_a_wait_of_nan_or_forever_is_refused(config: dict, problem: str) -> None:
    data = chain(1)
    data["nodes"][0]["config"] = config
    problems = definitions.validate(data)
    assert len(problems) == 1 and problem in problems[0], problems


# --- names and sizes ------------------------------------------------------------------------------


def test_names_and_node_ids_longer_than_the_records_hold_are_refused() -> None:
    data = chain(2)
    data["name"] = "p" * 201
    data["nodes"][1]["id"] = "n" * 201
    data["nodes"][0]["next"] = "n" * 201
    assert definitions.validate(data) == [
        "name is 201 characters long; the limit is 200",
        "Node #2 id is 201 characters long; the limit is 200",
        f"Node 'n0' references non-existent next: '{'n' * 201}'",
    ]
    with pytest.raises(definitions.DefinitionError, match="Pipeline name is 201 characters"):
        definitions.parse(chain(1), name="x" * 201)


def test_size_limits_are_checked_before_any_graph_work(settings) -> None:
    before = definitions.graph_work.visits
    assert definitions.validate(chain(1001)) == [
        "Definition has 1001 nodes; the limit is 1000 (ORCHESTRATOR_MAX_NODES)"
    ]
    big = chain(2)
    big["description"] = "x" * (1024 * 1024)
    [problem] = definitions.validate(big)
    assert problem.startswith("Definition is 10") and "the limit is 1048576 bytes" in problem
    deep = chain(2)
    deep["nodes"][0]["config"] = {"a": json.loads("[" * 200 + "]" * 200)}
    [problem] = definitions.validate(deep)
    assert "nested more than 100 levels deep" in problem
    assert definitions.graph_work.visits == before
    settings.ORCHESTRATOR_MAX_NODES = 5
    assert definitions.validate(chain(6))[0].startswith("Definition has 6 nodes; the limit is 5")


def test_graph_checks_grow_linearly_with_nodes_and_edges(settings) -> None:
    settings.ORCHESTRATOR_MAX_NODES = 10**5
    settings.ORCHESTRATOR_MAX_DEFINITION_BYTES = 10**8

    def visits(data: dict) -> int:
        before = definitions.graph_work.visits
        definitions.validate(data)
        return definitions.graph_work.visits - before

    for count in (100, 1000, 5000):
        # One visit per node and one per edge followed, in each of the two passes at most.
        assert visits(chain(count)) <= 2 * (count + count - 1)
    # A chain whose last node loops back to the first, and one in reverse order (every node
    # but the entry unreachable) stay linear too: the former quadratic walk did not.
    looped = chain(5000)
    looped["nodes"][-1]["next"] = "n0"
    assert visits(looped) <= 2 * (5000 + 5000)
    reverse = {"nodes": [{**n} for n in reversed(chain(5000)["nodes"])]}
    assert visits(reverse) <= 2 * (5000 + 5000)
    assert definitions.validate(looped) == [
        "Cycle: " + " -> ".join([f"n{i}" for i in range(5000)] + ["n0"])
    ]
