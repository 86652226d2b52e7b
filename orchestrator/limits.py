"""Limits on what a user hands the orchestrator: JSON documents, texts and numbers.

Everything here is a pure check that returns the problem as a sentence (or raises
:class:`~orchestrator.errors.InputError` from :func:`loads`), so that a value the database would
refuse (NaN, ``\\u0000``, a lone surrogate, nesting thousands deep, an oversized integer or text)
is refused in one line before anything is written, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from orchestrator.errors import InputError

#: Deepest nesting of objects and lists accepted in a payload or definition.
MAX_DEPTH = 100
#: Longest text the run and definition records hold, by field.
MAX_NAME = 200  # pipeline names, node ids, Clarifai ids
MAX_LABEL = 100  # --source, --environment

#: Integers beyond about 4,200 digits cannot be written as JSON text (Python refuses them).
MAX_INT_BITS = 14_000

_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text (a NUL or a lone surrogate), else None."""
    found = _BAD_TEXT.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains a NUL character (\\u0000)"
    return f"is not valid Unicode (lone surrogate \\u{ord(found.group()):04x})"


def name_problem(value: Any, limit: int = MAX_NAME) -> str | None:
    """Why ``value`` is not a usable name or id of at most ``limit`` characters, else None."""
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty string"
    if len(value) > limit:
        return f"is {len(value)} characters long; the limit is {limit}"
    return text_problem(value)


def _reject_constant(name: str) -> float:
    raise InputError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InputError(f"{text} is too large a number")
    return value


def loads(text: str, where: str) -> Any:
    """The JSON value in ``text``; InputError in one line for anything a database would refuse."""
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except InputError as exc:
        raise InputError(f"Invalid JSON in {where}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"Invalid JSON in {where}: {exc}") from None
    except RecursionError:
        raise InputError(f"Invalid JSON in {where}: nested too deeply") from None
    except ValueError as exc:  # Python refuses integers of more than 4,300 digits
        reason = "an integer has too many digits" if "digits" in str(exc) else str(exc)
        raise InputError(f"Invalid JSON in {where}: {reason}") from None
    problem = json_problem(value)
    if problem is not None:
        raise InputError(f"Invalid JSON in {where}: {problem}")
    return value


def json_problem(value: Any, max_depth: int = MAX_DEPTH) -> str | None:
    """The first reason ``value`` cannot be stored as JSON, else None.

    Walks the value without recursion: nesting deeper than ``max_depth``, a number that is not
    finite, a key that is not a string, a text with a NUL or a lone surrogate.
    """
    stack: list[tuple[Any, int, str]] = [(value, 1, "$")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                return f"nested more than {max_depth} levels deep (at {path})"
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        return f"a key at {path} is not a string"
                    if (problem := text_problem(key)) is not None:
                        return f"a key at {path} {problem}"
                    stack.append((child, depth + 1, f"{path}.{key[:40]}"))
            else:
                stack.extend((child, depth + 1, f"{path}[{i}]") for i, child in enumerate(item))
        elif isinstance(item, str):
            if (problem := text_problem(item)) is not None:
                return f"the text at {path} {problem}"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"the number at {path} is {item!r}, not a finite number"
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if item.bit_length() > MAX_INT_BITS:  # no JSON text holds it (Python refuses)
                return f"the integer at {path} has too many digits"
        else:
            return f"the value at {path} is a {type(item).__name__}, not JSON"
    return None


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON (call only on a value json_problem accepts)."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def finite_number(value: Any, *, low: float, high: float, integer: bool = False) -> bool:
    """Whether ``value`` is a (whole, if ``integer``) finite number within [low, high]."""
    if isinstance(value, bool):
        return False
    kinds = int if integer else int | float
    if not isinstance(value, kinds):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return low <= value <= high
