"""``run_pipeline``: run a stored definition, a JSON file, or the built-in alert pipeline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.core.management.base import CommandError

from commands.base import OrchestratorCommand
from orchestrator import builtin, definitions, payloads
from orchestrator.errors import DefinitionError
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
            help="Print the finished run as JSON and nothing else on stdout.",
        )
        how.add_argument(
            "--detach",
            action="store_true",
            help="With a broker: print the run id and return at once.",
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
        definition, stored, label = self._definition(opts)
        sample = builtin.sample_payload(opts["source"]) if opts["sample"] else None
        payload = payloads.build(sample=sample, payload=opts["payload"], file=opts["file"])
        if opts["dry_run"]:
            self.lines(
                display.dry_run_lines(
                    definition,
                    label=label,
                    source=opts["source"],
                    environment=opts["environment"],
                    payload=payload,
                )
            )
            return
        link = self._link(opts)
        dispatcher = dispatch.get()
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
            self._queue(run, progress, opts)
            if opts["detach"]:
                return
        self._show(PipelineRun.objects.get(pk=run.pk), opts["json"])

    def _definition(self, opts: dict[str, Any]) -> tuple[definitions.Definition, Any, str]:
        from orchestrator.models import PipelineDefinition

        try:
            if opts["definition"]:
                stored = PipelineDefinition.objects.filter(name=opts["definition"]).first()
                if stored is None:
                    raise CommandError(f"Pipeline definition not found: {opts['definition']}")
                if not stored.is_active:
                    raise CommandError(
                        f"Pipeline definition is inactive: {stored.name} "
                        f"(save it again or set is_active in the admin to run it)"
                    )
                return (
                    definitions.parse(stored.config, name=stored.name),
                    stored,
                    f"Pipeline Definition: {stored.name}",
                )
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
        from orchestrator import clarifai, engine

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
                self.lines(
                    [
                        f"Run ID: {run.pk}",
                        f"Trace ID: {run.trace_id}",
                        f"Follow it with: orchestrator pr watch {run.pk}",
                    ]
                )
            return
        progress.say(f"Pipeline run {run.pk} queued (trace {run.trace_id})")
        try:
            follow(run.pk, progress)
        except KeyboardInterrupt:
            raise CommandError(
                f"Stopped following pipeline run {run.pk}; it keeps running.\n"
                f"  Watch it:  orchestrator pr watch {run.pk}\n"
                f"  Cancel it: orchestrator pr cancel {run.pk}"
            ) from None

    def _show(self, run: PipelineRun, as_json: bool) -> None:
        from commands import display

        if as_json:
            self.line(display.dumps(display.run_as_dict(run)))
        else:
            self.lines(display.result_lines(run))
        if error := display.outcome_error(run):
            raise CommandError(error)
