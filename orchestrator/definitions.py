"""Pipeline definitions: parse JSON, validate every problem at once, normalise into NodeSpecs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator import conditions, conf, graph, limits, nodes
from orchestrator.errors import DefinitionError, InputError, OrchestratorError

#: Per-node options and the check each value must pass, with the sentence used when it fails.
NODE_OPTIONS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "retries": (int, "must be a non-negative integer"),
    "retry_backoff_seconds": ((int, float), "must be a non-negative number"),
    "timeout_seconds": ((int, float), "must be a positive number"),
    "required": (bool, "must be true or false"),
    "queue": (str, "must be a non-empty string"),
}
OPTION_DEFAULTS: dict[str, Any] = {
    "retries": 0,
    "retry_backoff_seconds": 1.0,
    "timeout_seconds": None,
    "required": True,
    "queue": None,
}
NODE_KEYS = {"id", "type", "config", "next", "when", "description", *NODE_OPTIONS}


@dataclass(frozen=True)
class NodeSpec:
    """One node of a definition, with the definition's defaults applied."""

    id: str
    type: str
    config: dict[str, Any]
    position: int
    #: The nodes queued when this one ends (several: a fan-out), and those it waits for (several:
    #: a join).
    successors: tuple[str, ...] = ()
    predecessors: tuple[str, ...] = ()
    when: tuple[conditions.Condition, ...] = ()
    #: Whether the node belongs to the on_failure path (runs only when the run fails).
    on_failure_path: bool = False
    retries: int = 0
    retry_backoff_seconds: float = 1.0
    timeout_seconds: float | None = None
    required: bool = True
    queue: str | None = None


@dataclass(frozen=True)
class Definition:
    """A validated pipeline: nodes by id, entered at the first."""

    name: str
    description: str
    nodes: tuple[NodeSpec, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)
    graph: graph.Graph = field(
        repr=False, compare=False, default_factory=lambda: graph.Graph((), {}, {})
    )

    _by_id: dict[str, NodeSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {spec.id: spec for spec in self.nodes})

    @property
    def entry(self) -> NodeSpec:
        return self.nodes[0]

    @property
    def on_failure(self) -> NodeSpec | None:
        return self.node(self.graph.on_failure) if self.graph.on_failure else None

    def node(self, node_id: str) -> NodeSpec:
        spec = self._by_id.get(node_id)
        if spec is None:
            raise OrchestratorError(f"Pipeline '{self.name}' has no node '{node_id}'")
        return spec


def _option_problem(key: str, value: Any) -> str | None:
    kinds, sentence = NODE_OPTIONS[key]
    if isinstance(value, bool) and kinds is not bool:
        return sentence
    if not isinstance(value, kinds):
        return sentence
    return _range_problem(key, value, sentence)


def _range_problem(key: str, value: Any, sentence: str) -> str | None:
    """A value of the right type must also be finite and within the option's range."""
    if key in ("required",):
        return None
    if key == "queue":
        if not value.strip():
            return sentence
        return None if (problem := limits.name_problem(value)) is None else f"{problem}"
    if not limits.finite_number(value, low=-math.inf, high=math.inf):
        return "must be a finite number"
    if value < 0 or (key == "timeout_seconds" and value <= 0):
        return sentence
    if key == "retries" and value > (most := conf.get("ORCHESTRATOR_MAX_RETRIES")):
        return f"must be at most {most} (ORCHESTRATOR_MAX_RETRIES)"
    most = conf.get("ORCHESTRATOR_MAX_NODE_TIMEOUT")
    if key in ("timeout_seconds", "retry_backoff_seconds") and value > most:
        # The broker's visibility timeout is set above this, or a long node would be handed out
        # to a second worker while the first still runs it.
        return f"must be at most {most:g} (ORCHESTRATOR_MAX_NODE_TIMEOUT)"
    return None


