"""The base of every orchestrator command: schema on first use, errors as CommandError."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, DjangoHelpFormatter

from commands import remote
from orchestrator.database import ensure_schema
from orchestrator.errors import OrchestratorError


class RawHelpFormatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions and examples as written (one example a line)."""


class OrchestratorCommand(BaseCommand):
    """Runs ``run()`` with the database ready; OrchestratorError becomes a one-line CommandError."""

    requires_system_checks: list[str] = []

    def create_parser(
        self, prog_name: str, subcommand: str, **kwargs: Any
    ) -> argparse.ArgumentParser:
        kwargs.setdefault("formatter_class", RawHelpFormatter)
        return super().create_parser(prog_name, subcommand, **kwargs)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if remote.configured():  # ORCHESTRATOR_URL and no DATABASE_URL: through the API
                remote.handler_for(self)(self, options)
                return
            ensure_schema()
            self.run(**options)
        except OrchestratorError as exc:
            raise CommandError(str(exc)) from exc

    def run(self, **options: Any) -> None:
        raise NotImplementedError

    def line(self, text: str = "") -> None:
        self.stdout.write(text)

    def lines(self, texts: list[str]) -> None:
        self.stdout.write("\n".join(texts))
