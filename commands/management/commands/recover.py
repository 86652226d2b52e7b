"""``recover``: one recovery pass, re-dispatching nodes and runs that nothing is executing."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import CommandError

from commands.base import OrchestratorCommand


class Command(OrchestratorCommand):
    help = (
        "Re-dispatch nodes whose worker went silent (stale heartbeat) and ready nodes that\n"
        "nothing is running (e.g. after the broker lost its data), branch by branch, and settle\n"
        "runs left pausing, cancelling or failing with no node running. Every worker already runs\n"
        "this pass periodically; one pass runs at a time across all hosts, and nothing starts\n"
        "twice. A node whose message still waits in its queue is not sent again.\n"
        "examples:\n  orchestrator recover --json\n"
        "  orchestrator recover --redispatch-after 0     # the broker just lost its data"
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--json", action="store_true", help="Print what was re-dispatched as JSON."
        )
        parser.add_argument(
            "--redispatch-after",
            type=_seconds,
            metavar="SECONDS",
            help="Count ready nodes as stalled once they waited this long for a worker (default: "
            "ORCHESTRATOR_REDISPATCH_AFTER); 0 = now.",
        )
        parser.add_argument(
            "--wait",
            type=_seconds,
            default=30.0,
            metavar="SECONDS",
            help="How long to wait for a pass running elsewhere to end (default: 30).",
        )

    def run(self, **opts: Any) -> None:
        from commands import display
        from orchestrator import recovery

        report = recovery.recover_under_lease(opts["wait"], opts["redispatch_after"])
        if report is None:
            raise CommandError(
                f"Another recovery pass is still running after {opts['wait']:g} s; try again."
            )
        if opts["json"]:
            self.line(display.dumps(report.as_dict()))
            return
        for run_id, node_id, reason in report.failed:
            what = f"node '{node_id}'" if node_id else "it"
            self.stderr.write(f"Run {run_id}: could not recover {what}: {reason}")
        if not report.total:
            self.line("Nothing to recover.")
            return
        for run_id, node_id in report.stale_nodes:
            self.line(f"Run {run_id}: node '{node_id}' lost its worker; re-dispatched.")
        for run_id, node_id in report.stalled_runs:
            self.line(f"Run {run_id}: nothing was running or queued; re-dispatched '{node_id}'.")
        for run_id, status in report.settled_runs:
            self.line(f"Run {run_id}: no node was left running; it is now {status}.")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more: {text!r}")
    return value
