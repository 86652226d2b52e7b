"""The API's endpoints: runs (list, read, start, pause, cancel, resume) and definitions."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from ninja import NinjaAPI, Query, Router, Swagger

from orchestrator import __version__, catalog, control, definitions, documents, engine
from orchestrator.api import auth
from orchestrator.api.schemas import (
    ClarifaiIds,
    ControlOut,
    DefinitionIn,
    DefinitionOut,
    DefinitionSummary,
    InvalidDefinition,
    Problem,
    RunList,
    RunOut,
    SavedDefinition,
    StartIn,
    StartOut,
    ValidateIn,
    Validation,
)
from orchestrator.errors import (
    BrokerUnavailable,
    DefinitionError,
    DefinitionNotFound,
    OrchestratorError,
    PayloadError,
    RunNotFound,
    TransitionRefused,
)
from orchestrator.models import PipelineDefinition
from orchestrator.state import Action, RunStatus
from orchestrator.web import runs as web_runs


class BundledSwagger(Swagger):
    """Swagger UI from the assets shipped in django-ninja (see settings), never from a CDN."""

    def render_page(self, request: HttpRequest, api: NinjaAPI, **kwargs: Any) -> HttpResponse:
        self.settings["url"] = self.get_openapi_url(api, kwargs)
        context = {"swagger_settings": json.dumps(self.settings), "api": api, "add_csrf": False}
        return render(request, self.template, context)


api = NinjaAPI(
    title="Pipeline orchestrator API",
    version=__version__,
    description="Watch, start and control pipeline runs. Authenticate with "
    "`Authorization: Bearer <token>` (create one with `orchestrator token create`).",
    openapi_url="/schema",
    docs_url="/docs",
    docs=BundledSwagger(),
    auth=auth.BearerToken(),
    urls_namespace="api",
)
runs = Router(tags=["runs"])
catalogue = Router(tags=["definitions"])

#: How each orchestrator error is answered; the sentence is the one the CLI prints.
STATUS_FOR: list[tuple[type[OrchestratorError], int]] = [
    (RunNotFound, 404),
    (DefinitionNotFound, 404),
    (TransitionRefused, 409),
    (PayloadError, 400),
    (BrokerUnavailable, 503),
    (OrchestratorError, 400),
]


@api.exception_handler(DefinitionError)
def _invalid_definition(request: HttpRequest, exc: DefinitionError) -> HttpResponse:
    return api.create_response(request, {"detail": str(exc), "problems": exc.problems}, status=422)


@api.exception_handler(OrchestratorError)
def _refused(request: HttpRequest, exc: OrchestratorError) -> HttpResponse:
    status = next(code for kind, code in STATUS_FOR if isinstance(exc, kind))
    return api.create_response(request, {"detail": str(exc)}, status=status)


ERRORS: dict[int, Any] = {401: Problem, 403: Problem, 404: Problem}


# --- runs ---------------------------------------------------------------------------------------


@runs.get("", response={200: RunList, **ERRORS, 400: Problem}, summary="List runs, newest first")
def list_runs(
    request: HttpRequest,
    status: RunStatus | None = None,
    definition: str | None = None,
    q: str | None = Query(None, description="A run id, trace id or Clarifai run id."),  # type: ignore[type-arg]
    page: int = 1,
    limit: int = 20,
) -> Any:
    auth.require_view(request)
    found = web_runs.runs_page(
        status=status.value if status else None,
        definition=definition,
        search=q,
        page=page,
        limit=limit,
    )
    rows = [{**row, "created_at": row["created_at"].isoformat()} for row in found.rows]
    return {"page": found.page, "limit": found.limit, "has_more": found.has_more, "runs": rows}


@runs.get("/{ref}", response={200: RunOut, **ERRORS}, summary="A run, its nodes and events")
def get_run(request: HttpRequest, ref: str) -> Any:
    auth.require_view(request)
    return web_runs.run_document(control.get_run(ref))


@runs.post(
    "",
    response={201: StartOut, **ERRORS, 400: Problem, 422: InvalidDefinition, 503: Problem},
    summary="Start a run of a stored or inline definition",
)
def start_run(request: HttpRequest, body: StartIn) -> Any:
    auth.require_control(request)
    definition, stored = web_runs.resolve(body.definition, body.config)
    link = engine.ClarifaiLink(**body.clarifai.dict()) if body.clarifai else None
    run = web_runs.start(
        definition,
        stored,
        payload=body.payload,
        source=body.source,
        environment=body.environment,
        link=link,
    )
    return 201, {"run_id": run.pk, "trace_id": str(run.trace_id), "status": run.status}


def _signal(request: HttpRequest, ref: str, action: Action, ids: ClarifaiIds | None) -> Any:
    auth.require_control(request)
    run = control.get_run(ref)
    # The link is stored in the same compare-and-set as the change: a refused signal writes nothing.
    link = control.link_fields(**ids.dict()) if ids is not None else None
    return control.signal(run.pk, action, link).as_dict()


CONTROL_ANSWERS: dict[int, Any] = {200: ControlOut, **ERRORS, 409: Problem}


@runs.post("/{ref}/pause", response=CONTROL_ANSWERS, summary="Pause a run")
def pause_run(request: HttpRequest, ref: str, ids: ClarifaiIds | None = None) -> Any:
    return _signal(request, ref, Action.PAUSE, ids)


@runs.post("/{ref}/cancel", response=CONTROL_ANSWERS, summary="Cancel a run")
def cancel_run(request: HttpRequest, ref: str, ids: ClarifaiIds | None = None) -> Any:
    return _signal(request, ref, Action.CANCEL, ids)


@runs.post("/{ref}/resume", response=CONTROL_ANSWERS, summary="Resume a paused run")
def resume_run(request: HttpRequest, ref: str, ids: ClarifaiIds | None = None) -> Any:
    return _signal(request, ref, Action.RESUME, ids)


# --- definitions --------------------------------------------------------------------------------


@catalogue.get("", response={200: list[DefinitionSummary], **ERRORS}, summary="List definitions")
def list_definitions(request: HttpRequest) -> Any:
    auth.require_view(request)
    return list(
        PipelineDefinition.objects.order_by("name").values(
            "name", "version", "is_active", "description", "updated_at"
        )
    )


@catalogue.post(
    "/validate",
    response={200: Validation, **ERRORS},
    summary="Check a definition: every problem at once",
)
def validate_definition(request: HttpRequest, body: ValidateIn) -> Any:
    auth.require_view(request)
    problems = definitions.validate(body.config)
    count = len(body.config["nodes"]) if not problems else 0
    return {"valid": not problems, "problems": problems, "nodes": count}


@catalogue.get("/{name}", response={200: DefinitionOut, **ERRORS}, summary="One definition")
def get_definition(request: HttpRequest, name: str) -> Any:
    auth.require_view(request)
    stored = PipelineDefinition.objects.filter(name=name).first()
    if stored is None:
        raise DefinitionNotFound(f"Pipeline definition not found: {name}")
    return {
        "name": stored.name,
        "version": stored.version,
        "is_active": stored.is_active,
        "description": stored.description,
        "updated_at": stored.updated_at,
        "config": documents.redacted_definition(stored.config),
    }


@catalogue.post(
    "",
    response={
        200: SavedDefinition,
        201: SavedDefinition,
        **ERRORS,
        400: Problem,
        422: InvalidDefinition,
    },
    summary="Create a definition, or update it (its version bumped when it changed)",
)
def save_definition(request: HttpRequest, body: DefinitionIn) -> Any:
    auth.require_save(request)
    stored, outcome = catalog.save(body.config, name=body.name, active=body.is_active)
    created = outcome == "created"
    answer = {"name": stored.name, "version": stored.version, "created": created}
    return (201 if created else 200), answer


api.add_router("/runs", runs)
api.add_router("/definitions", catalogue)
