"""Django admin for definitions, runs, node runs and events; run control goes through control."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest

from orchestrator import control, definitions, diagrams
from orchestrator.errors import OrchestratorError
from orchestrator.models import NodeRun, PipelineDefinition, PipelineRun, RunEvent
from orchestrator.state import OPEN_NODES, Action


@admin.register(PipelineDefinition)
class PipelineDefinitionAdmin(admin.ModelAdmin):
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


@admin.register(PipelineRun)
class PipelineRunAdmin(admin.ModelAdmin):
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
class RunEventAdmin(admin.ModelAdmin):
    list_display = ("run", "kind", "node_id", "host", "pid", "at")
    list_filter = ("kind",)
    readonly_fields = [f.name for f in RunEvent._meta.fields]
