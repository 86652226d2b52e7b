"""Runs, nodes, events and definitions as plain documents (secrets redacted): the one shape
shared by the CLI's --json output, the HTTP API and the web console."""

from __future__ import annotations

from typing import Any

from orchestrator import nodes
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.redaction import redact
from orchestrator.state import RunStatus


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
                "output": redact(n.output, secret_keys(n.node_type)),
                "error": redact(n.error) or None,
            }
            for n in node_runs(run)
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
