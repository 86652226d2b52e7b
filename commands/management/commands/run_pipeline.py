"""``run_pipeline``: run a stored definition, a JSON file, or the built-in alert pipeline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.core.management.base import CommandError

from commands.base import OrchestratorCommand
from orchestrator import builtin, clarifai, definitions, limits, payloads, runref
from orchestrator.errors import DefinitionError, UsageError
from orchestrator.state import RunStatus

# What running needs is imported when it runs: `--help` is answered without Django set up.
if TYPE_CHECKING:
    from commands.progress import Progress
    from orchestrator.engine import ClarifaiLink
    from orchestrator.models import PipelineRun

EXAMPLES = """\
examples:
  orchestrator run_pipeline --definition health-check --payload '{"server": "web-01"}'
  orchestrator run_pipeline --config ./pipelines/custom.json --sample
  orchestrator run_pipeline --sample --source grafana          # the built-in alert pipeline
  orchestrator run_pipeline --definition health-check --dry-run
  orchestrator run_pipeline --definition health-check --detach --json
"""


class Command(OrchestratorCommand):
    help = (
        "Run a pipeline: a stored definition (--definition), a JSON file (--config), or the\n"
        "built-in alert pipeline (ingest → context → intelligence → notify). With no broker\n"
        "configured (CELERY_BROKER_URL unset) it runs inline here; with one, it is queued to\n"
        "workers and followed live until it ends (--detach returns at once)."
    )

    def create_parser(
        self, prog_name: str, subcommand: str, **kwargs: Any
    ) -> argparse.ArgumentParser:
        return super().create_parser(prog_name, subcommand, epilog=EXAMPLES, **kwargs)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        what = parser.add_argument_group("what to run")
        what.add_argument("--definition", metavar="NAME", help="A stored PipelineDefinition name.")
        what.add_argument("--config", metavar="FILE", help="A pipeline definition JSON file.")
        data = parser.add_argument_group("payload")
        data.add_argument(
            "--sample",
            action="store_true",
            help="Start from the sample payload for --source (grafana, alertmanager, "
            "generic; others get generic).",
        )
        data.add_argument(
            "--payload", metavar="JSON", help="A JSON object (merged over --sample/--file)."
        )
        data.add_argument("--file", metavar="PATH", help="A file holding a JSON object payload.")
        data.add_argument(
            "--source", default="cli", help="Where the payload came from (default: cli)."
        )
        data.add_argument(
            "--environment",
            default="development",
            help="Environment recorded on the run (default: development).",
        )
        how = parser.add_argument_group("how")
        how.add_argument(
            "--dry-run",
            action="store_true",
            help="Show what would run; record and execute nothing.",
        )
        how.add_argument(
            "--json",
            action="store_true",
            help="Print the finished run (or the dry run) as JSON and nothing else on stdout.",
        )
        how.add_argument(
            "--detach",
            action="store_true",
            help="Print the run id and return at once; needs a broker (CELERY_BROKER_URL).",
        )
        how.add_argument("--quiet", action="store_true", help="No live progress lines.")
        link = parser.add_argument_group("Clarifai link (mirror pause/cancel/resume)")
        link.add_argument("--pipeline_version_run_id", help="Link the run to this Clarifai run.")
        for name in ("user_id", "app_id", "pipeline_id", "pipeline_version_id"):
            link.add_argument(f"--{name}", help="Default: config-lock.yaml in this directory.")

    def run(self, **opts: Any) -> None:
        from commands import display
        from commands.progress import Progress, executing_here
        from orchestrator import dispatch, engine
        from orchestrator.models import PipelineRun

        if opts["definition"] and opts["config"]:
            raise CommandError("Cannot specify both --definition and --config")
        check_options(opts)
        definition, stored, label = self._definition(opts)
        sample = builtin.sample_payload(opts["source"]) if opts["sample"] else None
        payload = payloads.build(sample=sample, payload=opts["payload"], file=opts["file"])
        if opts["dry_run"]:
            shown = {
                "label": label,
                "source": opts["source"],
                "environment": opts["environment"],
                "payload": payload,
            }
            if opts["json"]:
                self.line(display.dumps(display.dry_run_as_dict(definition, **shown)))
            else:
                self.lines(display.dry_run_lines(definition, **shown))
            return
        link = self._link(opts)
        dispatcher = dispatch.get()
        if opts["detach"] and dispatcher.inline:
            raise CommandError(
                "--detach needs a broker: set CELERY_BROKER_URL (e.g. redis://localhost:6379/0) "
                "and start a worker (orchestrator worker); without one the run executes here, "
                "so run it without --detach"
            )
        dispatcher.check()
        run = engine.create_run(
            definition,
            payload=payload,
            source=opts["source"],
            environment=opts["environment"],
            stored=stored,
            link=link,
        )
        progress = Progress(sys.stderr, enabled=not opts["quiet"] and not opts["detach"])
        if dispatcher.inline:
            with executing_here(run.pk, progress, opts["json"]):
                engine.dispatch_run(run)
        else:
            try:
                self._queue(run, progress, opts)
            except StoppedFollowing:
                self._stopped(run, opts["json"])
                return
            if opts["detach"]:
                return
        self._show(PipelineRun.objects.get(pk=run.pk), opts["json"])

    def _definition(self, opts: dict[str, Any]) -> tuple[definitions.Definition, Any, str]:
        from orchestrator import catalog

        try:
            if opts["definition"]:
                definition, stored = catalog.runnable(opts["definition"])
                return definition, stored, f"Pipeline Definition: {stored.name}"
            if opts["config"]:
                data = definitions.load_file(opts["config"])
                name = data.get("name") if isinstance(data, dict) else None
                return (
                    definitions.parse(data, name=name or Path(opts["config"]).stem),
                    None,
                    f"Pipeline Config: {opts['config']}",
                )
            definition = definitions.parse(builtin.BUILTIN_DEFINITION)
            return definition, None, f"Pipeline Definition: {definition.name} (built-in)"
        except DefinitionError as exc:
            raise CommandError(str(exc)) from exc

    def _link(self, opts: dict[str, Any]) -> ClarifaiLink | None:
        from orchestrator import engine

        if not opts["pipeline_version_run_id"]:
            return None
        ids = clarifai.resolve_ids(
            opts["pipeline_version_run_id"],
            user_id=opts["user_id"],
            app_id=opts["app_id"],
            pipeline_id=opts["pipeline_id"],
            pipeline_version_id=opts["pipeline_version_id"],
        )
        return engine.ClarifaiLink(
            ids.user_id,
            ids.app_id,
            ids.pipeline_id,
            ids.pipeline_version_id,
            ids.pipeline_version_run_id,
        )

    def _queue(self, run: PipelineRun, progress: Progress, opts: dict[str, Any]) -> None:
        from commands import display
        from commands.progress import follow
        from orchestrator import engine

        try:
            engine.dispatch_run(run)
        except Exception as exc:  # the broker went away between the check and the send
            engine.abandon(run.pk, f"Could not queue the run: {exc}")
            raise CommandError(f"Could not queue pipeline run {run.pk}: {exc}") from exc
        if opts["detach"]:
            if opts["json"]:
                self.line(
                    display.dumps(
                        {
                            "run_id": run.pk,
                            "trace_id": str(run.trace_id),
                            "status": RunStatus.QUEUED.value,
                        }
                    )
                )
            else:
                self.lines(display.detached_lines(run.pk, str(run.trace_id)))
            return
        progress.say(f"Pipeline run {run.pk} queued (trace {run.trace_id})")
        try:
            follow(run.pk, progress)
        except KeyboardInterrupt:
            # Leaving a run going is not an error: say which run it is and how to reach it.
            raise StoppedFollowing(run.pk) from None

    def _stopped(self, run: PipelineRun, as_json: bool) -> None:
        from commands import display
        from orchestrator.models import PipelineRun

        run = PipelineRun.objects.get(pk=run.pk)
        if as_json:
            self.line(display.dumps(display.run_as_dict(run)))
        sys.stderr.write(
            f"Stopped following pipeline run {run.pk}; it keeps going ({run.status}).\n"
            f"  Watch it:  orchestrator pr watch {run.pk}\n"
            f"  Cancel it: orchestrator pr cancel {run.pk}\n"
        )
        sys.stderr.flush()

    def _show(self, run: PipelineRun, as_json: bool) -> None:
        from commands import display

        if as_json:
            self.line(display.dumps(display.run_as_dict(run)))
        else:
            self.lines(display.result_lines(run))
        if error := display.outcome_error(run):
            raise CommandError(error)


class StoppedFollowing(Exception):
    """Raised when Ctrl-C stops following a queued run (which goes on without us)."""


def check_options(opts: dict[str, Any]) -> None:
    """Refuse, before anything is read or written, texts the run records cannot hold."""
    for name in ("source", "environment"):
        if (problem := limits.name_problem(opts[name], limits.MAX_LABEL)) is not None:
            raise UsageError(f"--{name} {problem}")
    for name in ("pipeline_version_run_id", *clarifai.ID_FIELDS):
        if opts[name] is not None and (problem := runref.clarifai_id_problem(opts[name])):
            raise UsageError(f"--{name} {problem}")
