"""``wait``: sleep cooperatively (delays, demos, tests); a cancel stops it within a tick."""

from __future__ import annotations

import time
from typing import Any

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
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            return ["seconds must be a non-negative number"]
        fail_attempts = config.get("fail_attempts", 0)
        if (
            isinstance(fail_attempts, bool)
            or not isinstance(fail_attempts, int)
            or fail_attempts < 0
        ):
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
