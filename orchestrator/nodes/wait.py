"""``wait``: sleep cooperatively (delays, demos, tests); a cancel stops it within a tick."""

from __future__ import annotations

import math
import time
from typing import Any

from orchestrator import conf
from orchestrator.limits import finite_number
from orchestrator.nodes.base import NodeContext, NodeHandler
from orchestrator.nodes.registry import register


@register
class WaitNode(NodeHandler):
    type_name = "wait"
    summary = (
        "Sleep for `seconds`, honouring cancel; `fail: true` fails after waiting, "
        "`fail_attempts: N` fails the first N attempts (for rehearsing retries)."
    )

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> list[str]:
        seconds = config.get("seconds", 1)
        if not finite_number(seconds, low=0, high=math.inf):
            return ["seconds must be a non-negative number"]
        if seconds > (most := conf.get("ORCHESTRATOR_MAX_NODE_TIMEOUT")):
            return [f"seconds must be at most {most:g} (ORCHESTRATOR_MAX_NODE_TIMEOUT)"]
        if not finite_number(config.get("fail_attempts", 0), low=0, high=2**31, integer=True):
            return ["fail_attempts must be a non-negative integer"]
        return []

    def execute(self, ctx: NodeContext) -> dict[str, Any]:
        seconds = float(ctx.config.get("seconds", 1))
        started = time.monotonic()
        ctx.sleep(seconds)
        if ctx.config.get("fail") or ctx.attempt <= int(ctx.config.get("fail_attempts", 0)):
            from orchestrator.errors import NodeError

            raise NodeError(
                str(ctx.config.get("message") or f"wait node failed after {seconds:g}s")
            )
        return {"waited_seconds": round(time.monotonic() - started, 3)}

    def render(self, output: dict[str, Any]) -> list[str]:
        return [f"Waited: {output.get('waited_seconds', 0):.2f}s"]
