"""Build a run's payload from a sample, a JSON string and a JSON file, with clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator import conf, limits
from orchestrator.errors import InputError, PayloadError


def _as_object(text: str, where: str) -> dict[str, Any]:
    try:
        value = limits.loads(text, where)
    except InputError as exc:
        raise PayloadError(str(exc)) from None
    if not isinstance(value, dict):
        raise PayloadError(
            f"Payload must be a JSON object; {where} holds a JSON {type(value).__name__}"
        )
    return value


def _check_size(text: str | bytes | int, where: str) -> None:
    """Refuse ``text`` (or a size in bytes) over the payload limit."""
    limit = conf.get("ORCHESTRATOR_MAX_PAYLOAD_BYTES")
    if isinstance(text, int):
        size = text
    else:
        size = len(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    if size > limit:
        raise PayloadError(
            f"Payload too large: {where} is {size} bytes; the limit is {limit} bytes"
        )


def build(
    *, sample: dict[str, Any] | None = None, payload: str | None = None, file: str | None = None
) -> dict[str, Any]:
    """The payload: the sample, updated by the file's object, updated by ``payload``'s object."""
    result: dict[str, Any] = dict(sample or {})
    if file is not None:
        path = Path(file)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise PayloadError(f"Payload file not found: {file}") from None
        except OSError as exc:
            raise PayloadError(f"Cannot read payload file {file}: {exc.strerror or exc}") from exc
        _check_size(raw, f"payload file {file}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PayloadError(f"Cannot read payload file {file}: not UTF-8 text") from exc
        result.update(_as_object(text, f"payload file {file}"))
    if payload is not None:
        if (problem := limits.text_problem(payload)) is not None:
            raise PayloadError(f"--payload {problem}")
        _check_size(payload, "--payload")
        result.update(_as_object(payload, "--payload"))
    # Measured as compactly as it could have been sent, so that no input within the limit fails.
    if (problem := limits.json_problem(result)) is not None:  # a sample given by a caller
        raise PayloadError(f"The payload cannot be stored: {problem}")
    limit = conf.get("ORCHESTRATOR_MAX_PAYLOAD_BYTES")
    if (size := limits.json_size(result)) > limit:
        raise PayloadError(
            f"Payload too large: the payload is {size} bytes; the limit is {limit} bytes"
        )
    return result
