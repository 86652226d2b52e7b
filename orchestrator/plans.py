"""Run plans: what a worker needs to know about a run, parsed once per run and cached."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from orchestrator import conf, definitions, statements
from orchestrator.errors import OrchestratorError


@dataclass(frozen=True)
class RunPlan:
    """What a worker needs to know about a run to execute its nodes; immutable once queued."""

    definition: definitions.Definition
    payload: dict[str, Any]
    source: str
    environment: str
    trace_id: str


class _PlanCache:
    """Parsed run snapshots by run id, so no node re-reads and re-parses the whole definition."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._plans: OrderedDict[int, RunPlan] = OrderedDict()

    def get(self, run_id: int) -> RunPlan:
        plan = self._plans.get(run_id)
        if plan is not None:
            self._plans.move_to_end(run_id)
            return plan
        row = statements.plan_row(run_id)
        if row is None:
            raise OrchestratorError(f"Pipeline run not found: {run_id}")
        plan = RunPlan(
            definition=definitions.parse(row["config"], name=row["pipeline_name"]),
            payload=row["payload"],
            source=row["source"],
            environment=row["environment"],
            trace_id=row["trace_id"],
        )
        self.put(run_id, plan)
        return plan

    def put(self, run_id: int, plan: RunPlan) -> None:
        self._plans[run_id] = plan
        while len(self._plans) > self.size:
            self._plans.popitem(last=False)


plans = _PlanCache()


def node_timeout(spec: definitions.NodeSpec) -> float:
    """The node's time limit in seconds: its own, else the configured default."""
    return float(spec.timeout_seconds or conf.get("ORCHESTRATOR_DEFAULT_TIMEOUT"))
