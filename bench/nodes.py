"""The ``noop`` node type, for benchmarks only.

Workers and the bench process load it through ``ORCHESTRATOR_NODE_MODULES=bench.nodes``; it is
never part of ``orchestrator.nodes``.
"""

from __future__ import annotations

from typing import Any

from orchestrator.nodes.base import NodeContext, NodeHandler
from orchestrator.nodes.registry import register


@register
class NoopNode(NodeHandler):
    type_name = "noop"
    summary = "Do nothing and return an empty output (benchmarks only)."

    def execute(self, ctx: NodeContext) -> dict[str, Any]:
        return {}
