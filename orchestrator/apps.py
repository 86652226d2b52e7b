"""Django application config for the orchestrator."""

from __future__ import annotations

from django.apps import AppConfig


class OrchestratorConfig(AppConfig):
    name = "orchestrator"
    verbose_name = "Pipeline orchestrator"
    default_auto_field = "django.db.models.BigAutoField"