def limit_problems(data: Any) -> list[str]:
    """Why ``data`` is too big or holds what no database stores; checked before anything else,
    so that no later check ever works on an oversized or hostile definition."""
    problem = limits.json_problem(data)
    if problem is not None:
        return [f"Definition cannot be stored: {problem}"]
    raw_nodes = data.get("nodes") if isinstance(data, dict) else None
    most = conf.get("ORCHESTRATOR_MAX_NODES")
    if isinstance(raw_nodes, list) and len(raw_nodes) > most:
        return [
            f"Definition has {len(raw_nodes)} nodes; the limit is {most} (ORCHESTRATOR_MAX_NODES)"
        ]
    size, largest = limits.json_size(data), conf.get("ORCHESTRATOR_MAX_DEFINITION_BYTES")
    if size > largest:
        return [f"Definition is {size} bytes of JSON; the limit is {largest} bytes"]
    return []


def name_problems(data: dict[str, Any]) -> list[str]:
    """The pipeline's name, if it has one, must be a text the records can hold."""
    if "name" in data and (problem := limits.name_problem(data["name"])) is not None:
        return [f"name {problem}"]
    return []


def validate(data: Any) -> list[str]:
    """Every problem with the definition ``data``, as sentences; empty when it is valid."""
    if not isinstance(data, dict):
        return ["Definition must be a JSON object"]
    if too_big := limit_problems(data):
        return too_big
    problems: list[str] = name_problems(data)
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        problems.append("defaults must be an object")
        defaults = {}
    for key, value in defaults.items():
        if key not in NODE_OPTIONS:
            problems.append(f"defaults has unknown option: {key}")
        elif (problem := _option_problem(key, value)) is not None:
            problems.append(f"defaults: {key} {problem}")
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        problems.append("Definition must have a non-empty 'nodes' list")
        return problems

    ids: list[str] = []
    seen: set[str] = set()
    links: dict[str, Any] = {}
    known = nodes.known_types()
    for index, node in enumerate(raw_nodes, start=1):
        if not isinstance(node, dict):
            problems.append(f"Node #{index} must be an object")
            continue
        node_id = node.get("id")
        if not isinstance(node_id, str) or not node_id.strip():
            problems.append(f"Node #{index} has no id")
            label = f"#{index}"
        elif (problem := limits.name_problem(node_id)) is not None:
            problems.append(f"Node #{index} id {problem}")
            label = f"#{index}"
        else:
            label = node_id
            if node_id in seen:
                problems.append(f"Duplicate node id: '{node_id}'")
            else:
                seen.add(node_id)
                ids.append(node_id)
                links[node_id] = node.get("next")
        node_type = node.get("type")
        config = node.get("config", {})
        if not isinstance(config, dict):
            problems.append(f"Node '{label}' config must be an object")
            config = {}
        if not isinstance(node_type, str) or not node_type:
            problems.append(f"Node '{label}' has no type")
        elif node_type not in known:
            problems.append(f"Node '{label}' has unknown type: {node_type}")
        else:
            handler = nodes.get(node_type)
            assert handler is not None
            problems.extend(
                f"Node '{label}' ({node_type}): {p}" for p in handler.check_config(config)
            )
        for key in sorted(set(node) - NODE_KEYS):
            problems.append(f"Node '{label}' has unknown option: {key}")
        for key in NODE_OPTIONS:
            if key in node and (problem := _option_problem(key, node[key])) is not None:
                problems.append(f"Node '{label}': {key} {problem}")
        nxt = node.get("next")
        if nxt is not None and not isinstance(nxt, str) and _next_ids(nxt) != nxt:
            problems.append(f"Node '{label}' next must be a node id, a list of node ids, or null")

    on_failure = data.get("on_failure")
    if on_failure is not None and not isinstance(on_failure, str):
        problems.append("on_failure must be a node id")
        on_failure = None
    report = graph.check(
        ids,
        {node_id: _next_ids(nxt) for node_id, nxt in links.items()},
        on_failure=on_failure,
        max_fanout=conf.get("ORCHESTRATOR_MAX_FANOUT"),
        named=_named_roots(raw_nodes, seen),
    )
    graph_work.visits += report.visits
    problems.extend(report.problems)
    problems.extend(_when_problems(raw_nodes, seen, report))
    return problems


class GraphWork:
    """Counts the steps the graph checks take (nodes visited plus edges followed), so that a
    test can show they grow linearly with the definition."""

    def __init__(self) -> None:
        self.visits = 0


graph_work = GraphWork()


