"""What the commands print: the dry run, the result display, run status and JSON documents."""

from __future__ import annotations

import json
from typing import Any

from orchestrator import nodes
from orchestrator.definitions import Definition
from orchestrator.models import NodeRun, PipelineRun, RunEvent
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
            f"     → next: {spec.next}" if spec.next else "     → end",
            "",
        ]
    lines += [
        "Payload:",
        json.dumps(redact(payload), indent=2, ensure_ascii=False),
        "",
        "Use without --dry-run to execute",
    ]
    return lines


def dry_run_as_dict(
    definition: Definition, *, label: str, source: str, environment: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """``run_pipeline --dry-run --json``: what would run, secrets hidden; nothing is recorded."""
    return {
        "dry_run": True,
        "pipeline": definition.name,
        "label": label,
        "source": source,
        "environment": environment,
        "nodes": [
            {
                "id": spec.id,
                "type": spec.type,
                "config": redact(spec.config, _secret_keys(spec.type)),
                "next": spec.next,
            }
            for spec in definition.nodes
        ],
        "payload": redact(payload),
    }


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


def node_lines(node: NodeRun) -> list[str]:
    lines = [f"--- {node.node_type} ({node.node_id}) ---"]
    body: list[str] = []
    if node.status == NodeStatus.COMPLETED and isinstance(node.output, dict):
        handler = nodes.get(node.node_type)
        output = redact(node.output, _secret_keys(node.node_type))
        body += handler().render(output) if handler else []
    else:
        body.append(f"Status: {node.status}")
        if node.error:
            body.append(f"Error: {redact(node.error)}")
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
    for node in _node_runs(run):
        lines += [*node_lines(node), ""]
    lines.append(final_line(run))
    return lines


def final_line(run: PipelineRun) -> str:
    status = RunStatus(run.status)
    if status == RunStatus.COMPLETED:
        return "✓ Pipeline completed successfully"
    if status == RunStatus.FAILED:
        if (node := failed_node(run)) is not None:  # its error is shown with the node
            return f"✗ Pipeline failed at node '{node}'"
        return f"✗ Pipeline failed: {redact(run.error)}"
    if status == RunStatus.CANCELLED:
        return "✗ Pipeline cancelled"
    if status == RunStatus.PAUSED:
        return (
            f"⏸ Pipeline paused before '{run.resume_from}'. "
            f"Resume it with: orchestrator pr resume {run.pk}"
        )
    return f"… Pipeline is {status.value.lower()}"


def failed_node(run: PipelineRun) -> str | None:
    """The node whose failure failed the run, when the run's error is just that node's."""
    for node_id, error in run.node_runs.filter(status=NodeStatus.FAILED).values_list(
        "node_id", "error"
    ):
        if run.error == f"Node '{node_id}' failed: {error}":
            return node_id
    return None


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
    if run.current_node:
        lines.append(f"  Current:     {run.current_node}")
    if run.resume_from and run.status in (RunStatus.PAUSED, RunStatus.PAUSING):
        lines.append(f"  Resume from: {run.resume_from}")
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
    node_runs = _node_runs(run)
    for node in node_runs:
        duration = f"{node.duration_ms:.2f}ms" if node.duration_ms is not None else "-"
        lines.append(
            f"  {node.node_id[:16]:<16} {node.node_type[:13]:<13} {node.status:<10} "
            f"{node.attempt:>3} {duration:>11}  {node.worker or '-'}"
        )
        if node.error:
            lines.append(f"  {'':<16} error: {redact(node.error)}")
    lines += ["", "Timeline:"]
    lines += [f"  {at:%H:%M:%S.%f}"[:-3] + f"  {text}" for at, _, text in timeline(run, node_runs)]
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
        # The display above (or the JSON) already says why; the exit line only says that.
        return f"Pipeline run {run.pk} failed"
    if run.status == RunStatus.CANCELLED:
        return f"Pipeline run {run.pk} was cancelled"
    return None


def run_as_dict(run: PipelineRun, *, events: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "run_id": run.pk,
        "trace_id": str(run.trace_id),
        "status": run.status,
        "pipeline": run.pipeline_name,
        "definition_id": run.definition_id,
        "source": run.source,
        "environment": run.environment,
        "current_node": run.current_node or None,
        "resume_from": (run.resume_from or None) if run.status == RunStatus.PAUSED else None,
        "error": redact(run.error) or None,
        "created_at": run.created_at.isoformat() if run.created_at else None,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration_ms": run.duration_ms,
        "queued_by": run.queued_by,
        "nodes": [
            {
                "id": n.node_id,
                "type": n.node_type,
                "status": n.status,
                "attempt": n.attempt,
                "worker": n.worker or None,
                "started_at": n.started_at.isoformat() if n.started_at else None,
                "finished_at": n.finished_at.isoformat() if n.finished_at else None,
                "duration_ms": n.duration_ms,
                "output": redact(n.output, _secret_keys(n.node_type)),
                "error": redact(n.error) or None,
            }
            for n in _node_runs(run)
        ],
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
