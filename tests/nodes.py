"""Node types for the tests only (workers load them with ORCHESTRATOR_NODE_MODULES=tests.nodes).

``rendezvous`` sleeps until the Unix time in the run's payload (``end_at``), so that branches of
one run end at the same instant on different workers: the race a join must survive.
"""

from __future__ import annotations

import time
from typing import Any

from orchestrator.nodes.base import NodeContext, NodeHandler
from orchestrator.nodes.registry import register


@register
class RendezvousNode(NodeHandler):
    type_name = "rendezvous"
    summary = "Sleep until the payload's end_at (a Unix time), honouring cancel (tests only)."

    def execute(self, ctx: NodeContext) -> dict[str, Any]:
        ctx.sleep(max(0.0, float(ctx.payload["end_at"]) - time.time()), tick=0.005)
        return {"ended_at": time.time()}
