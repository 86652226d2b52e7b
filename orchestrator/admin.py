"""Django admin for definitions, runs, node runs and events; run control goes through control."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Prefetch, QuerySet
from django.forms.fields import InvalidJSONInput, JSONString
from django.http import HttpRequest

from orchestrator import control, definitions, diagrams, dispatch, limits
from orchestrator.errors import InputError, OrchestratorError
from orchestrator.models import NodeRun, PipelineDefinition, PipelineRun, RunEvent
from orchestrator.state import OPEN_NODES, Action


class DefinitionJSONField(forms.JSONField):
    """The config as JSON text; anything a database would refuse is a form error, not a crash."""

    def to_python(self, value: Any) -> Any:
        if self.disabled or value in self.empty_values:
            return super().to_python(value)
        if isinstance(value, list | dict | int | float | JSONString):
            return value
        try:
            converted = limits.loads(str(value), "the config")
        except InputError as exc:
            raise forms.ValidationError(str(exc), code="invalid") from None
        return JSONString(converted) if isinstance(converted, str) else converted

    def bound_data(self, data: Any, initial: Any) -> Any:
        if self.disabled or data is None:
            return super().bound_data(data, initial)
        try:
            return limits.loads(str(data), "the config")
        except InputError:
            return InvalidJSONInput(data)


class PipelineDefinitionForm(forms.ModelForm):
    """Refuses a config that ``definitions.validate`` refuses, listing every problem."""

    config = DefinitionJSONField()

    class Meta:
        model = PipelineDefinition
        fields = ("name", "description", "config", "version", "is_active")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        config = cleaned.get("config")
        if "config" in cleaned:
            problems = definitions.validate(config)
            if problems:
                self.add_error("config", forms.ValidationError(problems))
        return cleaned


@admin.register(PipelineDefinition)
class PipelineDefinitionAdmin(admin.ModelAdmin):
    form = PipelineDefinitionForm
    list_display = ("name", "version", "is_active", "updated_at")
    list_filter = ("is_active",)
    search_fields = ("name", "description")


class NodeRunInline(admin.TabularInline):
    model = NodeRun
    extra = 0
    can_delete = False
    fields = (
        "node_id",
        "node_type",
        "status",
        "attempt",
        "worker",
        "started_at",
        "duration_ms",
        "error",
        "reason",
    )
    readonly_fields = fields


class RunEventInline(admin.TabularInline):
    model = RunEvent
    extra = 0
    can_delete = False
    fields = ("at", "kind", "node_id", "host", "pid", "details")
    readonly_fields = fields


def _signal(action: Action):
    def apply(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
        if action == Action.RESUME and dispatch.get().inline:
            # Inline, the rest of each run would execute inside this web request.
            modeladmin.message_user(
                request,
                "Cannot resume runs from the admin: no broker is configured (CELERY_BROKER_URL), "
                "so the rest of the run would execute inside this web request. Resume it from "
                "a terminal: orchestrator pr resume <run id>",
                messages.ERROR,
            )
            return
        for run in queryset:
            try:
                result = control.signal(run.pk, action)
            except OrchestratorError as exc:
                modeladmin.message_user(request, str(exc), messages.ERROR)
            else:
                modeladmin.message_user(request, result.message, messages.SUCCESS)

    apply.__name__ = f"{action}_runs"
    apply.short_description = f"{str(action).capitalize()} selected runs"  # type: ignore[attr-defined]
    return apply


class ReadOnlyAdmin(admin.ModelAdmin):
    """Pages that show records without Add, Save or Delete: runs are made by run_pipeline and
    changed only by their workers and the control actions; the event trail is append-only."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PipelineRun)
class PipelineRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "pipeline_name",
        "status",
        "open_nodes",
        "source",
        "environment",
        "created_at",
        "duration_ms",
    )
    list_filter = ("status", "definition", "environment")
    search_fields = ("=id", "pipeline_name", "trace_id", "clarifai_pipeline_version_run_id")
    readonly_fields = [*(f.name for f in PipelineRun._meta.fields), "branches"]
    inlines = [NodeRunInline, RunEventInline]
    actions = [_signal(Action.PAUSE), _signal(Action.CANCEL), _signal(Action.RESUME)]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The nodes ready or running, fetched for a whole page at once.
        open_rows = NodeRun.objects.filter(status__in=OPEN_NODES).order_by("position", "id")
        return (
            super()
            .get_queryset(request)
            .prefetch_related(Prefetch("node_runs", queryset=open_rows, to_attr="open_rows"))
        )

    @admin.display(description="Nodes running or ready")
    def open_nodes(self, run: PipelineRun) -> str:
        rows = getattr(run, "open_rows", None)
        if rows is None:
            rows = list(run.node_runs.filter(status__in=OPEN_NODES))
        return ", ".join(f"{r.node_id} ({str(r.status).lower()})" for r in rows) or "-"

    @admin.display(description="Branches")
    def branches(self, run: PipelineRun) -> str:
        """Who follows whom (fan-outs, joins) and the on_failure path, from the run's snapshot."""
        try:
            definition = definitions.parse(run.config, name=run.pipeline_name)
        except OrchestratorError as exc:
            return str(exc)
        return "\n".join(diagrams.flow_lines(definition)) or "-"


@admin.register(RunEvent)
class RunEventAdmin(ReadOnlyAdmin):
    list_display = ("run", "kind", "node_id", "host", "pid", "at")
    list_filter = ("kind",)
    readonly_fields = [f.name for f in RunEvent._meta.fields]
