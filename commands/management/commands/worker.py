"""``worker``: a Celery worker for node tasks, with the project's defaults."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from django.core.management.base import CommandError

from commands.base import OrchestratorCommand
from orchestrator import conf


class Command(OrchestratorCommand):
    help = (
        "Start a Celery worker that executes pipeline nodes (needs CELERY_BROKER_URL).\n"
        "Options after the command go to 'celery worker' as they are; by default it listens on\n"
        "the 'orchestrator' queue and logs at INFO.\n"
        "examples:\n"
        "  orchestrator worker\n"
        "  orchestrator worker --concurrency 4 -n worker1@%h\n"
        "  orchestrator worker -Q orchestrator,gpu      # also take nodes routed to queue 'gpu'\n"
        "\nEvery worker runs the recovery pass every ORCHESTRATOR_RECOVERY_INTERVAL seconds (one\n"
        "pass at a time across all hosts), so no scheduler is needed."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "celery_args", nargs=argparse.REMAINDER, help="Options for celery worker."
        )

    def run_from_argv(self, argv: list[str]) -> None:
        # Pass every option through to Celery unparsed, including ones Django would claim.
        try:
            self.execute(
                celery_args=argv[2:],
                verbosity=1,
                no_color=False,
                force_color=False,
                skip_checks=True,
                traceback=False,
                pythonpath=None,
                settings=None,
            )
        except CommandError as exc:  # as Django's own run_from_argv: one line, no traceback
            self.stderr.write(f"{type(exc).__name__}: {exc}")
            sys.exit(exc.returncode)

    def run(self, **opts: Any) -> None:
        from workers.celery import app

        if any(a in ("-h", "--help") for a in opts["celery_args"]):
            # Help needs no broker: ours first, then every option celery worker takes.
            self.line(f"usage: orchestrator worker [celery worker options]\n\n{self.help}\n\n")
            self.stdout.flush()
            app.worker_main(["worker", "--help"])
            return
        if not conf.broker_url():
            raise CommandError(
                "CELERY_BROKER_URL is not set: workers need a broker "
                "(e.g. export CELERY_BROKER_URL=redis://localhost:6379/0)"
            )
        args = list(opts["celery_args"])
        if not any(a in ("-Q", "--queues") or a.startswith(("-Q", "--queues=")) for a in args):
            args += ["-Q", conf.get("ORCHESTRATOR_DEFAULT_QUEUE")]
        if not any(a.startswith(("-l", "--loglevel")) for a in args):
            args += ["--loglevel", "INFO"]
        app.worker_main(["worker", *args])
