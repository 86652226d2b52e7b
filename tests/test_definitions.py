"""Definitions: validate() reports every problem as a sentence; parse() applies the defaults."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator import definitions
from orchestrator.builtin import BUILTIN_DEFINITION
from orchestrator.errors import DefinitionError, OrchestratorError

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "orchestrator" / "samples"
SAMPLE_FILES = sorted(SAMPLES_DIR.glob("*.json"))


def wait(node_id: str, next: str | None = None, **options: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"id": node_id, "type": "wait", "config": {"seconds": 0}, **options}
    if next is not None:
        node["next"] = next
    return node


def pipeline(*nodes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "test", "nodes": list(nodes), **extra}


def problems_of(*nodes: dict[str, Any], **extra: Any) -> list[str]:
    return definitions.validate(pipeline(*nodes, **extra))


# valid definitions


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.stem)
def test_shipped_samples_are_valid(path: Path) -> None:
    assert definitions.validate(json.loads(path.read_text())) == []


def test_at_least_the_health_check_sample_ships() -> None:
    assert "health-check" in [p.stem for p in SAMPLE_FILES]


def test_builtin_definition_is_valid() -> None:
    assert definitions.validate(BUILTIN_DEFINITION) == []


def test_a_single_node_without_next_is_valid() -> None:
    assert problems_of(wait("only")) == []


def test_null_next_ends_the_pipeline() -> None:
    assert problems_of(wait("a", "b"), {**wait("b"), "next": None}) == []


def test_every_per_node_option_with_a_good_value_is_valid() -> None:
    node = wait(
        "a",
        retries=2,
        retry_backoff_seconds=0.5,
        timeout_seconds=10,
        required=False,
        queue="gpu",
        description="a node",
    )
    assert problems_of(node) == []


# each problem alone


def test_definition_that_is_not_an_object() -> None:
    assert definitions.validate([wait("a")]) == ["Definition must be a JSON object"]


@pytest.mark.parametrize("nodes", [None, [], {"a": 1}], ids=["missing", "empty", "object"])
def test_definition_without_a_node_list(nodes: Any) -> None:
    data = {"name": "x"} if nodes is None else {"name": "x", "nodes": nodes}
    assert definitions.validate(data) == ["Definition must have a non-empty 'nodes' list"]


def test_node_that_is_not_an_object() -> None:
    assert problems_of(wait("a"), "b") == ["Node #2 must be an object"]


@pytest.mark.parametrize("node_id", [None, "", "  ", 7], ids=["absent", "empty", "blank", "int"])
def test_missing_id(node_id: Any) -> None:
    node = {"type": "wait", "config": {"seconds": 0}}
    if node_id is not None:
        node["id"] = node_id
    assert problems_of(wait("a"), node) == ["Node #2 has no id"]


def test_duplicate_id() -> None:
    assert problems_of(wait("a", "b"), wait("b"), wait("b")) == ["Duplicate node id: 'b'"]


@pytest.mark.parametrize("node_type", [None, "", 3], ids=["absent", "empty", "int"])
def test_missing_type(node_type: Any) -> None:
    node: dict[str, Any] = {"id": "a"}
    if node_type is not None:
        node["type"] = node_type
    assert problems_of(node) == ["Node 'a' has no type"]


def test_unknown_type() -> None:
    assert problems_of({"id": "analyze", "type": "ai"}) == ["Node 'analyze' has unknown type: ai"]


def test_next_to_a_missing_node() -> None:
    assert problems_of(wait("notify", "missing")) == [
        "Node 'notify' references non-existent next: 'missing'"
    ]


def test_next_that_is_not_a_string() -> None:
    assert problems_of(wait("a", 5)) == [  # type: ignore[arg-type]
        "Node 'a' next must be a node id, a list of node ids, or null"
    ]


def test_node_pointing_at_itself_is_a_cycle() -> None:
    assert problems_of(wait("a", "a")) == ["Cycle: a -> a"]


def test_cycle_back_to_the_entry() -> None:
    assert problems_of(wait("a", "b"), wait("b", "c"), wait("c", "a")) == [
        "Cycle: a -> b -> c -> a"
    ]


def test_cycle_after_the_entry_is_reported_once() -> None:
    assert problems_of(wait("a", "b"), wait("b", "c"), wait("c", "b")) == ["Cycle: b -> c -> b"]


def test_unreachable_node() -> None:
    assert problems_of(wait("a"), wait("b")) == ["Node 'b' is unreachable from the entry node 'a'"]


def test_every_node_after_an_unreachable_one_is_unreachable_too() -> None:
    assert problems_of(wait("a", "c"), wait("b", "c"), wait("c")) == [
        "Node 'b' is unreachable from the entry node 'a'"
    ]
    assert problems_of(wait("a"), wait("b", "c"), wait("c")) == [
        "Node 'b' is unreachable from the entry node 'a'",
        "Node 'c' is unreachable from the entry node 'a'",
    ]


def test_unreachable_cycle_reports_the_cycle_and_its_nodes() -> None:
    assert problems_of(wait("a"), wait("b", "c"), wait("c", "b")) == [
        "Cycle: b -> c -> b",
        "Node 'b' is unreachable from the entry node 'a'",
        "Node 'c' is unreachable from the entry node 'a'",
    ]


@pytest.mark.parametrize(
    ("option", "value", "sentence"),
    [
        ("retries", -1, "must be a non-negative integer"),
        ("retries", 1.5, "must be a non-negative integer"),
        ("retries", True, "must be a non-negative integer"),
        ("retries", "2", "must be a non-negative integer"),
        ("retry_backoff_seconds", -0.1, "must be a non-negative number"),
        ("retry_backoff_seconds", False, "must be a non-negative number"),
        ("timeout_seconds", 0, "must be a positive number"),
        ("timeout_seconds", -5, "must be a positive number"),
        ("timeout_seconds", "60", "must be a positive number"),
        # Above the limit the broker's visibility timeout is built for.
        ("timeout_seconds", 21601, "must be at most 21600 (ORCHESTRATOR_MAX_NODE_TIMEOUT)"),
        ("required", "yes", "must be true or false"),
        ("required", 1, "must be true or false"),
        ("queue", "", "must be a non-empty string"),
        ("queue", "   ", "must be a non-empty string"),
        ("queue", 3, "must be a non-empty string"),
    ],
)
def test_bad_per_node_option(option: str, value: Any, sentence: str) -> None:
    assert problems_of(wait("a", **{option: value})) == [f"Node 'a': {option} {sentence}"]


def test_unknown_per_node_option() -> None:
    assert problems_of(wait("a", retry=3)) == ["Node 'a' has unknown option: retry"]


def test_config_that_is_not_an_object() -> None:
    assert problems_of({"id": "a", "type": "wait", "config": [1]}) == [
        "Node 'a' config must be an object"
    ]


@pytest.mark.parametrize(
    ("defaults", "expected"),
    [
        ([], ["defaults must be an object"]),
        ({"retries": -1}, ["defaults: retries must be a non-negative integer"]),
        ({"timeout_seconds": 0}, ["defaults: timeout_seconds must be a positive number"]),
        ({"required": "no"}, ["defaults: required must be true or false"]),
        ({"retires": 1}, ["defaults has unknown option: retires"]),
    ],
)
def test_bad_defaults(defaults: Any, expected: list[str]) -> None:
    assert problems_of(wait("a"), defaults=defaults) == expected


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (
            {"id": "w", "type": "wait", "config": {"seconds": -1}},
            "Node 'w' (wait): seconds must be a non-negative number",
        ),
        (
            {"id": "n", "type": "notify", "config": {"driver": "pager"}},
            "Node 'n' (notify): driver must be one of: ",
        ),
        (
            {"id": "n", "type": "notify", "config": {"driver": "webhook"}},
            "Node 'n' (notify): webhook driver needs url, an http:// or https:// URL",
        ),
        (
            {"id": "i", "type": "intelligence", "config": {"provider": "oracle"}},
            "Node 'i' (intelligence): provider must be one of: ",
        ),
        (
            {"id": "c", "type": "context", "config": {"include": []}},
            "Node 'c' (context): include must be a non-empty list of: ",
        ),
        (
            {"id": "g", "type": "ingest", "config": {"format": "nagios"}},
            "Node 'g' (ingest): format must be one of: auto, ",
        ),
    ],
    ids=["wait", "notify-driver", "notify-webhook", "intelligence", "context", "ingest"],
)
def test_node_types_own_config_check_is_reported(node: dict[str, Any], expected: str) -> None:
    (problem,) = problems_of(node)
    assert problem.startswith(expected)


# several at once


def test_every_problem_is_reported_together() -> None:
    data = pipeline(
        {"id": "analyze", "type": "ai", "next": "notify"},
        {"id": "notify", "type": "notify", "config": {"driver": "console"}, "next": "missing"},
        {"id": "notify", "type": "wait"},
        {"type": "wait"},
        {"id": "late", "type": "wait", "config": {"seconds": -1}, "retries": -1},
        {"id": "loop", "next": "loop"},
        defaults={"timeout_seconds": 0},
    )
    assert definitions.validate(data) == [
        "defaults: timeout_seconds must be a positive number",
        "Node 'analyze' has unknown type: ai",
        "Duplicate node id: 'notify'",
        "Node #4 has no id",
        "Node 'late' (wait): seconds must be a non-negative number",
        "Node 'late': retries must be a non-negative integer",
        "Node 'loop' has no type",
        "Node 'notify' references non-existent next: 'missing'",
        "Cycle: loop -> loop",
        "Node 'late' is unreachable from the entry node 'analyze'",
        "Node 'loop' is unreachable from the entry node 'analyze'",
    ]


def test_the_issues_example_lists_both_problems() -> None:
    data = pipeline(
        {"id": "analyze", "type": "ai", "next": "notify"},
        {"id": "notify", "type": "notify", "next": "missing"},
    )
    with pytest.raises(DefinitionError) as caught:
        definitions.parse(data)
    assert str(caught.value) == (
        "Pipeline definition invalid:\n"
        "  - Node 'analyze' has unknown type: ai\n"
        "  - Node 'notify' references non-existent next: 'missing'"
    )
    assert caught.value.problems == [
        "Node 'analyze' has unknown type: ai",
        "Node 'notify' references non-existent next: 'missing'",
    ]


def test_validate_does_not_change_the_data() -> None:
    data = pipeline(wait("a", "b"), wait("b"), defaults={"retries": 1})
    before = copy.deepcopy(data)
    definitions.validate(data)
    definitions.parse(data)
    assert data == before


# parse


def test_parse_applies_defaults_to_nodes_that_do_not_set_them() -> None:
    data = pipeline(
        wait("a", "b"),
        wait("b", "c", retries=0, timeout_seconds=5, queue="gpu"),
        wait("c", required=False),
        defaults={"retries": 2, "retry_backoff_seconds": 0.5, "timeout_seconds": 30},
    )
    a, b, c = definitions.parse(data).nodes
    assert (a.retries, a.retry_backoff_seconds, a.timeout_seconds, a.required, a.queue) == (
        2,
        0.5,
        30,
        True,
        None,
    )
    assert (b.retries, b.timeout_seconds, b.queue) == (0, 5, "gpu")
    assert (c.retries, c.required) == (2, False)


def test_parse_without_defaults_uses_the_built_in_ones() -> None:
    (node,) = definitions.parse(pipeline(wait("a"))).nodes
    assert (node.retries, node.retry_backoff_seconds, node.timeout_seconds) == (0, 1.0, None)
    assert (node.required, node.queue) == (True, None)


def test_parse_keeps_order_links_and_config() -> None:
    definition = definitions.parse(json.loads((SAMPLES_DIR / "health-check.json").read_text()))
    assert definition.name == "health-check"
    assert definition.description == "Check the host and tell the on-call channel"
    assert definition.entry.id == "metrics"
    assert [(n.id, n.type, n.successors, n.position) for n in definition.nodes] == [
        ("metrics", "context", ("analyze",), 0),
        ("analyze", "intelligence", ("notify",), 1),
        ("notify", "notify", (), 2),
    ]
    assert definition.node("metrics").config == {"include": ["cpu", "memory", "disk"]}
    assert all(n.timeout_seconds == 300 for n in definition.nodes)


def test_parse_name_argument_wins_over_the_name_field() -> None:
    assert definitions.parse(pipeline(wait("a")), name="stored").name == "stored"
    assert definitions.parse({"nodes": [wait("a")]}).name == "unnamed"


def test_asking_for_an_unknown_node_is_an_error() -> None:
    with pytest.raises(OrchestratorError, match="Pipeline 'test' has no node 'zz'"):
        definitions.parse(pipeline(wait("a"))).node("zz")


# load_file


def test_load_file_reads_a_json_object(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(pipeline(wait("a"))))
    assert definitions.load_file(path) == pipeline(wait("a"))


def test_load_file_errors_are_the_users_messages(tmp_path: Path) -> None:
    with pytest.raises(OrchestratorError) as missing:
        definitions.load_file("missing.json")
    assert str(missing.value) == "Config file not found: missing.json"
    bad = tmp_path / "bad.json"
    bad.write_text("{nodes: []}")
    with pytest.raises(OrchestratorError) as invalid:
        definitions.load_file(bad)
    assert str(invalid.value) == (
        "Invalid JSON in config file: "
        "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    )


# branches: next lists, joins, when, on_failure


def test_a_diamond_with_conditions_and_on_failure_is_valid() -> None:
    assert (
        problems_of(
            wait("a", ["b", "c"]),  # type: ignore[arg-type]
            wait("b", "d", when={"path": "a.waited_seconds", "gte": 0}),
            wait("c", "d", when=[{"path": "payload.env", "in": ["prod"]}]),
            wait("d"),
            wait("alert", when={"path": "failure.node", "not_equals": "d"}),
            on_failure="alert",
        )
        == []
    )


def test_every_branch_problem_is_reported_at_once() -> None:
    assert problems_of(
        wait("a", ["b", "b", "ghost", 7]),  # type: ignore[list-item]
        wait("b", ["c"]),
        wait("c", "b", when={"path": "payload.x", "like": "y"}),
        wait("d", when={"path": "e.out", "equals": 1}),
        wait("e"),
        wait("f", when={"path": "failure.error", "exists": True}),
        on_failure="nowhere",
    ) == [
        "Node 'a' next must be a node id, a list of node ids, or null",
        "Node 'a' lists 'b' more than once in next",
        "Node 'a' references non-existent next: 'ghost'",
        "on_failure references non-existent node: 'nowhere'",
        "Cycle: b -> c -> b",
        "Node 'd' is unreachable from the entry node 'a'",
        "Node 'e' is unreachable from the entry node 'a'",
        "Node 'f' is unreachable from the entry node 'a'",
        "Node 'c' when: condition has unknown operator 'like'; use one of: equals, not_equals, "
        "in, not_in, exists, gt, gte, lt, lte",
        "Node 'd' when: path 'e.out' names node 'e', which is not an ancestor of 'd'",
        "Node 'f' when: path 'failure.error': 'failure' is known only on the on_failure path",
    ]


def test_unknown_and_repeated_ids_in_a_next_list() -> None:
    assert problems_of(wait("a", ["b", "ghost", "b"]), wait("b")) == [  # type: ignore[arg-type]
        "Node 'a' references non-existent next: 'ghost'",
        "Node 'a' lists 'b' more than once in next",
    ]


def test_a_condition_on_a_sibling_branch_is_refused() -> None:
    assert problems_of(
        wait("a", ["b", "c"]),  # type: ignore[arg-type]
        wait("b"),
        wait("c", when={"path": "b.waited_seconds", "gt": 0}),
    ) == ["Node 'c' when: path 'b.waited_seconds' names node 'b', which is not an ancestor of 'c'"]


def test_a_condition_path_must_start_with_payload_a_node_or_failure() -> None:
    assert problems_of(wait("a", when={"path": "nothing.here", "exists": True})) == [
        "Node 'a' when: path 'nothing.here' must start with 'payload', a node id, or on the "
        "on_failure path 'failure'"
    ]


def test_on_failure_must_be_a_node_id_and_its_path_separate() -> None:
    assert problems_of(wait("a"), on_failure=["a"]) == ["on_failure must be a node id"]
    assert problems_of(wait("a", "b"), wait("b"), on_failure="b") == [
        "Node 'b' is reachable from both the entry node 'a' and on_failure 'b'; "
        "the on_failure path must be separate"
    ]
    assert problems_of(wait("a"), wait("x"), on_failure="a") == [
        "Node 'a' is reachable from both the entry node 'a' and on_failure 'a'; "
        "the on_failure path must be separate",
        "Node 'x' is unreachable from the entry node 'a' or from on_failure 'a'",
    ]


def test_a_fan_out_wider_than_orchestrator_max_fanout_is_refused(settings) -> None:
    settings.ORCHESTRATOR_MAX_FANOUT = 3
    branches = [f"b{i}" for i in range(4)]
    assert problems_of(wait("a", branches), *(wait(b) for b in branches)) == [  # type: ignore[arg-type]
        "Node 'a' fans out to 4 nodes; at most 3 are allowed (ORCHESTRATOR_MAX_FANOUT)"
    ]


def test_the_default_fan_out_limit_is_256() -> None:
    branches = [f"b{i}" for i in range(257)]
    assert problems_of(wait("a", branches[:256]), *(wait(b) for b in branches[:256])) == []  # type: ignore[arg-type]
    assert problems_of(wait("a", branches), *(wait(b) for b in branches)) == [  # type: ignore[arg-type]
        "Node 'a' fans out to 257 nodes; at most 256 are allowed (ORCHESTRATOR_MAX_FANOUT)"
    ]


def test_parse_records_successors_predecessors_conditions_and_the_failure_path() -> None:
    definition = definitions.parse(
        pipeline(
            wait("a", ["b", "c"]),  # type: ignore[arg-type]
            wait("b", "d"),
            wait("c", "d", when={"path": "payload.go", "equals": True}),
            wait("d"),
            wait("alert"),
            on_failure="alert",
        )
    )
    assert definition.node("a").successors == ("b", "c")
    assert definition.node("d").predecessors == ("b", "c")
    assert [c.describe() for c in definition.node("c").when] == ["payload.go == true"]
    assert definition.on_failure is not None and definition.on_failure.id == "alert"
    assert definition.node("alert").on_failure_path and not definition.node("d").on_failure_path
    assert definition.graph.joins() == ["d"]
