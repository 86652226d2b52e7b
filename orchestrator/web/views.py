"""The console's pages: runs, one run (live), definitions; sign-in through Django's auth.

Every change goes through :mod:`orchestrator.control` or :mod:`orchestrator.web.runs`, so a
refused pause shows the very sentence ``orchestrator pr pause`` prints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_POST

from orchestrator import control, definitions, dispatch, documents
from orchestrator.errors import OrchestratorError, RunNotFound
from orchestrator.models import PipelineDefinition, PipelineRun
from orchestrator.state import TERMINAL, Action, Outcome, RunStatus, transition
from orchestrator.web import access, graph, runs

View = Callable[..., HttpResponse]


def staff_only(view: View) -> View:
    """Anonymous visitors go to the sign-in page; signed-in users who are not staff get 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not access.may_view(request.user):
            raise PermissionDenied(access.VIEW_DENIED)
        return view(request, *args, **kwargs)

    return wrapper


def _wants_json(request: HttpRequest) -> bool:
    return request.headers.get("X-Requested-With") == "fetch"


# --- runs ---------------------------------------------------------------------------------------


@require_GET
@staff_only
def run_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status") or None
    if status and status not in RunStatus.__members__:
        status = None
    try:
        page = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        page = 1
    found = runs.runs_page(
        status=status,
        definition=request.GET.get("definition") or None,
        search=request.GET.get("q") or None,
        page=page,
    )
    names = (
        PipelineRun.objects.order_by("pipeline_name")
        .values_list("pipeline_name", flat=True)
        .distinct()
    )
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "orchestrator_web/runs.html",
        {
            "found": found,
            "statuses": [s.value for s in RunStatus],
            "names": list(names),
            "status": status or "",
            "definition": request.GET.get("definition", ""),
            "q": request.GET.get("q", ""),
            "query": query.urlencode(),
        },
    )


def _run_or_404(run_id: int) -> PipelineRun:
    run = PipelineRun.objects.filter(pk=run_id).first()
    if run is None:
        raise Http404(f"Pipeline run not found: {run_id}")
    return run


def _allowed_actions(run: PipelineRun) -> list[str]:
    """The buttons the state table allows now (a repeated signal is not offered)."""
    return [
        str(action)
        for action in (Action.PAUSE, Action.RESUME, Action.CANCEL)
        if transition(run.status, action) not in (Outcome.REFUSED, Outcome.NOOP)
    ]


def _run_context(request: HttpRequest, run: PipelineRun) -> dict[str, Any]:
    document = runs.run_document(run)
    statuses = {node["id"]: node["status"] for node in document["nodes"]}
    layout = graph.layout(run.config.get("nodes", []) if isinstance(run.config, dict) else [])
    node_rows = [
        {**node, "output_json": json.dumps(node["output"], indent=2, ensure_ascii=False)}
        for node in document["nodes"]
    ]
    node_runs = documents.node_runs(run)
    return {
        "run": run,
        "doc": document,
        "nodes": node_rows,
        "layout": layout,
        "statuses": statuses,
        "timeline": documents.timeline(run, node_runs),
        "actions": _allowed_actions(run) if access.may_control(request.user) else [],
        "terminal": RunStatus(run.status) in TERMINAL,
    }


@require_GET
@staff_only
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_or_404(run_id)
    return render(request, "orchestrator_web/run.html", _run_context(request, run))


#: The parts of the run page that the live poll replaces.
LIVE_PARTS = ("summary", "actions", "nodes", "timeline")


@require_GET
@staff_only
def run_live(request: HttpRequest, run_id: int) -> HttpResponse:
    """The run's changing parts, for the page's poll: node statuses and re-rendered sections."""
    run = _run_or_404(run_id)
    context = _run_context(request, run)
    html = {
        part: render_to_string(f"orchestrator_web/run_{part}.html", context, request=request)
        for part in LIVE_PARTS
    }
    return JsonResponse(
        {
            "status": run.status,
            "terminal": context["terminal"],
            "nodes": context["statuses"],
            "html": html,
        }
    )


@require_POST
@staff_only
def run_signal(request: HttpRequest, run_id: int, verb: str) -> HttpResponse:
    if verb not in ("pause", "cancel", "resume"):
        raise Http404(f"No such action: {verb}")
    if not access.may_control(request.user):
        raise PermissionDenied(access.CONTROL_DENIED)
    try:
        result = control.signal(run_id, Action(verb))
    except RunNotFound as exc:
        raise Http404(str(exc)) from exc
    except OrchestratorError as exc:  # refused by the state table: the CLI's sentence
        if _wants_json(request):
            return JsonResponse({"ok": False, "message": str(exc)}, status=409)
        messages.error(request, str(exc))
    else:
        if _wants_json(request):
            return JsonResponse({"ok": True, "message": result.message, **result.as_dict()})
        messages.success(request, result.message)
    return redirect("console:run", run_id=run_id)


# --- definitions --------------------------------------------------------------------------------


@require_GET
@staff_only
def definition_list(request: HttpRequest) -> HttpResponse:
    stored = PipelineDefinition.objects.order_by("name")
    return render(request, "orchestrator_web/definitions.html", {"definitions": stored})


@staff_only
def definition_detail(request: HttpRequest, name: str) -> HttpResponse:
    stored = PipelineDefinition.objects.filter(name=name).first()
    if stored is None:
        raise Http404(f"Pipeline definition not found: {name}")
    form = {"payload": "{}", "source": "console", "environment": "development"}
    if request.method == "POST":
        if not access.may_control(request.user):
            raise PermissionDenied(access.CONTROL_DENIED)
        form = {key: request.POST.get(key, value) for key, value in form.items()}
        started = _start_from_form(request, name, form)
        if started is not None:
            return redirect("console:run", run_id=started.pk)
    problems = definitions.validate(stored.config)
    nodes = stored.config.get("nodes", []) if isinstance(stored.config, dict) else []
    return render(
        request,
        "orchestrator_web/definition.html",
        {
            "definition": stored,
            "config": json.dumps(
                documents.redacted_definition(stored.config), indent=2, ensure_ascii=False
            ),
            "problems": problems,
            "layout": graph.layout(nodes),
            "statuses": {},
            "form": form,
            "may_start": access.may_control(request.user),
            "queued": not dispatch.get().inline,
        },
    )


def _start_from_form(request: HttpRequest, name: str, form: dict[str, str]) -> PipelineRun | None:
    try:
        payload = json.loads(form["payload"] or "{}")
    except json.JSONDecodeError as exc:
        messages.error(request, f"Invalid JSON in the payload: {exc}")
        return None
    if not isinstance(payload, dict):
        messages.error(request, "Payload must be a JSON object")
        return None
    try:
        definition, stored = runs.resolve(name, None)
        return runs.start(
            definition,
            stored,
            payload=payload,
            source=form["source"] or "console",
            environment=form["environment"] or "development",
        )
    except OrchestratorError as exc:
        messages.error(request, str(exc))
        return None


@staff_only
def definition_validate(request: HttpRequest) -> HttpResponse:
    text = request.POST.get("config", "") if request.method == "POST" else ""
    problems: list[str] | None = None
    count = 0
    if request.method == "POST":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            problems = [f"Invalid JSON: {exc}"]
        else:
            problems = definitions.validate(data)
            count = 0 if problems else len(data["nodes"])
    return render(
        request,
        "orchestrator_web/validate.html",
        {"text": text, "problems": problems, "count": count, "checked": problems is not None},
    )
