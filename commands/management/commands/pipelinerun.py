"""``pipelinerun`` (alias ``pr``): pause, cancel, resume, list, status, watch and monitor runs."""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from django.core.management.base import CommandError

from commands.base import OrchestratorCommand, RawHelpFormatter, number
from orchestrator import clarifai, runref
from orchestrator.errors import ClarifaiError, RunNotFound, UsageError
from orchestrator.state import ALLOWED_WHEN, Action, NodeStatus, RunStatus

# What a verb needs is imported when it runs: `--help` is answered without Django set up.
if TYPE_CHECKING:
    from commands.progress import Progress
    from orchestrator.models import PipelineRun

CLARIFAI_IDS = ("user_id", "app_id", "pipeline_id", "pipeline_version_id")
VERBS = ("pause", "cancel", "resume", "list", "status", "watch", "monitor")
#: Largest --limit and --page of ``pr list`` (the offset must fit the databases' integers).
MAX_LIMIT, MAX_PAGE = 1000, 10_000_000

CONTROL_HELP = {
    Action.PAUSE: (
        "Pause a pipeline run.",
        "The nodes in flight finish and their results are kept; no further node starts.\n"
        "A queued run is paused before any node starts.\n" + ALLOWED_WHEN[Action.PAUSE],
    ),
    Action.CANCEL: (
        "Cancel a pipeline run.",
        "No further node starts; a node that honours cancel (such as wait) stops within a\n"
        "fraction of a second.\n" + ALLOWED_WHEN[Action.CANCEL],
    ),
    Action.RESUME: (
        "Resume a paused pipeline run.",
        "Nodes completed before the pause never run again; the run goes on from the nodes it\n"
        "paused before (every branch that had not started). A pause that has not taken effect\n"
        "yet (Pausing) is withdrawn.\n" + ALLOWED_WHEN[Action.RESUME],
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
        "The run id is a local run id or the Clarifai pipeline_version_run_id of a linked run\n"
        "(--local or --remote chooses when one id is both). For a Clarifai run with no local\n"
        "record, the Clarifai ids come from the flags, else from config-lock.yaml in the current\n"
        "directory; CLARIFAI_PAT (and the user id) from the environment, else from the Clarifai\n"
        "CLI's current context (~/.config/clarifai/config, written by 'clarifai login').\n"
    )


def add_run_id(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The run id argument, the Clarifai ids that reach a Clarifai run, and --local/--remote."""
    parser.add_argument(
        "run_id",
        nargs=None if required else "?",
        help="Local run id or Clarifai pipeline version run id.",
    )
    for name in CLARIFAI_IDS:
        parser.add_argument(
            f"--{name}", help="Clarifai id (default: config-lock.yaml; user: Clarifai CLI config)."
        )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--local",
        action="store_const",
        const="local",
        dest="scope",
        help="The id is a local run id.",
    )
    scope.add_argument(
        "--remote",
        action="store_const",
        const="remote",
        dest="scope",
        help="The id is a Clarifai pipeline version run id.",
    )


def add_follow_options(parser: argparse.ArgumentParser) -> None:
    """Options of watch and its Clarifai-compatible name, monitor."""
    parser.add_argument(
        "--monitor_interval",
        "--interval",
        dest="interval",
        type=number(0.01, 3600, unit=" s"),
        default=None,
        help="Seconds between polls (default: 0.2 for a local run, 10 for a Clarifai run); "
        "a local run on PostgreSQL is re-read when a change is announced, not polled.",
    )
    parser.add_argument(
        "--timeout",
        type=number(0.01, 10**7, unit=" s"),
        help="Stop after this many seconds (exit 1) if the run is still going.",
    )
    parser.add_argument("--log_file", metavar="PATH", help="Also append the progress lines here.")
    parser.add_argument(
        "--json", action="store_true", help="Print the run as JSON when it ends (lines to stderr)."
    )


class Command(OrchestratorCommand):
    help = (
        "Control pipeline runs from any host: pause, cancel, resume; and list, status, watch\n"
        "(monitor is its Clarifai CLI name).\n"
        "Run 'orchestrator pr <verb> --help' for each verb."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        verbs = parser.add_subparsers(dest="verb", metavar="{" + ",".join(VERBS) + "}")
        verbs.required = True
        for action, (summary, details) in CONTROL_HELP.items():
            sub = verbs.add_parser(
                str(action),
                help=summary,
                description=f"{summary}\n\n{details}",
                epilog=_examples(str(action)),
                formatter_class=RawHelpFormatter,
            )
            add_run_id(sub, required=False)
            sub.add_argument("--pipeline_version_run_id", help="The run id, as a flag.")
            sub.add_argument(
                "--wait", action="store_true", help="Block until the change has taken effect."
            )
            sub.add_argument(
                "--timeout",
                type=number(0.01, 10**7, unit=" s"),
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
        ls.add_argument(
            "--limit",
            type=number(1, MAX_LIMIT, integer=True),
            default=20,
            help=f"Runs per page (default: 20, at most {MAX_LIMIT}).",
        )
        ls.add_argument(
            "--page", type=number(1, MAX_PAGE, integer=True), default=1, help="Page number, from 1."
        )
        ls.add_argument("--json", action="store_true")

        st = verbs.add_parser(
            "status",
            help="A run, its nodes and its event timeline.",
            formatter_class=RawHelpFormatter,
            epilog="examples:\n  orchestrator pr status 42\n  orchestrator pr status 42 --json\n",
        )
        add_run_id(st)
        st.add_argument("--json", action="store_true")

        for verb, summary in (
            ("watch", "Follow a run live until it ends or pauses."),
            ("monitor", "Follow a run live until it ends or pauses (Clarifai CLI name of watch)."),
        ):
            wt = verbs.add_parser(
                verb,
                help=summary,
                description=summary + "\nA Clarifai run with no local record is followed "
                "through Clarifai (GetPipelineVersionRun). Ctrl-C stops following; the run "
                "goes on (exit 0).",
                formatter_class=RawHelpFormatter,
                epilog=f"examples:\n  orchestrator pr {verb} 42\n"
                f"  orchestrator pr {verb} <clarifai_run_id> --timeout 3600 --monitor_interval 10 "
                "--log_file run.log\n",
            )
            add_run_id(wt)
            add_follow_options(wt)

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

    def _find(self, opts: dict[str, Any], ref: str) -> PipelineRun | None:
        """The local run ``ref`` names (None: none here), after checking the Clarifai flags."""
        from orchestrator import control

        for name in CLARIFAI_IDS:
            if opts[name] is not None and (problem := runref.clarifai_id_problem(opts[name])):
                raise UsageError(f"--{name} {problem}")
        return control.find_run(ref, opts["scope"])

    def _clarifai_ids(self, ref: str, opts: dict[str, Any]) -> clarifai.ClarifaiIds:
        """The Clarifai ids of a run with no local record, or why they cannot be had."""
        ids = {name: opts[name] for name in CLARIFAI_IDS}
        parsed = runref.parse(ref, opts["scope"])
        if opts["scope"] == "local" or parsed.clarifai_id is None:
            raise RunNotFound(f"Pipeline run not found: {ref}")
        try:
            return clarifai.resolve_ids(ref, **ids)
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

    # --- pause / cancel / resume ------------------------------------------------------------

    def _control(self, action: Action, opts: dict[str, Any]) -> None:
        from commands import display
        from orchestrator import control, dispatch

        ref = opts["run_id"] if opts["run_id"] is not None else opts["pipeline_version_run_id"]
        if ref is None:
            raise CommandError(
                f"Give the run id: as an argument (orchestrator pr {action} 42) or as "
                f"--pipeline_version_run_id=42",
                returncode=2,
            )
        run = self._find(opts, ref)
        if run is None:
            self._control_remote(action, ref, opts)
            return
        link = control.link_fields(**{name: opts[name] for name in CLARIFAI_IDS})
        if action == Action.RESUME and dispatch.get().inline:
            self._resume_inline(run.pk, link, opts)
            return
        result = control.signal(run.pk, action, link)
        run = result.run
        if opts["wait"] and not result.noop:
            run = self._wait(run.pk, action, opts["timeout"])
        if opts["json"]:
            data = {**result.as_dict(), "status": run.status}
            if opts["wait"]:
                data["waited"] = True
            self.line(display.dumps(data))
        else:
            self.line(result.message)
            if opts["wait"] and run.status != result.status:
                self.line(f"Pipeline run {run.pk} is now {run.status}.")

    def _resume_inline(self, run_id: int, link: dict[str, str], opts: dict[str, Any]) -> None:
        """No broker: say the run resumed, then run the rest here and end with the result."""
        from commands import display
        from commands.progress import Progress, executing_here
        from orchestrator import control, dispatch
        from orchestrator.models import PipelineRun

        dispatcher = dispatch.get()
        progress = Progress(sys.stderr, enabled=not opts["json"])
        with executing_here(run_id, progress, opts["json"]):
            with dispatcher.deferred():  # type: ignore[attr-defined]
                result = control.signal(run_id, Action.RESUME, link)
            if not opts["json"]:
                self.line(result.message)
                self.stdout.flush()
            dispatcher.run_pending()  # type: ignore[attr-defined]
        run = PipelineRun.objects.get(pk=run_id)
        if opts["json"]:
            self.line(display.dumps({**result.as_dict(), "status": run.status}))
        elif result.previous == RunStatus.PAUSED:
            self.lines(["", *display.result_lines(run)])
        if error := display.outcome_error(run):
            raise CommandError(error)

    def _wait(self, run_id: int, action: Action, timeout: float) -> PipelineRun:
        from commands.progress import wait_for_effect
        from orchestrator import changes
        from orchestrator.models import NodeRun, PipelineRun

        def fetch() -> tuple[PipelineRun, str, bool]:
            run = PipelineRun.objects.get(pk=run_id)
            running = NodeRun.objects.filter(run_id=run_id, status=NodeStatus.RUNNING).exists()
            return run, run.status, running

        # Re-read when the run's change is announced (PostgreSQL), else every 0.1 s.
        with changes.Follower(run_id, interval=0.1) as follower:
            return wait_for_effect(run_id, action, timeout, fetch, pause=follower.wait)

    def _control_remote(self, action: Action, ref: str, opts: dict[str, Any]) -> None:
        """No local run: patch the Clarifai pipeline version run directly, like `clarifai pr`."""
        from commands import display

        resolved = self._clarifai_ids(ref, opts)
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
        from orchestrator.web.runs import runs_page

        found = runs_page(
            status=opts["status"],
            definition=opts["definition"],
            page=opts["page"],
            limit=opts["limit"],
        )
        if opts["json"]:
            self.line(
                display.dumps(
                    {
                        "page": found.page,
                        "limit": found.limit,
                        "has_more": found.has_more,
                        "runs": found.rows,
                    }
                )
            )
            return
        next_page = display.more_command(opts) if found.has_more else None
        self.lines(display.run_list_lines(found.rows, found.page, next_page))

    def _status(self, opts: dict[str, Any]) -> None:
        from commands import display
        from orchestrator import control, mirror

        run = control.get_run(opts["run_id"], opts["scope"])
        if opts["json"]:
            data = display.run_as_dict(run, events=True)
            if run.is_linked:
                data["clarifai"]["mirror"] = mirror.state(run)
            self.line(display.dumps(data))
            return
        self.lines(display.status_lines(run))

    def _watch(self, opts: dict[str, Any]) -> None:
        from commands import display
        from commands.progress import FollowTimeout, Progress, follow

        run = self._find(opts, opts["run_id"])
        with ExitStack() as stack:
            log = None
            if opts["log_file"]:
                try:
                    log = stack.enter_context(open(opts["log_file"], "a", encoding="utf-8"))
                except OSError as exc:
                    raise CommandError(
                        f"Cannot write the log file {opts['log_file']}: {exc.strerror}"
                    ) from exc
            stream = sys.stderr if opts["json"] else self.stdout
            if run is None:
                self._monitor_remote(opts["run_id"], opts, Progress(stream, log=log))
                return
            progress = Progress(stream, origin=run.created_at, log=log)
            progress.say(f"Watching pipeline run {run.pk} ({run.pipeline_name}): {run.status}")
            interval = opts["interval"] if opts["interval"] is not None else 0.2
            try:
                run = follow(run.pk, progress, interval=interval, timeout=opts["timeout"])
            except KeyboardInterrupt:
                self._stopped(run, opts, "Stopped watching")
                return
            except FollowTimeout as exc:
                self._stopped(exc.run, opts, f"Stopped watching after {opts['timeout']:g} s:")
                raise CommandError(
                    f"Timed out after {opts['timeout']:g} s: pipeline run {run.pk} is still "
                    f"{exc.run.status}"
                ) from None
        if opts["json"]:
            self.line(display.dumps(display.run_as_dict(run)))
        else:
            self.line(display.final_line(run))

    def _stopped(self, run: PipelineRun, opts: dict[str, Any], what: str) -> None:
        """Following stopped with the run going on: say so (not an error), and how to go on."""
        from commands import display
        from orchestrator.models import PipelineRun

        run = PipelineRun.objects.get(pk=run.pk)
        if opts["json"]:
            self.line(display.dumps(display.run_as_dict(run)))
        out: TextIO = sys.stderr if opts["json"] else self.stdout  # type: ignore[assignment]
        out.write(f"{what} pipeline run {run.pk}; it keeps going ({run.status}).\n")
        out.flush()

    def _monitor_remote(self, ref: str, opts: dict[str, Any], progress: Progress) -> None:
        """A Clarifai run with no local record: poll GetPipelineVersionRun until it ends."""
        from commands import display

        ids = self._clarifai_ids(ref, opts)
        interval = opts["interval"] if opts["interval"] is not None else 10.0
        started = time.monotonic()
        last = None
        progress.say(f"Monitoring Clarifai pipeline version run {ref}")
        try:
            while True:
                code, description = clarifai.run_status(ids)
                if code != last:
                    progress.say(f"{code}" + (f" ({description})" if description else ""))
                    last = code
                if code in clarifai.FINAL_CODES or code == "JOB_PAUSED":
                    break
                if opts["timeout"] is not None and time.monotonic() - started >= opts["timeout"]:
                    raise CommandError(
                        f"Timed out after {opts['timeout']:g} s: Clarifai pipeline version run "
                        f"{ref} is still {code}"
                    )
                time.sleep(interval)
        except KeyboardInterrupt:
            self.line(f"Stopped monitoring Clarifai pipeline version run {ref}; it keeps going.")
            return
        if opts["json"]:
            self.line(display.dumps({"pipeline_version_run_id": ref, "status": code}))
        else:
            self.line(f"Clarifai pipeline version run {ref} is {code}.")
