"""The ``orchestrator`` console script: the management commands, with orchestrator.settings."""

from __future__ import annotations

import importlib
import os
import sys

COMMANDS = (
    ("run_pipeline", "Run a pipeline (stored, from a file, or built in); inline or on workers."),
    ("pipelinerun", "Pause, cancel, resume, list, status, watch and monitor runs (alias: pr)."),
    ("pipeline", "List, show, validate and save stored pipeline definitions."),
    ("serve", "Serve the web console and the HTTP API (gunicorn)."),
    ("token", "Create, list and revoke API tokens."),
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
  DATABASE_URL       database (now: {database})
                     unset: one SQLite file per user, in ORCHESTRATOR_HOME if set, else in the
                     user data directory; the same runs from every directory and terminal
  CELERY_BROKER_URL  broker; unset runs pipelines inline in this process
  CLARIFAI_PAT       Clarifai token (else the Clarifai CLI's config, ~/.config/clarifai/config)
  ORCHESTRATOR_URL, ORCHESTRATOR_TOKEN
                     with no DATABASE_URL: 'pr' and 'run_pipeline' go through a server's API
"""

DEFAULT_SETTINGS = "orchestrator.settings"


def settings_problem() -> str | None:
    """Why the Django settings this process would use cannot serve the orchestrator, else None."""
    name = os.environ["DJANGO_SETTINGS_MODULE"]
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        return (
            f"DJANGO_SETTINGS_MODULE={name} cannot be imported ({exc}); unset it to use the "
            "orchestrator's own settings."
        )
    except Exception as exc:  # settings code can raise anything; the operator needs one line
        lines = str(exc).strip().splitlines()
        first = lines[0] if lines else type(exc).__name__
        return first if name == DEFAULT_SETTINGS else f"{first} (in {name})"
    if name != DEFAULT_SETTINGS and "orchestrator" not in getattr(module, "INSTALLED_APPS", ()):
        return (
            f"DJANGO_SETTINGS_MODULE={name} does not install the orchestrator: add "
            "'orchestrator' and 'commands' to its INSTALLED_APPS, or unset it."
        )
    return None


def database_location() -> str:
    from django.conf import settings

    from orchestrator.database import location

    return location(settings.DATABASES["default"])


def execute(argv: list[str]) -> None:
    """Run a Django command line; settings and database problems end in one line, exit 1."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", DEFAULT_SETTINGS)
    if (problem := settings_problem()) is not None:
        sys.stderr.write(f"Error: {problem}\n")
        sys.exit(1)
    from django.core.management import execute_from_command_line
    from django.db import DatabaseError

    try:
        execute_from_command_line(argv)
    except DatabaseError as exc:  # raised by Django's own commands, such as migrate
        from orchestrator.database import describe_error

        sys.stderr.write(f"Error: {describe_error(exc)}\n")
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", DEFAULT_SETTINGS)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        if (problem := settings_problem()) is not None:
            database = f"unknown: {problem}"
        else:
            database = database_location()
        listing = "\n".join(f"  {name:<14}{text}" for name, text in COMMANDS)
        sys.stdout.write(USAGE.format(commands=listing, database=database))
        return
    if argv[1] in ("--version", "version"):
        from orchestrator import __version__

        sys.stdout.write(f"orchestrator {__version__}\n")
        return
    if _is_help(argv):
        _print_help(argv)
    execute(["orchestrator", *argv[1:]])


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
