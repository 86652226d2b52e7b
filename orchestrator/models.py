"""Django models: stored definitions, runs, node runs and the run event trail."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from orchestrator.state import NodeStatus, RunStatus


def _choices(enum: type) -> list[tuple[str, str]]:
    return [(m.value, m.value.capitalize()) for m in enum]


class PipelineDefinition(models.Model):
    """A named pipeline definition stored in the database."""

    name = models.CharField(
        max_length=200, unique=True, help_text="Unique name used by --definition."
    )
    description = models.TextField(blank=True, default="")
    config = models.JSONField(help_text="The definition: nodes linked by next, and defaults.")
    version = models.PositiveIntegerField(default=1, help_text="Bumped on every save.")
    is_active = models.BooleanField(default=True, help_text="Inactive definitions cannot be run.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "pipeline definition"

    def __str__(self) -> str:
        return f"{self.name} (v{self.version})"


class PipelineRun(models.Model):
    """One execution of a pipeline; its id is the Run ID operators use."""

    trace_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    definition = models.ForeignKey(
        PipelineDefinition, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    pipeline_name = models.CharField(max_length=200, help_text="Definition name, file or built-in.")
    config = models.JSONField(help_text="Snapshot of the definition this run executes.")
    source = models.CharField(max_length=100, default="cli")
    environment = models.CharField(max_length=100, default="development")
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=_choices(RunStatus), default=RunStatus.QUEUED)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    queued_by = models.CharField(
        max_length=255, blank=True, default="", help_text="Host that queued it."
    )
    clarifai_user_id = models.CharField(max_length=200, blank=True, default="")
    clarifai_app_id = models.CharField(max_length=200, blank=True, default="")
    clarifai_pipeline_id = models.CharField(max_length=200, blank=True, default="")
    clarifai_pipeline_version_id = models.CharField(max_length=200, blank=True, default="")
    clarifai_pipeline_version_run_id = models.CharField(
        max_length=200, blank=True, default="", db_index=True
    )

    class Meta:
        ordering = ["-id"]
        verbose_name = "pipeline run"
        indexes = [
            models.Index(fields=["status", "-id"], name="run_status_idx"),
            models.Index(fields=["pipeline_name", "-id"], name="run_pipeline_idx"),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.pipeline_name}, {self.status})"

    def nodes_in(self, *statuses: str) -> list[str]:
        """Ids of this run's nodes in any of ``statuses``, in definition order."""
        rows = self.node_runs.filter(status__in=statuses).order_by("position", "id")
        return list(rows.values_list("node_id", flat=True))

    @property
    def is_linked(self) -> bool:
        """Whether this run mirrors its control changes to a Clarifai pipeline version run."""
        return bool(self.clarifai_pipeline_version_run_id)


class NodeRun(models.Model):
    """One node of one run: its status, attempts, worker and output."""

    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="node_runs")
    node_id = models.CharField(max_length=200)
    node_type = models.CharField(max_length=100)
    position = models.PositiveIntegerField(
        default=0, help_text="Order of the node in the definition."
    )
    status = models.CharField(
        max_length=16, choices=_choices(NodeStatus), default=NodeStatus.QUEUED
    )
    attempt = models.PositiveIntegerField(
        default=0, help_text="How many times the node was claimed."
    )
    task_id = models.CharField(max_length=255, blank=True, default="")
    worker = models.CharField(
        max_length=255, blank=True, default="", help_text="host:pid that ran it."
    )
    holder = models.CharField(
        max_length=255,
        blank=True,
        default="",
        help_text="The process holding the claim: host, pid namespace, pid and start time.",
    )
    losses = models.PositiveIntegerField(
        default=0, help_text="How many times a worker was lost while running this attempt."
    )
    heartbeat = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    reason = models.TextField(blank=True, default="", help_text="Why the node was skipped.")
    awaiting = models.PositiveIntegerField(
        default=0, help_text="Predecessors not ended yet (a join waits until none are left)."
    )
    reached = models.PositiveIntegerField(
        default=0, help_text="Predecessors that ended without being skipped."
    )
    dispatched_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the node was last handed to the broker (unset while the run is paused).",
    )

    class Meta:
        ordering = ["run_id", "position", "id"]
        verbose_name = "node run"
        constraints = [
            models.UniqueConstraint(fields=["run", "node_id"], name="noderun_unique_node")
        ]
        indexes = [models.Index(fields=["status", "heartbeat"], name="noderun_status_hb_idx")]

    def __str__(self) -> str:
        return f"{self.node_id} of run {self.run_id} ({self.status})"


class RunEvent(models.Model):
    """An append-only record of what happened to a run, when, and from where."""

    QUEUED = "queued"
    STARTED = "started"
    NODE_FAILED = "node failed"
    NODE_RETRY = "node retry"
    NODE_REDISPATCHED = "node redispatched"
    NODE_RECLAIMED = "node reclaimed"
    RECOVERY_FAILED = "recovery failed"
    PAUSE_REQUESTED = "pause requested"
    PAUSED = "paused"
    RESUMED = "resumed"
    CANCEL_REQUESTED = "cancel requested"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    FAILED = "failed"
    ON_FAILURE = "on failure started"
    MIRRORED = "mirrored"
    MIRROR_FAILED = "mirror failed"

    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=32)
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    host = models.CharField(max_length=255, blank=True, default="")
    pid = models.PositiveIntegerField(null=True, blank=True)
    node_id = models.CharField(max_length=200, blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    mirror_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="For a mirrored transition: until when one delivery holds the right to patch "
        "Clarifai with it (far in the future once it was patched or refused).",
    )

    class Meta:
        ordering = ["run_id", "id"]
        verbose_name = "run event"

    def __str__(self) -> str:
        return f"{self.kind} (run {self.run_id})"


class ApiToken(models.Model):
    """A bearer token for the HTTP API; only a hash of it is stored (see orchestrator.tokens)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    label = models.CharField(max_length=200, blank=True, default="")
    prefix = models.CharField(
        max_length=16, help_text="The token's first characters, to tell tokens apart."
    )
    key_hash = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the token.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"token {self.pk} ({self.prefix}…) of {self.user}"
