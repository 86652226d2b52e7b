"""Django application config for the web console (its templates and static files)."""

from __future__ import annotations

from django.apps import AppConfig


class WebConsoleConfig(AppConfig):
    name = "orchestrator.web"
    label = "orchestrator_web"
    verbose_name = "Pipeline orchestrator console"
