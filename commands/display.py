"""What the commands print: the dry run, the result display, run status and JSON documents."""

from __future__ import annotations

import json
import shlex
from typing import Any

from orchestrator import conditions, diagrams, nodes
from orchestrator.definitions import Definition, NodeSpec
from orchestrator.documents import (  # noqa: F401 (re-exported for the commands)
    event_as_dict,
    node_runs,
    redacted_definition,
    run_as_dict,
    run_definition,
    secret_keys,
    spec_of,
    timeline,
)
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.redaction import redact
from orchestrator.state import NodeStatus, RunStatus

RULE = "=" * 60


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
        config = redact(spec.config, secret_keys(spec.type))
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
                "config": redact(spec.config, secret_keys(spec.type)),
                "next": list(spec.successors),
                "after": list(spec.predecessors),
                "on_failure_path": spec.on_failure_path,
            }
            for spec in definition.nodes
        ],
        "on_failure": definition.graph.on_failure,
        "payload": redact(payload),
    }


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


def node_lines(node: NodeRun, spec: NodeSpec | None = None) -> list[str]:
    role = diagrams.role(spec) if spec is not None else ""
    lines = [f"--- {node.node_type} ({node.node_id}) ---" + (f" [{role}]" if role else "")]
    body: list[str] = []
    if node.status == NodeStatus.COMPLETED and isinstance(node.output, dict):
        handler = nodes.get(node.node_type)
        output = redact(node.output, secret_keys(node.node_type))
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


def result_lines(
    run: PipelineRun,
    nodes_of_run: list[NodeRun] | None = None,
    definition: Definition | None = None,
) -> list[str]:
    """The result display; ``nodes_of_run`` and ``definition`` when the run was read from the
    API, not the database."""
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
    rows, definition = _read(run, nodes_of_run, definition)
    if definition is not None and diagrams.is_branched(definition):
        lines += ["Branches:", *(f"  {line}" for line in diagrams.flow_lines(definition)), ""]
    for node in rows:
        lines += [*node_lines(node, spec_of(definition, node.node_id)), ""]
    lines.append(final_line(run, rows))
    return lines


def _read(
    run: PipelineRun, nodes_of_run: list[NodeRun] | None, definition: Definition | None
) -> tuple[list[NodeRun], Definition | None]:
    """The run's nodes and definition: as given when the run was read from the API, else from
    the database."""
    if nodes_of_run is not None:
        return nodes_of_run, definition
    return node_runs(run), run_definition(run)


def _quoted(node_ids: list[str]) -> str:
    return ", ".join(f"'{n}'" for n in node_ids)


def _ids(rows: list[NodeRun], *statuses: str) -> list[str]:
    return [n.node_id for n in rows if n.status in statuses]


def final_line(run: PipelineRun, nodes_of_run: list[NodeRun] | None = None) -> str:
    status = RunStatus(run.status)
    if status == RunStatus.COMPLETED:
        return "✓ Pipeline completed successfully"
    if status == RunStatus.FAILED:
        if (node := failed_node(run, nodes_of_run)) is not None:  # its error is shown with the node
            return f"✗ Pipeline failed at node '{node}'"
        return f"✗ Pipeline failed: {redact(run.error)}"
    if status == RunStatus.CANCELLED:
        return "✗ Pipeline cancelled"
    if status == RunStatus.PAUSED:
        rows = node_runs(run) if nodes_of_run is None else nodes_of_run
        ready = _ids(rows, NodeStatus.QUEUED, NodeStatus.RETRYING)
        return (
            f"⏸ Pipeline paused before {_quoted(ready)}. "
            f"Resume it with: orchestrator pr resume {run.pk}"
        )
    return f"… Pipeline is {status.value.lower()}"


def failed_node(run: PipelineRun, nodes_of_run: list[NodeRun] | None = None) -> str | None:
    """The node whose failure failed the run, when the run's error is just that node's."""
    for node in node_runs(run) if nodes_of_run is None else nodes_of_run:
        if (
            node.status == NodeStatus.FAILED
            and run.error == f"Node '{node.node_id}' failed: {node.error}"
        ):
            return node.node_id
    return None


