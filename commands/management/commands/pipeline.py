"""``pipeline``: list, show, validate and save stored pipeline definitions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.core.management.base import CommandError

from commands.base import OrchestratorCommand, RawHelpFormatter
from orchestrator import definitions, limits
from orchestrator.errors import DefinitionError

# What a verb needs is imported when it runs: `--help` is answered without Django set up.
if TYPE_CHECKING:
    from orchestrator.models import PipelineDefinition

SAMPLES_DIR = Path(definitions.__file__).parent / "samples"


class Command(OrchestratorCommand):
    help = (
        "Manage stored pipeline definitions.\n"
        "examples:\n"
        "  orchestrator pipeline samples                 # store the shipped sample definitions\n"
        "  orchestrator pipeline save ./custom.json --name custom\n"
        "  orchestrator pipeline validate ./custom.json\n"
        "  orchestrator pipeline list\n"
        "  orchestrator pipeline show health-check\n"
        "  orchestrator pipeline show health-check --graph      # Mermaid flowchart text\n"
        "  orchestrator pipeline show --config ./custom.json --graph"
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        verbs = parser.add_subparsers(dest="verb", metavar="{list,show,validate,save,samples}")
        verbs.required = True
        ls = verbs.add_parser(
            "list", help="List stored definitions.", formatter_class=RawHelpFormatter
        )
        ls.add_argument("--json", action="store_true")
        show = verbs.add_parser(
            "show",
            help="Show one stored definition or a JSON file (secrets redacted), or its graph.",
            description="Show a stored definition (NAME) or a definition file (--config FILE) as "
            "JSON, secrets redacted; with --graph, print its graph as Mermaid flowchart text "
            "instead (paste it into a ```mermaid block on GitHub or GitLab to see the picture).",
        )
        show.add_argument("name", nargs="?", help="A stored definition's name.")
        show.add_argument("--config", metavar="FILE", help="A definition JSON file instead.")
        show.add_argument(
            "--graph",
            action="store_true",
            help="Print the graph (nodes, next, joins, conditions, on_failure) as Mermaid text.",
        )
        show.add_argument(
            "--json", action="store_true", help="The definition alone, as JSON (secrets redacted)."
        )
        val = verbs.add_parser("validate", help="Check a JSON file or a stored definition.")
        val.add_argument("target", metavar="FILE|NAME")
        val.add_argument("--json", action="store_true", help="Print the outcome as JSON.")
        save = verbs.add_parser(
            "save",
            help="Create or update a definition from a JSON file "
            "(the version is bumped when it changes).",
        )
        save.add_argument("file")
        save.add_argument("--name", help="Name to store it under (default: the file's name field).")
        save.add_argument("--inactive", action="store_true", help="Store it as inactive.")
        save.add_argument("--json", action="store_true", help="Print the outcome as JSON.")
        samples = verbs.add_parser(
            "samples", help=f"Store the sample definitions shipped in {SAMPLES_DIR.name}/."
        )
        samples.add_argument("--json", action="store_true", help="Print the outcome as JSON.")

    def run(self, **opts: Any) -> None:
        getattr(self, f"_{opts['verb']}")(opts)

    def _list(self, opts: dict[str, Any]) -> None:
        from commands import display
        from orchestrator.models import PipelineDefinition

        rows = list(
            PipelineDefinition.objects.order_by("name").values(
                "name", "version", "is_active", "description", "updated_at"
            )
        )
        if opts["json"]:
            self.line(display.dumps(rows))
            return
        if not rows:
            self.line("No stored definitions. Load the samples with: orchestrator pipeline samples")
            return
        self.line(f"{'NAME':<28} {'VERSION':<7} DESCRIPTION")
        for row in rows:
            state = "" if row["is_active"] else "  (inactive)"
            self.line(f"{row['name']:<28} v{row['version']:<6} {row['description'][:60]}{state}")

    def _show(self, opts: dict[str, Any]) -> None:
        if bool(opts["name"]) == bool(opts["config"]):
            raise CommandError(
                "Give a stored definition's name or --config FILE (one of them): "
                "orchestrator pipeline show health-check --graph"
            )
        if opts["graph"] and opts["json"]:
            raise CommandError("Give --graph or --json, not both")
        from commands import display
        from orchestrator import diagrams
        from orchestrator.models import PipelineDefinition

        if opts["config"]:
            data, label = definitions.load_file(opts["config"]), f"# {opts['config']}"
        else:
            stored = PipelineDefinition.objects.filter(name=opts["name"]).first()
            if stored is None:
                raise CommandError(f"Pipeline definition not found: {opts['name']}")
            data = stored.config
            label = f"# {stored.name} v{stored.version}{'' if stored.is_active else ' (inactive)'}"
        if opts["graph"]:
            try:
                definition = definitions.parse(
                    data, name=opts["name"] or Path(opts["config"]).stem or None
                )
            except DefinitionError as exc:
                raise CommandError(str(exc)) from exc
            self.line(diagrams.mermaid(definition))
            return
        if opts["json"]:
            self.line(display.dumps(display.redacted_definition(data)))
            return
        self.line(label)
        self.line(json.dumps(display.redacted_definition(data), indent=2, ensure_ascii=False))

    def _validate(self, opts: dict[str, Any]) -> None:
        from commands import display
        from orchestrator.models import PipelineDefinition

        target = opts["target"]
        stored = (
            None
            if Path(target).exists()
            else PipelineDefinition.objects.filter(name=target).first()
        )
        if stored is None and not Path(target).exists():
            raise CommandError(
                f"Pipeline definition not found: {target} (neither a file nor a stored definition)"
            )
        data = stored.config if stored else definitions.load_file(target)
        problems = definitions.validate(data)
        if not problems and stored is None:
            # What save and run_pipeline would refuse: the name a file's run is stored under.
            name = data.get("name") or Path(target).stem
            if (problem := limits.name_problem(name)) is not None:
                problems = [f"Pipeline name {problem}"]
        if opts["json"]:
            count = len(data["nodes"]) if not problems else None
            self.line(
                display.dumps(
                    {"target": target, "valid": not problems, "nodes": count, "problems": problems}
                )
            )
        if problems:
            raise CommandError(str(DefinitionError(problems)))
        if not opts["json"]:
            count = len(data["nodes"])
            self.line(f"{target} is valid: {count} node{'s' if count != 1 else ''}.")

    def _save(self, opts: dict[str, Any]) -> None:
        outcome = save_file(opts["file"], name=opts["name"], active=not opts["inactive"])
        self._report([outcome], opts["json"])

    def _samples(self, opts: dict[str, Any]) -> None:
        outcomes = [save_file(str(path)) for path in sorted(SAMPLES_DIR.glob("*.json"))]
        self._report(outcomes, opts["json"])

    def _report(self, outcomes: list[tuple[PipelineDefinition, str]], as_json: bool) -> None:
        from commands import display

        if as_json:
            rows = [
                {"name": stored.name, "version": stored.version, "outcome": outcome}
                for stored, outcome in outcomes
            ]
            self.line(display.dumps(rows[0] if len(rows) == 1 else rows))
            return
        for stored, outcome in outcomes:
            self.line(
                f"{outcome.capitalize()} pipeline definition {stored.name} "
                f"(version {stored.version})."
            )


def save_file(
    path: str, *, name: str | None = None, active: bool = True
) -> tuple[PipelineDefinition, str]:
    """Validate the JSON file and store it; the version is bumped only when something changed.

    Returns the stored definition and what happened: ``created``, ``updated`` or ``unchanged``.
    """
    from orchestrator import catalog

    data = definitions.load_file(path)
    if not (name or (isinstance(data, dict) and data.get("name"))):
        problems = definitions.validate(data)
        if problems:
            raise CommandError(str(DefinitionError(problems)))
        raise CommandError(f'{path} has no name: add a "name" field or pass --name')
    try:
        return catalog.save(data, name=name, active=active)
    except DefinitionError as exc:
        raise CommandError(str(exc)) from exc
