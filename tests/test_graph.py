"""The graph rules, without a database: shape checks (linear in nodes plus edges), joins, skips,
and ``when`` conditions."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import conditions, graph
from orchestrator.state import NodeStatus


def check(links: dict[str, list[str]], **options: Any) -> graph.Report:
    return graph.check(list(links), links, **{"named": list(links), **options})


# --- shape -----------------------------------------------------------------------------------


def test_a_diamond_has_no_problem_and_knows_its_ancestors():
    report = check({"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []})
    assert report.problems == []
    assert report.is_ancestor("a", "d") and report.is_ancestor("b", "d")
    assert not report.is_ancestor("b", "c") and not report.is_ancestor("d", "a")


@pytest.mark.parametrize(
    ("links", "problems"),
    [
        ({"a": ["a"]}, ["Cycle: a -> a"]),
        ({"a": ["b"], "b": ["c"], "c": ["a"]}, ["Cycle: a -> b -> c -> a"]),
        ({"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": ["b"]}, ["Cycle: b -> d -> b"]),
        ({"a": ["b", "b"], "b": []}, ["Node 'a' lists 'b' more than once in next"]),
        ({"a": ["b", "x"], "b": []}, ["Node 'a' references non-existent next: 'x'"]),
        ({"a": [], "b": []}, ["Node 'b' is unreachable from the entry node 'a'"]),
    ],
    ids=["self", "three", "in-a-branch", "duplicate", "unknown", "unreachable"],
)
def test_shape_problems_are_sentences(links, problems):
    assert check(links).problems == problems


def test_two_cycles_are_each_named_once():
    links = {"a": ["b", "c"], "b": ["a"], "c": ["d"], "d": ["c"]}
    assert check(links).problems == ["Cycle: a -> b -> a", "Cycle: c -> d -> c"]


def test_a_fan_out_wider_than_the_limit_is_refused():
    links = {"a": [f"n{i}" for i in range(4)], **{f"n{i}": [] for i in range(4)}}
    assert check(links, max_fanout=4).problems == []
    assert check(links, max_fanout=3).problems == [
        "Node 'a' fans out to 4 nodes; at most 3 are allowed (ORCHESTRATOR_MAX_FANOUT)"
    ]


def test_on_failure_must_name_a_node_reach_its_own_path_and_stay_apart():
    links = {"a": ["b"], "b": [], "alert": ["page"], "page": []}
    assert check(links, on_failure="alert").problems == []
    assert check(links).problems == [
        "Node 'alert' is unreachable from the entry node 'a'",
        "Node 'page' is unreachable from the entry node 'a'",
    ]
    assert check(links, on_failure="nope").problems[0] == (
        "on_failure references non-existent node: 'nope'"
    )
    shared = {"a": ["b"], "b": [], "alert": ["b"]}
    assert check(shared, on_failure="alert").problems == [
        "Node 'b' is reachable from both the entry node 'a' and on_failure 'alert'; "
        "the on_failure path must be separate"
    ]
    lonely = {"a": [], "alert": [], "x": []}
    assert check(lonely, on_failure="alert").problems == [
        "Node 'x' is unreachable from the entry node 'a' or from on_failure 'alert'"
    ]


def _visits(links: dict[str, list[str]]) -> int:
    return check(links, max_fanout=10**6).visits


def test_checking_costs_visits_linear_in_nodes_plus_edges():
    def line(n: int) -> dict[str, list[str]]:
        return {f"n{i}": [f"n{i + 1}"] if i + 1 < n else [] for i in range(n)}

    def ladder(n: int) -> dict[str, list[str]]:
        # Every node leads to the next two: about 2n edges, and many paths between two nodes.
        return {f"n{i}": [f"n{j}" for j in (i + 1, i + 2) if j < n] for i in range(n)}

    def fan(n: int) -> dict[str, list[str]]:
        return {"a": [f"b{i}" for i in range(n)], **{f"b{i}": ["z"] for i in range(n)}, "z": []}

    for shape in (line, ladder, fan):
        small, large = shape(500), shape(5000)
        size = [len(s) + sum(map(len, s.values())) for s in (small, large)]
        assert _visits(small) <= 4 * size[0], shape.__name__
        assert _visits(large) <= 4 * size[1], shape.__name__


def test_a_long_cycle_is_found_without_recursion():
    n = 20_000  # far deeper than Python's recursion limit
    links = {f"n{i}": [f"n{(i + 1) % n}"] for i in range(n)}
    report = check(links)
    assert len(report.problems) == 1 and report.problems[0].startswith("Cycle: n0 -> n1 -> ")


def test_build_gives_successors_predecessors_and_the_failure_path():
    shape = graph.build(
        ["a", "b", "c", "d", "alert", "page"],
        {"a": ["b", "c"], "b": ["d"], "c": ["d"], "alert": ["page"]},
        "alert",
    )
    assert shape.entry == "a"
    assert shape.successors["a"] == ("b", "c") and shape.predecessors["d"] == ("b", "c")
    assert shape.joins() == ["d"]
    assert shape.failure_path == {"alert", "page"}
    assert not shape.is_line()
    assert graph.build(["a", "b"], {"a": ["b"]}, None).is_line()


# --- joins and skips -------------------------------------------------------------------------

#: (awaiting, reached, live) -> (awaiting, reached, status) after one predecessor ended.
ARRIVALS = [
    ((1, 0, True), (0, 1, NodeStatus.QUEUED)),  # the only predecessor completed
    ((1, 0, False), (0, 0, NodeStatus.QUEUED)),  # ready, to be skipped at its claim
    ((2, 0, True), (1, 1, NodeStatus.WAITING)),  # a join: one of two ended
    ((1, 1, False), (0, 1, NodeStatus.QUEUED)),  # the join's last predecessor was skipped
    ((3, 2, True), (2, 3, NodeStatus.WAITING)),
]


@pytest.mark.parametrize(("before", "after"), ARRIVALS)
def test_a_join_waits_for_every_predecessor(before, after):
    assert graph.arrive(*before) == after


@pytest.mark.parametrize(
    ("predecessors", "reached", "reason"),
    [
        (0, 0, None),  # the entry, or the on_failure node
        (1, 1, None),
        (1, 0, "every node before it was skipped"),
        (2, 1, None),  # a join with one completed predecessor runs
        (3, 0, "every node before it was skipped"),
    ],
)
def test_a_node_is_skipped_when_every_predecessor_was(predecessors, reached, reason):
    assert graph.skip_reason(predecessors, reached) == reason


@pytest.mark.parametrize(
    ("outcome", "live"),
    [
        (NodeStatus.COMPLETED, True),
        (NodeStatus.FAILED, True),  # an optional node that failed lets its successors run
        (NodeStatus.SKIPPED, False),
    ],
)
def test_which_ends_reach_the_successors(outcome, live):
    assert graph.is_live(outcome) is live


# --- conditions ------------------------------------------------------------------------------

DATA = {
    "payload": {"severity": "critical", "count": 3, "tags": ["db", "prod"], "flag": True},
    "analyze": {"severity": "warning", "score": 0.7, "hosts": [{"name": "db-1"}]},
}


def cond(path: str, **operator: Any) -> conditions.Condition:
    return conditions.parse({"path": path, **operator}, {"analyze"})[0]


@pytest.mark.parametrize(
    ("path", "operator", "holds"),
    [
        ("payload.severity", {"equals": "critical"}, True),
        ("payload.severity", {"equals": "warning"}, False),
        ("payload.severity", {"not_equals": "info"}, True),
        ("analyze.severity", {"in": ["critical", "warning"]}, True),
        ("analyze.severity", {"not_in": ["critical", "warning"]}, False),
        ("payload.count", {"gt": 2}, True),
        ("payload.count", {"gte": 3}, True),
        ("payload.count", {"lt": 3}, False),
        ("analyze.score", {"lte": 0.7}, True),
        ("payload.severity", {"gt": "b"}, True),  # strings compare as strings
        ("payload.count", {"gt": "2"}, False),  # a number is never compared with a string
        ("payload.flag", {"equals": 1}, False),  # true is not 1
        ("payload.count", {"equals": 3.0}, True),
        ("payload.tags.1", {"equals": "prod"}, True),  # list indexes
        ("analyze.hosts.0.name", {"equals": "db-1"}, True),
        ("payload.tags.5", {"exists": False}, True),
        ("payload.missing", {"exists": True}, False),
        ("payload.missing", {"equals": None}, False),  # missing is not null
        ("payload.missing", {"not_equals": "x"}, True),
        ("payload.missing", {"not_in": ["x"]}, True),
        ("payload.missing", {"gt": 1}, False),
        ("payload", {"exists": True}, True),
    ],
)
def test_each_operator(path, operator, holds):
    condition = cond(path, **operator)
    assert conditions.holds(condition, conditions.resolve(DATA, condition)) is holds


def test_evaluate_says_which_condition_failed_and_what_it_saw():
    both = (cond("payload.count", gte=1), cond("analyze.severity", equals="critical"))
    assert conditions.evaluate(both, DATA) == (
        'condition not met: analyze.severity == "critical" (it is "warning")'
    )
    assert conditions.evaluate(both[:1], DATA) is None
    assert conditions.evaluate((cond("analyze.nope", exists=True),), DATA) == (
        "condition not met: analyze.nope exists (it is missing)"
    )


def test_a_path_names_the_longest_node_id_it_starts_with():
    assert conditions.root_of("payload.x", {"payload.x"}) == "payload"
    assert conditions.root_of("a.b.c", {"a", "a.b"}) == "a.b"
    assert conditions.root_of("failure.error", set()) == "failure"
    assert conditions.root_of("zz.top", {"a"}) is None


@pytest.mark.parametrize(
    ("when", "problems"),
    [
        ({"path": "payload.x", "equals": 1}, []),
        ([{"path": "payload.x", "in": [1]}, {"path": "payload.y", "exists": True}], []),
        ("payload.x == 1", ["must be a condition object or a non-empty list of them"]),
        ([], ["must be a condition object or a non-empty list of them"]),
        (
            {"path": "payload.x", "matches": "a.*"},
            [
                "condition has unknown operator 'matches'; use one of: equals, not_equals, in, "
                "not_in, exists, gt, gte, lt, lte"
            ],
        ),
        (
            {"path": "payload.x"},
            [
                "condition needs exactly one operator of: equals, not_equals, in, not_in, exists, "
                "gt, gte, lt, lte"
            ],
        ),
        (
            {"path": "payload.x", "equals": 1, "in": [1]},
            [
                "condition needs exactly one operator of: equals, not_equals, in, not_in, exists, "
                "gt, gte, lt, lte"
            ],
        ),
        ({"equals": 1}, ["condition needs a path such as 'payload.severity' or 'analyze.summary'"]),
        ([{"path": "p", "in": "abc"}], ["condition #1: in must be a list of values"]),
        ({"path": "p", "exists": "yes"}, ["condition: exists must be true or false"]),
        ({"path": "p", "gt": [1]}, ["condition: gt must be a number or a string"]),
        (["x"], ["condition #1 must be an object with a path and one operator"]),
    ],
)
def test_when_problems(when, problems):
    assert conditions.problems(when) == problems
