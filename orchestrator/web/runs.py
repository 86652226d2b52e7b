"""What the console and the API share: starting a run, and reading pages of runs.

Both layers call these, which call the engine exactly as ``run_pipeline`` does, so a run
started from a browser or over HTTP is recorded and executed like one started from a terminal.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from django.db.models import Q

from orchestrator import builtin, catalog, definitions, dispatch, documents, engine, payloads
from orchestrator.errors import BrokerUnavailable, OrchestratorError
from orchestrator.models import NodeRun, PipelineDefinition, PipelineRun
from orchestrator.state import NodeStatus

#: The fields of a run in a listing (as ``pr list --json`` prints them).
LIST_FIELDS = (
    "id",
    "pipeline_name",
    "status",
    "source",
    "environment",
    "created_at",
    "duration_ms",
)
MAX_LIMIT = 200


def resolve(
    name: str | None, config: Any | None
) -> tuple[definitions.Definition, PipelineDefinition | None]:
    """The definition to run: a stored one by name, an inline one, or the built-in pipeline."""
    if name and config is not None:
        raise OrchestratorError("Give a stored definition's name or an inline definition, not both")
    if name:
        return catalog.runnable(name)
    if config is not None:
        fallback = config.get("name") if isinstance(config, dict) else None
        return definitions.parse(config, name=fallback or "inline"), None
    return definitions.parse(builtin.BUILTIN_DEFINITION), None


def start(
    definition: definitions.Definition,
    stored: PipelineDefinition | None,
    *,
    payload: Any,
    source: str,
    environment: str,
    link: engine.ClarifaiLink | None = None,
) -> PipelineRun:
    """Record a run and hand it to the executor: the workers, or this process's run thread."""
    checked = payloads.build(payload=json.dumps(payload if payload is not None else {}))
    dispatcher = dispatch.get()
    dispatcher.check()
    run = engine.create_run(
        definition,
        payload=checked,
        source=source,
        environment=environment,
        stored=stored,
        link=link,
    )
    try:
        engine.dispatch_run(run)
    except Exception as exc:  # the broker went away between the check and the send
        engine.abandon(run.pk, f"Could not queue the run: {exc}")
        raise BrokerUnavailable(f"Could not queue pipeline run {run.pk}: {exc}") from exc
    return run


@dataclass(frozen=True)
class RunPage:
    rows: list[dict[str, Any]]
    page: int
    limit: int
    has_more: bool


def runs_page(
    *,
    status: str | None = None,
    definition: str | None = None,
    search: str | None = None,
    page: int = 1,
    limit: int = 20,
) -> RunPage:
    """One page of runs, newest first, each with the nodes running now (``current_nodes``)."""
    if page < 1 or limit < 1:
        raise OrchestratorError("--limit and --page must be at least 1")
    limit = min(limit, MAX_LIMIT)
    runs = PipelineRun.objects.all()
    if status:
        runs = runs.filter(status=status.upper())
    if definition:
        runs = runs.filter(pipeline_name=definition)
    if search and search.strip():
        term = search.strip()
        match = Q(clarifai_pipeline_version_run_id=term)
        if term.isdigit():
            match |= Q(pk=int(term))
        if _is_uuid(term):
            match |= Q(trace_id=term)
        runs = runs.filter(match)
    start = (page - 1) * limit
    rows = list(runs.order_by("-id").values(*LIST_FIELDS)[start : start + limit + 1])
    has_more = len(rows) > limit
    rows = rows[:limit]
    running = current_nodes([row["id"] for row in rows])
    for row in rows:
        row["current_nodes"] = running.get(row["id"], [])
    return RunPage(rows, page, limit, has_more)


def _is_uuid(term: str) -> bool:
    try:
        uuid.UUID(term)
    except ValueError:
        return False
    return True


def current_nodes(run_ids: list[int]) -> dict[int, list[str]]:
    """The nodes running now, by run: read from the node records, so it holds for any number
    of nodes in flight at once."""
    found: dict[int, list[str]] = {}
    rows = (
        NodeRun.objects.filter(run_id__in=run_ids, status=NodeStatus.RUNNING)
        .order_by("position", "id")
        .values_list("run_id", "node_id")
    )
    for run_id, node_id in rows:
        found.setdefault(run_id, []).append(node_id)
    return found


def run_document(run: PipelineRun) -> dict[str, Any]:
    """A run as ``pr status --json`` shows it, with the shape of its graph (``graph``: what a
    remote CLI needs to describe its branches as the database CLI does)."""
    from orchestrator import mirror

    data = documents.run_as_dict(run, events=True)
    definition = documents.run_definition(run)
    data["graph"] = documents.graph_as_dict(definition) if definition is not None else None
    if run.is_linked:
        data["clarifai"]["mirror"] = mirror.state(run)
    return data
