"""The API's request and answer shapes (they make the OpenAPI schema).

Runs are answered in the shape of ``orchestrator pr status --json`` (see orchestrator.documents),
plus the shape of the run's graph, so that scripts read the same documents from either.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ninja import Field, Schema


class Problem(Schema):
    detail: str


class InvalidDefinition(Schema):
    detail: str
    problems: list[str]


class NodeOut(Schema):
    id: str
    type: str
    status: str
    attempt: int
    worker: str | None
    started_at: str | None
    finished_at: str | None
    duration_ms: float | None
    output: Any = Field(None, description="The node's output, secrets redacted.")
    error: str | None
    reason: str | None = Field(None, description="Why the node was skipped.")
    after: list[str] = Field(description="The nodes it follows (several: a join).")
    next: list[str] = Field(description="The nodes that follow it (several: a fan-out).")
    on_failure_path: bool = Field(description="Whether it runs only once the run failed.")


class EventOut(Schema):
    at: str
    kind: str
    node_id: str | None
    host: str
    pid: int | None
    details: dict[str, Any]


class ClarifaiOut(Schema):
    user_id: str
    app_id: str
    pipeline_id: str
    pipeline_version_id: str
    pipeline_version_run_id: str
    mirror: str | None = Field(None, description="The last mirror attempt, in one line.")


class GraphNodeOut(Schema):
    id: str
    type: str
    next: list[str]
    when: Any = Field(None, description="The node's condition, as written.")


class GraphOut(Schema):
    name: str
    on_failure: str | None
    nodes: list[GraphNodeOut]


class RunOut(Schema):
    run_id: int
    trace_id: str
    status: str
    pipeline: str
    definition_id: int | None
    source: str
    environment: str
    running_nodes: list[str] = Field(description="The nodes running now.")
    ready_nodes: list[str] = Field(
        description="The nodes ready to start (to resume from, when paused)."
    )
    on_failure: str | None = Field(description="The node run once the run failed, if any.")
    error: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    duration_ms: float | None
    queued_by: str
    nodes: list[NodeOut]
    events: list[EventOut]
    clarifai: ClarifaiOut | None = None
    graph: GraphOut | None = Field(None, description="The run's graph, node configs left out.")


class RunRow(Schema):
    id: int
    pipeline_name: str
    status: str
    source: str
    environment: str
    created_at: str
    duration_ms: float | None
    current_nodes: list[str] = Field(description="The nodes running now.")


class RunList(Schema):
    page: int
    limit: int
    has_more: bool
    runs: list[RunRow]


class ClarifaiIds(Schema):
    user_id: str | None = None
    app_id: str | None = None
    pipeline_id: str | None = None
    pipeline_version_id: str | None = None


class ClarifaiLinkIn(Schema):
    user_id: str
    app_id: str
    pipeline_id: str
    pipeline_version_id: str
    pipeline_version_run_id: str


class StartIn(Schema):
    definition: str | None = Field(None, description="A stored definition's name.")
    config: dict[str, Any] | None = Field(None, description="An inline definition.")
    payload: dict[str, Any] = Field(default_factory=dict)
    source: str = "api"
    environment: str = "development"
    clarifai: ClarifaiLinkIn | None = Field(None, description="Link to a Clarifai run.")


class StartOut(Schema):
    run_id: int
    trace_id: str
    status: str


class ControlOut(Schema):
    run_id: int
    action: str
    previous_status: str
    status: str
    noop: bool
    message: str


class DefinitionSummary(Schema):
    name: str
    version: int
    is_active: bool
    description: str
    updated_at: datetime


class DefinitionOut(DefinitionSummary):
    config: Any = Field(description="The definition, secrets redacted.")


class DefinitionIn(Schema):
    config: dict[str, Any]
    name: str | None = Field(None, description="Default: the definition's name field.")
    is_active: bool = True


class SavedDefinition(Schema):
    name: str
    version: int
    created: bool


class ValidateIn(Schema):
    config: Any


class Validation(Schema):
    valid: bool
    problems: list[str]
    nodes: int
