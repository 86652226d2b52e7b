"""``pipelinerun`` (alias ``pr``): pause, cancel, resume, list, status and watch runs."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.core.management.base import CommandError

from commands.base import OrchestratorCommand, RawHelpFormatter
from orchestrator.state import ALLOWED_WHEN, TERMINAL, Action, NodeStatus, RunStatus

# What a verb needs is imported when it runs: `--help` is answered without Django set up.
if TYPE_CHECKING:
    from orchestrator.changes import Follower
    from orchestrator.models import PipelineRun

CLARIFAI_IDS = ("user_id", "app_id", "pipeline_id", "pipeline_version_id")

CONTROL_HELP = {
    Action.PAUSE: (
        "Pause a pipeline run.",
        "The node in flight finishes and its result is kept; the next node does not start.\n"
        "A queued run is paused before any node starts.\n" + ALLOWED_WHEN[Action.PAUSE],
    ),
    Action.CANCEL: (
        "Cancel a pipeline run.",
        "No further node starts; a node that honours cancel (such as wait) stops within a\n"
        "fraction of a second.\n" + ALLOWED_WHEN[Action.CANCEL],
    ),
    Action.RESUME: (
        "Resume a paused pipeline run.",
        "Nodes completed before the pause never run again; the run goes on from the node it\n"
        "paused before. A pause that has not taken effect yet (Pausing) is withdrawn.\n"
        + ALLOWED_WHEN[Action.RESUME],
    ),
}


def _examples(verb: str) -> str:
    return (
        "examples:\n"
        f"  orchestrator pr {verb} 42\n"
        f"  orchestrator pipelinerun {verb} --pipeline_version_run_id=42\n"
        f"  orchestrator pr {verb} <run_id> --user_id=U --app_id=A --pipeline_id=P "
        "--pipeline_version_id=V\n"
        f"  python manage.py pr {verb} 42 --wait --json\n"
        "\n"
        "The run id is a local run id or the Clarifai pipeline_version_run_id of a linked run.\n"
        "For a Clarifai run with no local record, the Clarifai ids come from the flags, else\n"
        "from config-lock.yaml in the current directory; CLARIFAI_PAT must be set.\n"
    )


class Command(OrchestratorCommand):
    help = (
        "Control pipeline runs from any host: pause, cancel, resume; and list, status, watch.\n"
        "Run 'orchestrator pr <verb> --help' for each verb."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        verbs = parser.add_subparsers(
            dest="verb", metavar="{pause,cancel,resume,list,status,watch}"
        )
        verbs.required = True
        for action, (summary, details) in CONTROL_HELP.items():
            sub = verbs.add_parser(
                str(action),
                help=summary,
                description=f"{summary}\n\n{details}",
                epilog=_examples(str(action)),
                formatter_class=RawHelpFormatter,
            )
            sub.add_argument(
                "run_id", nargs="?", help="Local run id or Clarifai pipeline version run id."
            )
            sub.add_argument("--pipeline_version_run_id", help="The run id, as a flag.")
            for name in CLARIFAI_IDS:
                sub.add_argument(f"--{name}", help="Clarifai id (default: config-lock.yaml).")
            sub.add_argument(
                "--wait", action="store_true", help="Block until the change has taken effect."
            )
            sub.add_argument(
                "--timeout",
                type=float,
                default=120.0,
                help="Seconds --wait may block (default: 120).",
            )
            sub.add_argument("--json", action="store_true", help="Print the outcome as JSON.")

        ls = verbs.add_parser(
            "list",
            help="List runs, newest first.",
            formatter_class=RawHelpFormatter,
            epilog="examples:\n  orchestrator pr list --status RUNNING\n"
            "  orchestrator pr list --definition health-check --page 2 --json\n",
        )
        ls.add_argument("--status", type=str.upper, choices=[s.value for s in RunStatus])
        ls.add_argument("--definition", metavar="NAME", help="Only runs of this pipeline.")
        ls.add_argument("--limit", type=int, default=20, help="Runs per page (default: 20).")
        ls.add_argument("--page", type=int, default=1, help="Page number, from 1.")
        ls.add_argument("--json", action="store_true")

        st = verbs.add_parser(
            "status",
            help="A run, its nodes and its event timeline.",
            formatter_class=RawHelpFormatter,
            epilog="examples:\n  orchestrator pr status 42\n  orchestrator pr status 42 --json\n",
        )
        st.add_argument("run_id")
        st.add_argument("--json", action="store_true")

        wt = verbs.add_parser(
            "watch",
            help="Follow a run live until it ends or pauses.",
            formatter_class=RawHelpFormatter,
            epilog="example:\n  orchestrator pr watch 42\n",
        )
        wt.add_argument("run_id")
        wt.add_argument(
            "--interval",
            type=float,
            default=0.2,
            help="Seconds between polls where changes are not announced (SQLite).",
        )

    def run(self, **opts: Any) -> None:
        verb = opts["verb"]
        if verb in ("pause", "cancel", "resume"):
            self._control(Action(verb), opts)
        elif verb == "list":
            self._list(opts)
        elif verb == "status":
            self._status(opts)
        else:
            self._watch(opts)

    # --- pause / cancel / resume ------------------------------------------------------------

    def _control(self, action: Action, opts: dict[str, Any]) -> None:
        from orchestrator import control, dispatch

        ref = opts["run_id"] or opts["pipeline_version_run_id"]
        if not ref:
            raise CommandError(
                f"Give the run id: as an argument (orchestrator pr {action} 42) or as "
                f"--pipeline_version_run_id=42",
                returncode=2,
            )
        ids = {name: opts[name] for name in CLARIFAI_IDS}
        run = control.find_run(ref)
        if run is None:
            self._control_remote(action, str(ref), ids, opts)
            return
        control.store_link(run, **ids)
        if action == Action.RESUME and dispatch.get().inline:
            self._resume_inline(run.pk, opts)
            return
        result = control.signal(run.pk, action)
        run = result.run
        if opts["wait"] and not result.noop:
            run = self._wait(run.pk, action, opts["timeout"])
        if opts["json"]:
            from commands import display

            data = {**result.as_dict(), "status": run.status}
            if opts["wait"]:
                data["waited"] = True
            self.line(display.dumps(data))
        else:
            self.line(result.message)
            if opts["wait"] and run.status != result.status:
                self.line(f"Pipeline run {run.pk} is now {run.status}.")

    def _resume_inline(self, run_id: int, opts: dict[str, Any]) -> None:
        """No broker: the rest of the run executes here, and ends with the result display."""
        from commands import display
        from commands.progress import Progress, executing_here
        from orchestrator import control
        from orchestrator.models import PipelineRun

        progress = Progress(sys.stderr, enabled=not opts["json"])
        with executing_here(run_id, progress, opts["json"]):
            result = control.signal(run_id, Action.RESUME)
        run = PipelineRun.objects.get(pk=run_id)
        if opts["json"]:
            self.line(display.dumps({**result.as_dict(), "status": run.status}))
        else:
            self.line(result.message)
            if result.previous == RunStatus.PAUSED:
                self.lines(["", *display.result_lines(run)])
        if error := display.outcome_error(run):
            raise CommandError(error)

    def _wait(self, run_id: int, action: Action, timeout: float) -> PipelineRun:
        from orchestrator import changes

        with changes.Follower(run_id, interval=0.1) as follower:
            return self._wait_for(run_id, action, timeout, follower)

    def _wait_for(
        self, run_id: int, action: Action, timeout: float, follower: Follower
    ) -> PipelineRun:
        from orchestrator.models import NodeRun, PipelineRun

        deadline = time.monotonic() + timeout
        while True:
            run = PipelineRun.objects.get(pk=run_id)
            status = RunStatus(run.status)
            if action == Action.PAUSE and status in (RunStatus.PAUSED, *TERMINAL):
                return run
            if action == Action.CANCEL and status in TERMINAL:
                return run
            if action == Action.RESUME and (
                status in (*TERMINAL, RunStatus.PAUSED, RunStatus.PAUSING)
                or NodeRun.objects.filter(run_id=run_id, status=NodeStatus.RUNNING).exists()
            ):
                return run
            if time.monotonic() > deadline:
                raise CommandError(
                    f"Timed out after {timeout:g} s waiting for pipeline run {run_id} to {action} "
                    f"(it is {status})"
                )
            follower.wait(max(deadline - time.monotonic(), 0))

    def _control_remote(
        self, action: Action, ref: str, ids: dict[str, Any], opts: dict[str, Any]
    ) -> None:
        """No local run: patch the Clarifai pipeline version run directly, like `clarifai pr`."""
        from commands import display
        from orchestrator import clarifai
        from orchestrator.errors import ClarifaiError

        try:
            resolved = clarifai.resolve_ids(ref, **ids)
        except ClarifaiError as exc:
            if any(ids.values()) or (Path.cwd() / clarifai.CONFIG_LOCK).exists():
                raise CommandError(
                    f"Pipeline run not found: {ref}. No local run has this id, and the Clarifai "
                    f"ids to reach it are incomplete. {exc}"
                ) from exc
            raise CommandError(
                f"Pipeline run not found: {ref}. No local run has this id, and no Clarifai ids "
                f"were given to reach a Clarifai run: pass --user_id, --app_id, --pipeline_id and "
                f"--pipeline_version_id, or run from a directory with config-lock.yaml."
            ) from exc
        clarifai.patch_run_status(resolved, clarifai.STATUS_CODES[str(action)])
        done = {Action.PAUSE: "paused", Action.CANCEL: "cancelled", Action.RESUME: "resumed"}[
            action
        ]
        message = f"Pipeline version run {ref} has been {done}."
        if opts["json"]:
            self.line(
                display.dumps(
                    {
                        "pipeline_version_run_id": ref,
                        "action": str(action),
                        "status": clarifai.STATUS_CODES[str(action)],
                        "message": message,
                    }
                )
            )
        else:
            self.line(message)

    # --- list / status / watch ----------------------------------------------------------------

    def _list(self, opts: dict[str, Any]) -> None:
        from commands import display
        from orchestrator.models import PipelineRun

        if opts["limit"] < 1 or opts["page"] < 1:
            raise CommandError("--limit and --page must be at least 1")
        runs = PipelineRun.objects.all()
        if opts["status"]:
            runs = runs.filter(status=opts["status"])
        if opts["definition"]:
            runs = runs.filter(pipeline_name=opts["definition"])
        start = (opts["page"] - 1) * opts["limit"]
        fields = (
            "id",
            "pipeline_name",
            "status",
            "current_node",
            "source",
            "environment",
            "created_at",
            "duration_ms",
        )
        page = list(runs.order_by("-id").values(*fields)[start : start + opts["limit"] + 1])
        more = len(page) > opts["limit"]
        page = page[: opts["limit"]]
        if opts["json"]:
            self.line(
                display.dumps(
                    {"page": opts["page"], "limit": opts["limit"], "has_more": more, "runs": page}
                )
            )
            return
        if not page:
            self.line("No pipeline runs match." if opts["page"] == 1 else "No more pipeline runs.")
            return
        self.line(
            f"{'RUN':>6}  {'STATUS':<10}  {'PIPELINE':<24}  {'NODE':<14}  {'CREATED':<19}  DURATION"
        )
        for row in page:
            duration = (
                f"{row['duration_ms'] / 1000:.2f}s" if row["duration_ms"] is not None else "-"
            )
            self.line(
                f"{row['id']:>6}  {row['status']:<10}  {row['pipeline_name'][:24]:<24}  "
                f"{(row['current_node'] or '-')[:14]:<14}  "
                f"{row['created_at']:%Y-%m-%d %H:%M:%S}  {duration}"
            )
        if more:
            self.line(f"More: orchestrator pr list --page {opts['page'] + 1}")

    def _status(self, opts: dict[str, Any]) -> None:
        from commands import display
        from orchestrator import control, mirror

        run = control.get_run(opts["run_id"])
        if opts["json"]:
            data = display.run_as_dict(run, events=True)
            if run.is_linked:
                data["clarifai"]["mirror"] = mirror.state(run)
            self.line(display.dumps(data))
            return
        self.lines(display.status_lines(run))

    def _watch(self, opts: dict[str, Any]) -> None:
        from commands import display
        from commands.progress import Progress, follow
        from orchestrator import control

        run = control.get_run(opts["run_id"])
        progress = Progress(sys.stdout)
        progress.say(f"Watching pipeline run {run.pk} ({run.pipeline_name}): {run.status}")
        try:
            run = follow(run.pk, progress, interval=opts["interval"])
        except KeyboardInterrupt:
            self.line(f"Stopped watching pipeline run {run.pk}; it keeps going.")
            return
        self.line(display.final_line(run))