def status_lines(
    run: PipelineRun,
    nodes_of_run: list[NodeRun] | None = None,
    events: list[RunEvent] | None = None,
    mirror_state: str | None = None,
    definition: Definition | None = None,
) -> list[str]:
    """``pr status``: the run, each node, its branches, the Clarifai link and the event timeline
    (the lists, the definition and the mirror state are given when the run was read from the
    API, not the database)."""
    from orchestrator import mirror

    lines = [
        f"Pipeline run {run.pk}: {run.status}",
        f"  Pipeline:    {run.pipeline_name}",
        f"  Trace ID:    {run.trace_id}",
        f"  Source:      {run.source} ({run.environment})",
        f"  Queued by:   {run.queued_by or '-'} at {run.created_at:%Y-%m-%d %H:%M:%S}",
    ]
    shown, definition = _read(run, nodes_of_run, definition)
    lines += _position_lines(run, shown)
    if run.duration_ms is not None:
        lines.append(f"  Duration:    {run.duration_ms:.2f}ms")
    if run.error:
        lines.append(f"  Error:       {redact(run.error)}")
    if run.is_linked:
        lines += [
            f"  Clarifai:    run {run.clarifai_pipeline_version_run_id} of "
            f"{run.clarifai_user_id}/{run.clarifai_app_id} pipeline {run.clarifai_pipeline_id} "
            f"version {run.clarifai_pipeline_version_id}",
            f"  Mirror:      {mirror_state or mirror.state(run)}",
        ]
    lines += [
        "",
        "Nodes:",
        f"  {'NODE':<16} {'TYPE':<13} {'STATUS':<10} {'TRY':>3} {'DURATION':>11}  WORKER",
    ]
    for node in shown:
        duration = f"{node.duration_ms:.2f}ms" if node.duration_ms is not None else "-"
        lines.append(
            f"  {node.node_id[:16]:<16} {node.node_type[:13]:<13} {node.status:<10} "
            f"{node.attempt:>3} {duration:>11}  {node.worker or '-'}"
        )
        spec = spec_of(definition, node.node_id)
        if spec is not None and (role := diagrams.role(spec)):
            lines.append(f"  {'':<16} {role}")
        if node.error:
            lines.append(f"  {'':<16} error: {redact(node.error)}")
        if node.reason:
            lines.append(f"  {'':<16} skipped: {redact(node.reason)}")
    if definition is not None and diagrams.is_branched(definition):
        lines += ["", "Branches:", *(f"  {line}" for line in diagrams.flow_lines(definition))]
    lines += ["", "Timeline:"]
    lines += [
        f"  {at:%H:%M:%S.%f}"[:-3] + f"  {text}" for at, _, text in timeline(run, shown, events)
    ]
    return lines


def more_command(opts: dict[str, Any]) -> str:
    """The ``pr list`` command for the next page, with the filters given."""
    words = ["orchestrator", "pr", "list"]
    if opts["status"]:
        words += ["--status", opts["status"]]
    if opts["definition"]:
        words += ["--definition", opts["definition"]]
    if opts["limit"] != 20:
        words += ["--limit", str(opts["limit"])]
    words += ["--page", str(opts["page"] + 1)]
    return shlex.join(words)


def run_list_lines(rows: list[dict[str, Any]], page: int, next_page: str | None) -> list[str]:
    """``pr list``: one line per run, newest first, and the command for the next page."""
    if not rows:
        return ["No pipeline runs match." if page == 1 else "No more pipeline runs."]
    lines = [
        f"{'RUN':>6}  {'STATUS':<10}  {'PIPELINE':<24}  {'NODE':<14}  {'CREATED':<19}  DURATION"
    ]
    for row in rows:
        duration = f"{row['duration_ms'] / 1000:.2f}s" if row["duration_ms"] is not None else "-"
        lines.append(
            f"{row['id']:>6}  {row['status']:<10}  {row['pipeline_name'][:24]:<24}  "
            f"{(', '.join(row['current_nodes']) or '-')[:14]:<14}  "
            f"{row['created_at']:%Y-%m-%d %H:%M:%S}  {duration}"
        )
    if next_page:
        lines.append(f"More: {next_page}")
    return lines


def detached_lines(run_id: int, trace_id: str) -> list[str]:
    """What ``run_pipeline --detach`` prints once the run is queued."""
    return [
        f"Run ID: {run_id}",
        f"Trace ID: {trace_id}",
        f"Follow it with: orchestrator pr watch {run_id}",
    ]


def _position_lines(run: PipelineRun, rows: list[NodeRun]) -> list[str]:
    """Where the run is: the nodes running, those ready (to resume from, when paused), and the
    joins waiting for more of their predecessors."""
    lines = []
    if running := _ids(rows, NodeStatus.RUNNING):
        lines.append(f"  Running:     {', '.join(running)}")
    if ready := _ids(rows, NodeStatus.QUEUED, NodeStatus.RETRYING):
        label = "Resume from:" if run.status == RunStatus.PAUSED else "Ready:      "
        lines.append(f"  {label} {', '.join(ready)}")
    if waiting := _ids(rows, NodeStatus.WAITING):
        lines.append(f"  Waiting:     {', '.join(waiting)} (a join: for more branches to end)")
    return lines


def outcome_error(run: PipelineRun) -> str | None:
    """The error a command exits with for a run that failed or was cancelled, else None."""
    if run.status == RunStatus.FAILED:
        # The display above (or the JSON) already says why; the exit line only says that.
        return f"Pipeline run {run.pk} failed"
    if run.status == RunStatus.CANCELLED:
        return f"Pipeline run {run.pk} was cancelled"
    return None


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)
