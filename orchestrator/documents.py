"""Runs, nodes, events and definitions as plain documents (secrets redacted): the one shape
shared by the CLI's --json output, the HTTP API and the web console."""

from __future__ import annotations

from typing import Any

from orchestrator import conditions, graph, nodes
from orchestrator.definitions import Definition, NodeSpec
from orchestrator.errors import OrchestratorError
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.plans import plans
from orchestrator.redaction import redact
from orchestrator.state import NodeStatus


def secret_keys(node_type: str) -> frozenset[str]:
    handler = nodes.get(node_type)
    return handler.secret_keys if handler else frozenset()


def redacted_definition(data: Any) -> Any:
    """A definition as stored or read from a file, with every node's secrets hidden."""
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        return redact(data)
    shown = [
        {**node, "config": redact(node["config"], secret_keys(str(node.get("type"))))}
        if isinstance(node, dict) and "config" in node
        else node
        for node in data["nodes"]
    ]
    return redact({**data, "nodes": shown})


def node_runs(run: PipelineRun) -> list[NodeRun]:
    return list(run.node_runs.order_by("position", "id"))


def timeline(
    run: PipelineRun, node_runs: list[NodeRun], events: list[RunEvent] | None = None
) -> list[tuple[Any, int, str]]:
    """The run's events merged with its nodes' starts and ends (kept on the node runs, so that
    the hot path writes no event rows), in time order."""
    entries: list[tuple[Any, int, str]] = []
    for event in run.events.order_by("id") if events is None else events:
        where = f"{event.host}:{event.pid}" if event.pid else event.host
        node = f" [{event.node_id}]" if event.node_id else ""
        details = {k: v for k, v in redact(event.details).items() if v not in (None, "")}
        extra = " " + ", ".join(f"{k}={v}" for k, v in details.items()) if details else ""
        entries.append((event.at, 1, f"{event.kind}{node}  ({where}){extra}"))
    for node in node_runs:
        where = f"  ({node.worker})" if node.worker else ""
        if node.started_at:
            entries.append((node.started_at, 0, f"node started [{node.node_id}]{where}"))
        if node.finished_at:
            status = str(node.status).lower()
            entries.append((node.finished_at, 0, f"node {status} [{node.node_id}]{where}"))
    return sorted(entries, key=lambda entry: (entry[0], entry[1]))


def run_definition(run: PipelineRun) -> Definition | None:
    """The definition a run executes (its snapshot), or None if it no longer parses here."""
    try:
        return plans.get(run.pk).definition
    except OrchestratorError:
        return None


def spec_of(definition: Definition | None, node_id: str) -> NodeSpec | None:
    """The node ``node_id`` of ``definition``, or None when either is missing."""
    if definition is None:
        return None
    try:
        return definition.node(node_id)
    except OrchestratorError:
        return None


def run_as_dict(run: PipelineRun, *, events: bool = False) -> dict[str, Any]:
    rows = node_runs(run)
    definition = run_definition(run)

    def ids(*statuses: str) -> list[str]:
        return [n.node_id for n in rows if n.status in statuses]

    data: dict[str, Any] = {
        "run_id": run.pk,
        "trace_id": str(run.trace_id),
        "status": run.status,
        "pipeline": run.pipeline_name,
        "definition_id": run.definition_id,
        "source": run.source,
        "environment": run.environment,
        "running_nodes": ids(NodeStatus.RUNNING),
        "ready_nodes": ids(NodeStatus.QUEUED, NodeStatus.RETRYING),
        "on_failure": definition.graph.on_failure if definition else None,
        "error": redact(run.error) or None,
        "created_at": run.created_at.isoformat() if run.created_at else None,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration_ms": run.duration_ms,
        "queued_by": run.queued_by,
        "nodes": [node_as_dict(n, spec_of(definition, n.node_id)) for n in rows],
    }
    if run.is_linked:
        data["clarifai"] = {
            "user_id": run.clarifai_user_id,
            "app_id": run.clarifai_app_id,
            "pipeline_id": run.clarifai_pipeline_id,
            "pipeline_version_id": run.clarifai_pipeline_version_id,
            "pipeline_version_run_id": run.clarifai_pipeline_version_run_id,
        }
    if events:
        data["events"] = [event_as_dict(e) for e in run.events.order_by("id")]
    return data


def node_as_dict(node: NodeRun, spec: NodeSpec | None) -> dict[str, Any]:
    return {
        "id": node.node_id,
        "type": node.node_type,
        "status": node.status,
        "attempt": node.attempt,
        "worker": node.worker or None,
        "started_at": node.started_at.isoformat() if node.started_at else None,
        "finished_at": node.finished_at.isoformat() if node.finished_at else None,
        "duration_ms": node.duration_ms,
        "output": redact(node.output, secret_keys(node.node_type)),
        "error": redact(node.error) or None,
        "reason": redact(node.reason) or None,
        "after": list(spec.predecessors) if spec else [],
        "next": list(spec.successors) if spec else [],
        "on_failure_path": spec.on_failure_path if spec else False,
    }


def graph_as_dict(definition: Definition) -> dict[str, Any]:
    """A definition's shape without its nodes' configs: enough to draw and describe its
    branches elsewhere (:func:`definition_from_graph`), and nothing secret."""
    return {
        "name": definition.name,
        "on_failure": definition.graph.on_failure,
        "nodes": [
            {
                "id": spec.id,
                "type": spec.type,
                "next": list(spec.successors),
                "when": definition.raw["nodes"][spec.position].get("when"),
            }
            for spec in definition.nodes
        ],
    }


def definition_from_graph(doc: dict[str, Any]) -> Definition:
    """The definition :func:`graph_as_dict` described, with empty configs and default options
    (node types are not looked up: the CLI showing it may lack a server's plug-ins)."""
    order = [node["id"] for node in doc["nodes"]]
    shape = graph.build(order, {n["id"]: n["next"] for n in doc["nodes"]}, doc["on_failure"])
    known = set(order)
    specs = tuple(
        NodeSpec(
            id=node["id"],
            type=node["type"],
            config={},
            position=position,
            successors=shape.successors[node["id"]],
            predecessors=shape.predecessors[node["id"]],
            when=conditions.parse(node.get("when"), known),
            on_failure_path=node["id"] in shape.failure_path,
        )
        for position, node in enumerate(doc["nodes"])
    )
    return Definition(name=doc["name"], description="", nodes=specs, raw=doc, graph=shape)


def event_as_dict(event: RunEvent) -> dict[str, Any]:
    return {
        "at": event.at.isoformat(),
        "kind": event.kind,
        "node_id": event.node_id or None,
        "host": event.host,
        "pid": event.pid,
        "details": redact(event.details),
    }
