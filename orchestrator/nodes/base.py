"""The node handler contract: check a config, execute with a context, render a result."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from orchestrator.errors import NodeCancelled


@dataclass
class NodeContext:
    """What a handler sees while it runs."""

    run_id: int
    node_id: str
    config: dict[str, Any]
    payload: dict[str, Any]
    outputs: Mapping[str, Any]
    source: str = "cli"
    environment: str = "development"
    trace_id: str = ""
    attempt: int = 1
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("orchestrator.nodes"))
    cancel_check: Callable[[], bool] = field(default=lambda: False)
    #: On the on_failure path: the node that failed the run and its error
    #: (``{"node": ..., "error": ...}``); None elsewhere.
    failure: dict[str, Any] | None = None

    def cancel_requested(self) -> bool:
        """Whether the run was cancelled while this node ran; cheap enough to call in a loop."""
        return self.cancel_check()

    def raise_if_cancelled(self) -> None:
        if self.cancel_check():
            raise NodeCancelled(f"Node '{self.node_id}' cancelled")

    def sleep(self, seconds: float, tick: float = 0.05) -> None:
        """Sleep ``seconds``, waking every ``tick`` to honour a cancel."""
        deadline = time.monotonic() + seconds
        while True:
            self.raise_if_cancelled()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(tick, left))


class NodeHandler:
    """Base class for a node type. Subclasses register with ``@registry.register``."""

    #: The ``type`` name used in definitions.
    type_name: ClassVar[str] = ""
    #: One line shown by ``pipeline show`` and in errors listing the types.
    summary: ClassVar[str] = ""
    #: Config keys whose values are secrets, redacted from every display (besides the usual names).
    secret_keys: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> list[str]:
        """Problems with ``config``, as sentences without the node's name; empty when valid."""
        return []

    def execute(self, ctx: NodeContext) -> dict[str, Any]:
        """Do the node's work and return a JSON-serialisable output."""
        raise NotImplementedError

    def render(self, output: dict[str, Any]) -> list[str]:
        """The result-display lines for ``output`` (without the duration line)."""
        return [
            f"{key}: {value}" for key, value in output.items() if not isinstance(value, dict | list)
        ]
