"""A plug-in node type for the tests: ``boom`` kills the process running it, every time.

Workers load it with ``ORCHESTRATOR_NODE_MODULES=tests.poison``.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from orchestrator.nodes.base import NodeContext, NodeHandler
from orchestrator.nodes.registry import register


@register
class BoomNode(NodeHandler):
    type_name = "boom"
    summary = "Kill the process running this node (as the OOM killer would)."

    def execute(self, ctx: NodeContext) -> dict[str, Any]:
        os.kill(os.getpid(), signal.SIGKILL)
        return {}  # never reached
