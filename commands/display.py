"""What the commands print: the dry run, the result display, run status and JSON documents."""

from __future__ import annotations

import json
from typing import Any

from orchestrator import conditions, diagrams, nodes
from orchestrator.definitions import Definition, NodeSpec
from orchestrator.errors import OrchestratorError
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.plans import plans
from orchestrator.redaction import redact
from orchestrator.state import NodeStatus, RunStatus

RULE = "=" * 60


def _secret_keys(node_type: str) -> frozenset[str]:
    handler = nodes.get(node_type)
    return handler.secret_keys if handler else frozenset()


def dry_run_lines(
    definition: Definition, *, label: str, source: str, environment: str, payload: dict[str, Any]
) -> list[str]:
    lines = [
        "=== DRY RUN ===",
        "",
        label,
        f"Source: {source}",
        f"Environment: {environment}",
        "",
        f"Nodes ({len(definition.nodes)}):",
    ]
    for number, spec in enumerate(definition.nodes, start=1):
        config = redact(spec.config, _secret_keys(spec.type))
        lines += [
            f"  {number}. [{spec.type}] {spec.id}",
            f"     Config: {json.dumps(config, ensure_ascii=False)}",
            *_shape_lines(spec),
            "",
        ]
    if diagrams.is_branched(definition):
        lines += ["Branches:", *(f"  {line}" for line in diagrams.flow_lines(definition)), ""]
    lines += [
        "Payload:",
        json.dumps(redact(payload), indent=2, ensure_ascii=False),
        "",
        "Use without --dry-run to execute",
    ]
    return lines


def _shape_lines(spec: NodeSpec) -> list[str]:
    """Where a node sits in the dry run: a join, its condition, the on_failure path, and next."""
    lines = []
    if len(spec.predecessors) > 1:
        lines.append(f"     Join: runs once {', '.join(spec.predecessors)} have ended")
    if spec.when:
        lines.append(f"     When: {conditions.describe(spec.when)} (else skipped)")
    if spec.on_failure_path:
        lines.append("     On failure: runs only if the run fails")
    if len(spec.successors) > 1:
        lines.append(f"     → next: {', '.join(spec.successors)} (in parallel)")
    else:
        lines.append(f"     → next: {spec.successors[0]}" if spec.successors else "     → end")
    return lines


def run_definition(run: PipelineRun) -> Definition | None:
    """The definition a run executes (its snapshot), or None if it no longer parses here."""
    try:
        return plans.get(run.pk).definition
    except OrchestratorError:
        return None


def redacted_definition(data: Any) -> Any:
    """A definition as stored or read from a file, with every node's secrets hidden."""
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        return redact(data)
    shown = [
        {**node, "config": redact(node["config"], _secret_keys(str(node.get("type"))))}
        if isinstance(node, dict) and "config" in node
        else node
        for node in data["nodes"]
    ]
    return redact({**data, "nodes": shown})


def _node_runs(run: PipelineRun) -> list[NodeRun]:
    return list(run.node_runs.order_by("position", "id"))


def node_lines(node: NodeRun, spec: NodeSpec | None = None) -> list[str]:
    role = diagrams.role(spec) if spec is not None else ""
    lines = [f"--- {node.node_type} ({node.node_id}) ---" + (f" [{role}]" if role else "")]
    body: list[str] = []
    if node.status == NodeStatus.COMPLETED and isinstance(node.output, dict):
        handler = nodes.get(node.node_type)
        output = redact(node.output, _secret_keys(node.node_type))
        body += handler().render(output) if handler else []
    else:
        body.append(f"Status: {node.status}")
        if node.error:
            body.append(f"Error: {redact(node.error)}")
        if node.reason:
            body.append(f"Reason: {redact(node.reason)}")
    if node.attempt > 1:
        body.append(f"Attempts: {node.attempt}")
    if node.duration_ms is not None:
        body.append(f"Duration: {node.duration_ms:.2f}ms")
    return lines + [f"  {line}" for line in body]


def result_lines(run: PipelineRun) -> list[str]:
    lines = [
        RULE,
        "PIPELINE RESULT",
        RULE,
        "",
        f"Status: {run.status}",
        f"Definition: {run.pipeline_name}",
        f"Trace ID: {run.trace_id}",
        f"Run ID: {run.pk}",
    ]
    if run.duration_ms is not None:
        lines.append(f"Duration: {run.duration_ms:.2f}ms")
    lines.append("")
    definition = run_definition(run)
    if definition is not None and diagrams.is_branched(definition):
        lines += ["Branches:", *(f"  {line}" for line in diagrams.flow_lines(definition)), ""]
    for node in _node_runs(run):
        lines += [*node_lines(node, _spec(definition, node.node_id)), ""]
    lines.append(final_line(run))
    return lines


def _spec(definition: Definition | None, node_id: str) -> NodeSpec | None:
    if definition is None:
        return None
    try:
        return definition.node(node_id)
    except OrchestratorError:
        return None


def _quoted(node_ids: list[str]) -> str:
    return ", ".join(f"'{n}'" for n in node_ids)


