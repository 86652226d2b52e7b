"""``pipeline``: list, show, validate and save stored pipeline definitions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.core.management.base import CommandError

from commands.base import OrchestratorCommand, RawHelpFormatter
from orchestrator import definitions
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
        "  orchestrator pipeline show health-check"
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        verbs = parser.add_subparsers(dest="verb", metavar="{list,show,validate,save,samples}")
        verbs.required = True
        ls = verbs.add_parser(
            "list", help="List stored definitions.", formatter_class=RawHelpFormatter
        )
        ls.add_argument("--json", action="store_true")
        show = verbs.add_parser("show", help="Show one stored definition (secrets redacted).")
        show.add_argument("name")
        val = verbs.add_parser("validate", help="Check a JSON file or a stored definition.")
        val.add_argument("target", metavar="FILE|NAME")
        save = verbs.add_parser(
            "save",
            help="Create or update a definition from a JSON file "
            "(the version is bumped on update).",
        )
        save.add_argument("file")
        save.add_argument("--name", help="Name to store it under (default: the file's name field).")
        save.add_argument("--inactive", action="store_true", help="Store it as inactive.")
        verbs.add_parser(
            "samples", help=f"Store the sample definitions shipped in {SAMPLES_DIR.name}/."
        )

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
        for row in rows:
            state = "" if row["is_active"] else "  (inactive)"
            self.line(f"{row['name']:<28} v{row['version']:<4} {row['description'][:60]}{state}")

    def _show(self, opts: dict[str, Any]) -> None:
        from commands import display
        from orchestrator.models import PipelineDefinition

        stored = PipelineDefinition.objects.filter(name=opts["name"]).first()
        if stored is None:
            raise CommandError(f"Pipeline definition not found: {opts['name']}")
        self.line(f"# {stored.name} v{stored.version}{'' if stored.is_active else ' (inactive)'}")
        self.line(
            json.dumps(display.redacted_definition(stored.config), indent=2, ensure_ascii=False)
        )

    def _validate(self, opts: dict[str, Any]) -> None:
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
        if problems:
            raise CommandError(str(DefinitionError(problems)))
        count = len(data["nodes"])
        self.line(f"{target} is valid: {count} node{'s' if count != 1 else ''}.")

    def _save(self, opts: dict[str, Any]) -> None:
        stored, created = save_file(opts["file"], name=opts["name"], active=not opts["inactive"])
        verb = "Created" if created else "Updated"
        self.line(f"{verb} pipeline definition {stored.name} (version {stored.version}).")

    def _samples(self, opts: dict[str, Any]) -> None:
        for path in sorted(SAMPLES_DIR.glob("*.json")):
            stored, created = save_file(str(path))
            verb = "Created" if created else "Updated"
            self.line(f"{verb} pipeline definition {stored.name} (version {stored.version}).")


def save_file(
    path: str, *, name: str | None = None, active: bool = True
) -> tuple[PipelineDefinition, bool]:
    """Validate the JSON file and store it, bumping the version when it exists already."""
    from django.db import transaction
    from django.db.models import F

    from orchestrator.models import PipelineDefinition

    data = definitions.load_file(path)
    try:
        definition = definitions.parse(
            data, name=name or (data.get("name") if isinstance(data, dict) else None)
        )
    except DefinitionError as exc:
        raise CommandError(str(exc)) from exc
    if not (name or data.get("name")):
        raise CommandError(f'{path} has no name: add a "name" field or pass --name')
    with transaction.atomic():
        stored, created = PipelineDefinition.objects.select_for_update().get_or_create(
            name=definition.name,
            defaults={"config": data, "description": definition.description, "is_active": active},
        )
        if not created:
            PipelineDefinition.objects.filter(pk=stored.pk).update(
                config=data,
                description=definition.description,
                is_active=active,
                version=F("version") + 1,
            )
            stored.refresh_from_db()
    return stored, created