def _next_ids(nxt: Any) -> list[str]:
    """A node's ``next`` as written, as a list of the ids it names (a bad ``next`` names none)."""
    if isinstance(nxt, str):
        return [nxt]
    if isinstance(nxt, list):
        return [n for n in nxt if isinstance(n, str)]
    return []


def _named_roots(raw_nodes: list[Any], ids: set[str]) -> set[str]:
    """The node ids that conditions' paths start with."""
    named = set()
    for node in raw_nodes:
        when = node.get("when") if isinstance(node, dict) else None
        for item in conditions.as_list(when) if isinstance(when, dict | list) else []:
            path = item.get("path") if isinstance(item, dict) else None
            if isinstance(path, str) and (root := conditions.root_of(path, ids)) in ids:
                named.add(root)
    return named


def _when_problems(raw_nodes: list[Any], ids: set[str], report: graph.Report) -> list[str]:
    """Each ``when``: its form, and that its paths name the payload, the failure (on the
    on_failure path only) or a node that surely ended before this one."""
    problems: list[str] = []
    for node in raw_nodes:
        if not isinstance(node, dict) or "when" not in node or not isinstance(node.get("id"), str):
            continue
        node_id, when = node["id"], node["when"]
        found = conditions.problems(when)
        for item in conditions.as_list(when) if isinstance(when, dict | list) else []:
            path = item.get("path") if isinstance(item, dict) else None
            if not isinstance(path, str) or not path:
                continue
            root = conditions.root_of(path, ids)
            if root is None:
                found.append(
                    f"path '{path}' must start with 'payload', a node id, or on the on_failure "
                    "path 'failure'"
                )
            elif root == conditions.FAILURE and node_id not in report.failure_path:
                found.append(f"path '{path}': 'failure' is known only on the on_failure path")
            elif root not in (conditions.PAYLOAD, conditions.FAILURE) and (
                report.is_ancestor(root, node_id) is False
            ):
                found.append(
                    f"path '{path}' names node '{root}', which is not an ancestor of '{node_id}'"
                )
        problems.extend(f"Node '{node_id}' when: {p}" for p in found)
    return problems


def parse(data: Any, *, name: str | None = None) -> Definition:
    """A :class:`Definition` from ``data``; raises DefinitionError listing every problem."""
    problems = validate(data)
    if name is not None and (problem := limits.name_problem(name)) is not None:
        problems.append(f"Pipeline name {problem}")
    if problems:
        raise DefinitionError(problems)
    defaults = {**OPTION_DEFAULTS, **data.get("defaults", {})}
    ids = [node["id"] for node in data["nodes"]]
    shape = graph.build(
        ids,
        {node["id"]: _next_ids(node.get("next")) for node in data["nodes"]},
        data.get("on_failure"),
    )
    known = set(ids)
    specs = []
    for position, node in enumerate(data["nodes"]):
        options = {key: node.get(key, defaults[key]) for key in NODE_OPTIONS}
        specs.append(
            NodeSpec(
                id=node["id"],
                type=node["type"],
                config=dict(node.get("config", {})),
                position=position,
                successors=shape.successors[node["id"]],
                predecessors=shape.predecessors[node["id"]],
                when=conditions.parse(node.get("when"), known),
                on_failure_path=node["id"] in shape.failure_path,
                **options,
            )
        )
    return Definition(
        name=str(name or data.get("name") or "unnamed"),
        description=str(data.get("description", "")),
        nodes=tuple(specs),
        raw=data,
        graph=shape,
    )


def load_file(path: str | Path) -> dict[str, Any]:
    """The JSON object in ``path``; OrchestratorError with the user-facing message otherwise."""
    path = Path(path)
    largest = conf.get("ORCHESTRATOR_MAX_DEFINITION_BYTES")
    try:
        size = path.stat().st_size
        if size > largest:
            raise OrchestratorError(
                f"Config file {path} is {size} bytes; the limit is {largest} bytes"
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OrchestratorError(f"Config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OrchestratorError(f"Cannot read config file {path}: {exc}") from exc
    try:
        return limits.loads(text, "config file")
    except InputError as exc:
        raise OrchestratorError(str(exc)) from None
