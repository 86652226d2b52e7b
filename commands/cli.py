"""The ``orchestrator`` console script: the management commands, with orchestrator.settings."""

from __future__ import annotations

import os
import sys

COMMANDS = (
    ("run_pipeline", "Run a pipeline (stored, from a file, or built in); inline or on workers."),
    ("pipelinerun", "Pause, cancel, resume, list, status and watch runs (alias: pr)."),
    ("pipeline", "List, show, validate and save stored pipeline definitions."),
    ("worker", "Start a Celery worker for pipeline nodes."),
    ("recover", "Re-dispatch lost nodes and stalled runs."),
    ("migrate", "Create or upgrade the database tables (SQLite does this on first use)."),
)

USAGE = """usage: orchestrator <command> [options]

A Celery-backed pipeline orchestrator.

commands:
{commands}

Run 'orchestrator <command> --help' for a command's options.
Every command is also 'python manage.py <command>'; other Django commands work too.

environment:
  DATABASE_URL       database (default: SQLite file orchestrator.sqlite3 here)
  CELERY_BROKER_URL  broker; unset runs pipelines inline in this process
  CLARIFAI_PAT       Clarifai token for mirroring run control
"""


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        listing = "\n".join(f"  {name:<14}{text}" for name, text in COMMANDS)
        sys.stdout.write(USAGE.format(commands=listing))
        return
    if argv[1] in ("--version", "version"):
        from orchestrator import __version__

        sys.stdout.write(f"orchestrator {__version__}\n")
        return
    if _is_help(argv):
        _print_help(argv)
    from django.core.management import execute_from_command_line

    execute_from_command_line(["orchestrator", *argv[1:]])


#: Our commands whose ``--help`` is answered without setting Django up (no apps, models or
#: database driver loaded): their modules import what a verb needs when it runs.
FAST_HELP = ("run_pipeline", "pipelinerun", "pr", "pipeline", "recover")


def _is_help(argv: list[str]) -> bool:
    return argv[1] in FAST_HELP and any(arg in ("-h", "--help") for arg in argv[2:])


def _print_help(argv: list[str]) -> None:
    """Print the command's help and exit as Django would; return if its module needs Django
    set up first, or the arguments turn out not to ask for help after all."""
    from importlib import import_module

    from django.core.exceptions import AppRegistryNotReady, ImproperlyConfigured

    try:
        command = import_module(f"commands.management.commands.{argv[1]}").Command()
    except (AppRegistryNotReady, ImproperlyConfigured):
        return
    command._called_from_command_line = True
    command.create_parser("orchestrator", argv[1]).parse_args(argv[2:])  # exits after help


if __name__ == "__main__":
    main()
