"""Django application config holding the orchestrator's management commands."""

from django.apps import AppConfig


class CommandsConfig(AppConfig):
    name = "commands"
    label = "orchestrator_commands"
    verbose_name = "Orchestrator commands"
