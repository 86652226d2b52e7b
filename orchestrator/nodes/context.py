"""``context``: measure the host this node runs on (cpu, memory, disk, load) and check thresholds.

Percent metrics are checked against a maximum percent; ``load`` is the one-minute load average
divided by the number of CPUs, checked against a maximum per core.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import psutil

from orchestrator.errors import NodeError
from orchestrator.limits import finite_number
from orchestrator.nodes.base import NodeContext, NodeHandler
from orchestrator.nodes.registry import register

METRICS = ("cpu", "memory", "disk", "load")
#: Default maximum per metric: percent for cpu, memory and disk; load average per core for load.
DEFAULT_THRESHOLDS: dict[str, float] = {"cpu": 90.0, "memory": 90.0, "disk": 90.0, "load": 2.0}
#: How long ``psutil.cpu_percent`` samples for, in seconds.
CPU_SAMPLE_SECONDS = 0.1


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


def load_per_core() -> float:
    """The one-minute load average divided by the CPU count."""
    try:
        load1 = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows has no getloadavg; psutil emulates it
        load1 = psutil.getloadavg()[0]
    return load1 / (psutil.cpu_count() or 1)


def measure(metric: str, disk_path: str) -> float:
    """The current value of ``metric``, rounded for display."""
    if metric == "cpu":
        return round(psutil.cpu_percent(interval=CPU_SAMPLE_SECONDS), 1)
    if metric == "memory":
        return round(psutil.virtual_memory().percent, 1)
    if metric == "disk":
        try:
            return round(psutil.disk_usage(disk_path).percent, 1)
        except OSError as e:
            raise NodeError(f"Cannot read disk usage of '{disk_path}': {e.strerror or e}") from e
    return round(load_per_core(), 2)


def describe_check(check: dict[str, Any]) -> str:
    """One line for a check, e.g. ``memory 93.1% exceeds 90%``."""
    unit = " per core" if check.get("name") == "load" else "%"
    verdict = "within" if check.get("passed") else "exceeds"
    value, limit = (
        f"{n:g}" if _is_number(n) else str(n) for n in (check.get("value"), check.get("threshold"))
    )
    return f"{check.get('name')} {value}{unit} {verdict} {limit}{unit}"


@register
class ContextNode(NodeHandler):
    type_name = "context"
    summary = (
        "Measure host cpu, memory, disk (`disk_path`) and load with psutil; `include` picks the "
        "metrics, `thresholds` sets each maximum (percent; load per core)."
    )

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> list[str]:
        problems = []
        include = config.get("include", list(METRICS))
        if not isinstance(include, list) or not include:
            problems.append(f"include must be a non-empty list of: {', '.join(METRICS)}")
        else:
            unknown = [str(m) for m in include if m not in METRICS]
            if unknown:
                problems.append(
                    f"include has unknown metric(s) {', '.join(unknown)}: use {', '.join(METRICS)}"
                )
        thresholds = config.get("thresholds", {})
        if not isinstance(thresholds, dict):
            problems.append("thresholds must be an object of metric name to maximum")
        else:
            for name, value in thresholds.items():
                if name not in METRICS:
                    problems.append(
                        f"thresholds has unknown metric '{name}': use {', '.join(METRICS)}"
                    )
                elif not finite_number(value, low=0, high=1e9):
                    problems.append(f"thresholds.{name} must be a non-negative number")
        disk_path = config.get("disk_path", "/")
        if not isinstance(disk_path, str) or not disk_path:
            problems.append("disk_path must be a non-empty path")
        return problems

    def execute(self, ctx: NodeContext) -> dict[str, Any]:
        include = [m for m in METRICS if m in ctx.config.get("include", METRICS)]
        thresholds = {**DEFAULT_THRESHOLDS, **ctx.config.get("thresholds", {})}
        disk_path = ctx.config.get("disk_path", "/")
        metrics: dict[str, float] = {}
        checks = []
        for metric in include:
            ctx.raise_if_cancelled()
            value = measure(metric, disk_path)
            metrics[metric] = value
            limit = float(thresholds[metric])
            checks.append(
                {"name": metric, "value": value, "threshold": limit, "passed": value <= limit}
            )
        failed = [c for c in checks if not c["passed"]]
        for check in failed:
            ctx.logger.warning("Host check failed: %s", describe_check(check))
        return {
            "metrics": metrics,
            "checks": checks,
            "checks_run": len(checks),
            "checks_failed": len(failed),
            "host": socket.gethostname(),
        }

    def render(self, output: dict[str, Any]) -> list[str]:
        lines = [f"Checks run: {output.get('checks_run', 0)}"]
        failed = [c for c in output.get("checks", []) if not c.get("passed")]
        if output.get("checks_failed"):
            lines.append(f"Checks failed: {output['checks_failed']}")
            lines.extend(f"Failed: {describe_check(c)}" for c in failed)
        return lines
