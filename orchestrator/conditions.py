"""``when`` conditions: declarative checks on the payload and earlier outputs, never ``eval``.

A condition is ``{"path": "analyze.severity", "in": ["critical", "warning"]}``: a path (``payload``,
a node id, or on the on_failure path ``failure``, then keys separated by dots, list indexes
allowed) and exactly one operator. A node's ``when`` is one condition or a list that must all
hold. Pure: parsing, checking and evaluating touch nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

OPERATORS = ("equals", "not_equals", "in", "not_in", "exists", "gt", "gte", "lt", "lte")
ORDERING = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
#: The path roots that are not node ids.
PAYLOAD = "payload"
FAILURE = "failure"
_MISSING = object()


@dataclass(frozen=True)
class Condition:
    """One parsed condition: where its value is (root, then keys) and what it must be."""

    path: str
    root: str
    keys: tuple[str, ...]
    operator: str
    value: Any

    def describe(self) -> str:
        if self.operator == "exists":
            return f"{self.path} {'exists' if self.value else 'does not exist'}"
        words = {"equals": "==", "not_equals": "!=", "in": "in", "not_in": "not in", **ORDERING}
        return f"{self.path} {words[self.operator]} {_show(self.value)}"


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def as_list(when: Any) -> list[Any]:
    """A ``when`` as written, as the list of conditions that must all hold."""
    if when is None:
        return []
    return list(when) if isinstance(when, list) else [when]


def root_of(path: str, node_ids: Container[str]) -> str | None:
    """The root a path starts with: ``payload``, ``failure``, or the longest node id it names
    (node ids may hold dots: ``a.b.c`` names node ``a.b`` before node ``a``)."""
    for word in (PAYLOAD, FAILURE):
        if path == word or path.startswith(word + "."):
            return word
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in node_ids:
            return candidate
    return None


def problems(when: Any) -> list[str]:
    """What is wrong with a ``when`` as written, as sentences (without the node's name); the
    roots of its paths are checked by the definition, which knows the graph."""
    if not isinstance(when, dict | list) or (isinstance(when, list) and not when):
        return ["must be a condition object or a non-empty list of them"]
    found: list[str] = []
    for number, item in enumerate(as_list(when), start=1):
        label = f"condition #{number}" if isinstance(when, list) else "condition"
        if not isinstance(item, dict):
            found.append(f"{label} must be an object with a path and one operator")
            continue
        path = item.get("path")
        if not isinstance(path, str) or not path.strip() or ".." in path or path.endswith("."):
            found.append(f"{label} needs a path such as 'payload.severity' or 'analyze.summary'")
        keys = [k for k in item if k != "path"]
        unknown = [k for k in keys if k not in OPERATORS]
        if unknown:
            found.append(
                f"{label} has unknown operator '{unknown[0]}'; use one of: {', '.join(OPERATORS)}"
            )
        elif len(keys) != 1:
            found.append(f"{label} needs exactly one operator of: {', '.join(OPERATORS)}")
        else:
            found.extend(f"{label}: {p}" for p in _value_problems(keys[0], item[keys[0]]))
    return found


def _value_problems(operator: str, value: Any) -> list[str]:
    if operator in ("in", "not_in") and not isinstance(value, list):
        return [f"{operator} must be a list of values"]
    if operator == "exists" and not isinstance(value, bool):
        return ["exists must be true or false"]
    if operator in ORDERING and not (_is_number(value) or isinstance(value, str)):
        return [f"{operator} must be a number or a string"]
    return []


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse(when: Any, node_ids: Container[str]) -> tuple[Condition, ...]:
    """The conditions of a valid ``when``."""
    parsed = []
    for item in as_list(when):
        path = item["path"]
        root = root_of(path, node_ids) or PAYLOAD
        rest = path[len(root) + 1 :]
        operator = next(k for k in item if k != "path")
        parsed.append(
            Condition(path, root, tuple(rest.split(".")) if rest else (), operator, item[operator])
        )
    return tuple(parsed)


def resolve(data: Mapping[str, Any], condition: Condition) -> Any:
    """The value at the condition's path, or ``_MISSING``."""
    value: Any = data.get(condition.root, _MISSING)
    for key in condition.keys:
        if isinstance(value, Mapping):
            value = value.get(key, _MISSING)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return _MISSING
    return value


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, and 1 equals 1.0."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def holds(condition: Condition, value: Any) -> bool:
    """Whether ``value`` (``_MISSING`` when the path leads nowhere) meets the condition. A
    missing value meets only ``exists: false``, ``not_equals`` and ``not_in``."""
    op, expected = condition.operator, condition.value
    if op == "exists":
        return (value is not _MISSING) == expected
    if op == "not_equals":
        return value is _MISSING or not _same(value, expected)
    if op == "not_in":
        return value is _MISSING or not any(_same(value, e) for e in expected)
    if value is _MISSING:
        return False
    if op == "equals":
        return _same(value, expected)
    if op == "in":
        return any(_same(value, e) for e in expected)
    comparable = (_is_number(value) and _is_number(expected)) or (
        isinstance(value, str) and isinstance(expected, str)
    )
    if not comparable:
        return False
    return {
        "gt": value > expected,
        "gte": value >= expected,
        "lt": value < expected,
        "lte": value <= expected,
    }[op]


def evaluate(conditions: Iterable[Condition], data: Mapping[str, Any]) -> str | None:
    """None when every condition holds, else why not, in one line for the operator."""
    for condition in conditions:
        value = resolve(data, condition)
        if not holds(condition, value):
            seen = "it is missing" if value is _MISSING else f"it is {_show(value)}"
            return f"condition not met: {condition.describe()} ({seen})"
    return None


def describe(conditions: Iterable[Condition]) -> str:
    """The conditions in one line, as the dry run and the graph show them."""
    return " and ".join(c.describe() for c in conditions)
