"""The registry of node types: a decorator adds one, entry points and settings add plug-ins."""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

from orchestrator import conf
from orchestrator.nodes.base import NodeHandler

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "orchestrator.nodes"
BUILTIN_MODULES = ("ingest", "context", "intelligence", "notify", "wait")

_handlers: dict[str, type[NodeHandler]] = {}
_loaded = False


class DuplicateNodeType(ValueError):
    """Raised when two handlers register the same type name."""


def register(cls: type[NodeHandler]) -> type[NodeHandler]:
    """Class decorator: make ``cls`` the handler of its ``type_name``."""
    name = cls.type_name
    if not name:
        raise ValueError(f"{cls.__name__} has no type_name")
    existing = _handlers.get(name)
    if existing is not None and existing is not cls:
        raise DuplicateNodeType(f"Node type '{name}' is already registered by {existing.__name__}")
    _handlers[name] = cls
    return cls


def load_plugins() -> None:
    """Import the built-in types, the ``orchestrator.nodes`` entry points and settings modules."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(f"orchestrator.nodes.{module}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception:  # a broken plug-in must not stop the others
            logger.exception("Could not load node plug-in %s", ep.name)
    for module in conf.get("ORCHESTRATOR_NODE_MODULES"):
        importlib.import_module(module)


def get(name: str) -> type[NodeHandler] | None:
    load_plugins()
    return _handlers.get(name)


def known_types() -> list[str]:
    load_plugins()
    return sorted(_handlers)
