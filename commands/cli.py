"""The ``orchestrator`` console script: the management commands, with orchestrator.settings."""

from __future__ import annotations

import os
import sys

COMMANDS = (
    ("run_pipeline", "Run a pipeline (stored, from a file, or built in); inline or on workers."),
    ("pipelinerun", "Pause, cancel, resume, list, status and watch runs (alias: pr)."),
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
  DATABASE_URL       database (default: SQLite file orchestrator.sqlite3 here)
  CELERY_BROKER_URL  broker; unset runs pipelines inline in this process
  CLARIFAI_PAT       Clarifai token for mirroring run control
  ORCHESTRATOR_URL, ORCHESTRATOR_TOKEN
                     with no DATABASE_URL: 'pr' and 'run_pipeline' go through a server's API
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
    from django.core.management import execute_from_command_line

    execute_from_command_line(["orchestrator", *argv[1:]])


if __name__ == "__main__":
    main()
