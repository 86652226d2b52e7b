"""What a run id given by an operator may name: a local run id, a Clarifai run id, or both.

A pure rule with a table-driven test: a local id is a positive integer in ASCII digits that a
database row id can hold; a Clarifai pipeline version run id is letters, digits, ``-``, ``_`` and
``.``. Anything else (blank, whitespace, full-width digits, control characters) is a usage error,
so that no lookup ever matches an unlinked run's empty Clarifai id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orchestrator.errors import UsageError
from orchestrator.limits import MAX_NAME

#: The largest row id the databases hold (a signed 64-bit integer).
MAX_LOCAL_ID = 2**63 - 1

_LOCAL = re.compile(r"[0-9]+", re.ASCII)
_CLARIFAI = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)


@dataclass(frozen=True)
class RunRef:
    """A run id as given, with the local id and the Clarifai id it may stand for."""

    text: str
    local_id: int | None
    clarifai_id: str | None


def clarifai_id_problem(value: str) -> str | None:
    """Why ``value`` is not a Clarifai id, else None."""
    if not value:
        return "is blank"
    if len(value) > MAX_NAME:
        return f"is {len(value)} characters long; the limit is {MAX_NAME}"
    if not _CLARIFAI.fullmatch(value):
        return "may hold only letters, digits, '-', '_' and '.'"
    return None


def parse(value: str | int | None, scope: str | None = None) -> RunRef:
    """The run ``value`` names; ``scope`` 'local' or 'remote' keeps only one reading.

    Raises UsageError when the value names no run in the scope asked for.
    """
    text = str(value) if value is not None else ""
    shown = repr(text) if not text.strip() or text != text.strip() else text
    local_id: int | None = None
    # A row id has at most 19 digits; longer ones are not converted (Python refuses huge ones).
    if len(text) <= 19 and _LOCAL.fullmatch(text) and 0 < (number := int(text)) <= MAX_LOCAL_ID:
        local_id = number
    clarifai_id = text if clarifai_id_problem(text) is None else None
    if scope == "local":
        clarifai_id = None
        if local_id is None:
            raise UsageError(f"Invalid run id {shown}: --local needs a positive whole number")
    elif scope == "remote":
        local_id = None
        if clarifai_id is None:
            raise UsageError(
                f"Invalid run id {shown}: a Clarifai pipeline version run id "
                f"{clarifai_id_problem(text)}"
            )
    if local_id is None and clarifai_id is None:
        raise UsageError(
            f"Invalid run id {shown[:60]}: give a local run id (a positive whole number) or a "
            "Clarifai pipeline version run id (letters, digits, '-', '_' and '.')"
        )
    return RunRef(text, local_id, clarifai_id)
