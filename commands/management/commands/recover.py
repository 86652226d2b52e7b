"""``recover``: one recovery pass, re-dispatching nodes and runs that nothing is executing."""

from __future__ import annotations

import argparse
from typing import Any

from commands.base import OrchestratorCommand


class Command(OrchestratorCommand):
    help = (
        "Re-dispatch nodes whose worker went silent (stale heartbeat) and runs with nothing\n"
        "running or queued (e.g. after the broker lost its data). Safe to run at any time, on\n"
        "any number of hosts at once: nothing starts twice. Celery beat runs it periodically.\n"
        "example:\n  orchestrator recover --json"
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--json", action="store_true", help="Print what was re-dispatched as JSON."
        )

    def run(self, **opts: Any) -> None:
        from commands import display
        from orchestrator import recovery

        report = recovery.recover()
        if opts["json"]:
            self.line(display.dumps(report.as_dict()))
            return
        if not report.total:
            self.line("Nothing to recover.")
            return
        for run_id, node_id in report.stale_nodes:
            self.line(f"Run {run_id}: node '{node_id}' lost its worker; re-dispatched.")
        for run_id, node_id in report.stalled_runs:
            self.line(f"Run {run_id}: nothing was running or queued; re-dispatched '{node_id}'.")
