"""The base of every orchestrator command: schema on first use, errors as CommandError."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, DjangoHelpFormatter
from django.db import DatabaseError

from orchestrator.database import describe_error, ensure_schema
from orchestrator.errors import OrchestratorError, UsageError
from orchestrator.limits import text_problem

#: Exit status of a command given arguments it cannot use (as argparse's own usage errors).
USAGE = 2


class RawHelpFormatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions and examples as written (one example a line)."""


def number(
    low: float, high: float, *, integer: bool = False, unit: str = ""
) -> Callable[[str], float | int]:
    """An argparse type: a finite number within [low, high] (a usage error otherwise)."""

    def parse(text: str) -> float | int:
        try:
            value: float | int = int(text) if integer else float(text)
        except ValueError:
            value = math.nan
        if not (isinstance(value, int) or math.isfinite(value)) or not low <= value <= high:
            kind = "a whole number" if integer else "a number"
            raise argparse.ArgumentTypeError(
                f"{text[:40]!r} is not {kind} from {_shown(low)} to {_shown(high)}{unit}"
            )
        return value

    parse.__name__ = "integer" if integer else "number"
    return parse


def _shown(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def check_texts(options: dict[str, Any]) -> None:
    """Refuse any text option holding what no database stores (NUL, a lone surrogate)."""
    for name, value in options.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, str) and (problem := text_problem(item)) is not None:
                flag = name if name in ("run_id", "target", "file", "name") else f"--{name}"
                raise UsageError(f"{flag} {problem}")


class OrchestratorCommand(BaseCommand):
    """Runs ``run()`` with the database ready; OrchestratorError becomes a one-line CommandError
    (exit 2 for a usage error), and a database problem one line naming it and the fix."""

    requires_system_checks: list[str] = []

    def create_parser(
        self, prog_name: str, subcommand: str, **kwargs: Any
    ) -> argparse.ArgumentParser:
        kwargs.setdefault("formatter_class", RawHelpFormatter)
        return super().create_parser(prog_name, subcommand, **kwargs)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            check_texts(options)
            from commands import remote  # imported here: `--help` sets no Django up

            if remote.configured():  # ORCHESTRATOR_URL and no DATABASE_URL: through the API
                remote.handler_for(self)(self, options)
                return
            ensure_schema()
            self.run(**options)
        except UsageError as exc:
            raise CommandError(str(exc), returncode=USAGE) from exc
        except OrchestratorError as exc:
            raise CommandError(str(exc)) from exc
        except DatabaseError as exc:
            raise CommandError(describe_error(exc)) from exc

    def run(self, **options: Any) -> None:
        raise NotImplementedError

    def line(self, text: str = "") -> None:
        self.stdout.write(text)

    def lines(self, texts: list[str]) -> None:
        self.stdout.write("\n".join(texts))