def final_line(run: PipelineRun) -> str:
    status = RunStatus(run.status)
    if status == RunStatus.COMPLETED:
        return "✓ Pipeline completed successfully"
    if status == RunStatus.FAILED:
        return f"✗ Pipeline failed: {redact(run.error)}"
    if status == RunStatus.CANCELLED:
        return "✗ Pipeline cancelled"
    if status == RunStatus.PAUSED:
        ready = run.nodes_in(NodeStatus.QUEUED, NodeStatus.RETRYING)
        return (
            f"⏸ Pipeline paused before {_quoted(ready)}. "
            f"Resume it with: orchestrator pr resume {run.pk}"
        )
    return f"… Pipeline is {status.value.lower()}"


def status_lines(run: PipelineRun) -> list[str]:
    """``pr status``: the run, each node, the Clarifai link and the event timeline."""
    from orchestrator import mirror

    lines = [
        f"Pipeline run {run.pk}: {run.status}",
        f"  Pipeline:    {run.pipeline_name}",
        f"  Trace ID:    {run.trace_id}",
        f"  Source:      {run.source} ({run.environment})",
        f"  Queued by:   {run.queued_by or '-'} at {run.created_at:%Y-%m-%d %H:%M:%S}",
    ]
    node_runs = _node_runs(run)
    lines += _position_lines(run, node_runs)
    if run.duration_ms is not None:
        lines.append(f"  Duration:    {run.duration_ms:.2f}ms")
    if run.error:
        lines.append(f"  Error:       {redact(run.error)}")
    if run.is_linked:
        lines += [
            f"  Clarifai:    run {run.clarifai_pipeline_version_run_id} of "
            f"{run.clarifai_user_id}/{run.clarifai_app_id} pipeline {run.clarifai_pipeline_id} "
            f"version {run.clarifai_pipeline_version_id}",
            f"  Mirror:      {mirror.state(run)}",
        ]
    lines += [
        "",
        "Nodes:",
        f"  {'NODE':<16} {'TYPE':<13} {'STATUS':<10} {'TRY':>3} {'DURATION':>11}  WORKER",
    ]
    definition = run_definition(run)
    for node in node_runs:
        duration = f"{node.duration_ms:.2f}ms" if node.duration_ms is not None else "-"
        lines.append(
            f"  {node.node_id[:16]:<16} {node.node_type[:13]:<13} {node.status:<10} "
            f"{node.attempt:>3} {duration:>11}  {node.worker or '-'}"
        )
        spec = _spec(definition, node.node_id)
        if spec is not None and (role := diagrams.role(spec)):
            lines.append(f"  {'':<16} {role}")
        if node.error:
            lines.append(f"  {'':<16} error: {redact(node.error)}")
        if node.reason:
            lines.append(f"  {'':<16} skipped: {redact(node.reason)}")
    if definition is not None and diagrams.is_branched(definition):
        lines += ["", "Branches:", *(f"  {line}" for line in diagrams.flow_lines(definition))]
    lines += ["", "Timeline:"]
    lines += [f"  {at:%H:%M:%S.%f}"[:-3] + f"  {text}" for at, _, text in timeline(run, node_runs)]
    return lines


def _position_lines(run: PipelineRun, node_runs: list[NodeRun]) -> list[str]:
    """Where the run is: the nodes running, those ready (to resume from, when paused), and the
    joins waiting for more of their predecessors."""

    def ids(*statuses: str) -> list[str]:
        return [n.node_id for n in node_runs if n.status in statuses]

    lines = []
    if running := ids(NodeStatus.RUNNING):
        lines.append(f"  Running:     {', '.join(running)}")
    if ready := ids(NodeStatus.QUEUED, NodeStatus.RETRYING):
        label = "Resume from:" if run.status == RunStatus.PAUSED else "Ready:      "
        lines.append(f"  {label} {', '.join(ready)}")
    if waiting := ids(NodeStatus.WAITING):
        lines.append(f"  Waiting:     {', '.join(waiting)} (a join: for more branches to end)")
    return lines


def timeline(run: PipelineRun, node_runs: list[NodeRun]) -> list[tuple[Any, int, str]]:
    """The run's events merged with its nodes' starts and ends (kept on the node runs, so that
    the hot path writes no event rows), in time order."""
    entries: list[tuple[Any, int, str]] = []
    for event in run.events.order_by("id"):
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


def outcome_error(run: PipelineRun) -> str | None:
    """The error a command exits with for a run that failed or was cancelled, else None."""
    if run.status == RunStatus.FAILED:
        return f"Pipeline failed: {run.error}"
    if run.status == RunStatus.CANCELLED:
        return f"Pipeline run {run.pk} was cancelled"
    return None


def run_as_dict(run: PipelineRun, *, events: bool = False) -> dict[str, Any]:
    node_runs = _node_runs(run)
    definition = run_definition(run)

    def ids(*statuses: str) -> list[str]:
        return [n.node_id for n in node_runs if n.status in statuses]

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
        "nodes": [node_as_dict(n, _spec(definition, n.node_id)) for n in node_runs],
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
        "output": redact(node.output, _secret_keys(node.node_type)),
        "error": redact(node.error) or None,
        "reason": redact(node.reason) or None,
        "after": list(spec.predecessors) if spec else [],
        "next": list(spec.successors) if spec else [],
        "on_failure_path": spec.on_failure_path if spec else False,
    }


def event_as_dict(event: RunEvent) -> dict[str, Any]:
    return {
        "at": event.at.isoformat(),
        "kind": event.kind,
        "node_id": event.node_id or None,
        "host": event.host,
        "pid": event.pid,
        "details": redact(event.details),
    }


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)
