"""The engine on the embedded default: claiming, recording, advancing, retries and limits."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestrator import definitions, engine
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.state import OPEN_NODES, NodeStatus, RunStatus

pytestmark = pytest.mark.django_db(transaction=True)


def chain(
    *nodes: dict, name: str = "chain", defaults: dict | None = None
) -> definitions.Definition:
    linked = []
    for i, node in enumerate(nodes):
        nxt = nodes[i + 1]["id"] if i + 1 < len(nodes) else None
        linked.append({**node, "next": nxt})
    return definitions.parse({"name": name, "nodes": linked, "defaults": defaults or {}})


def waits(n: int, seconds: float = 0) -> list[dict]:
    return [{"id": f"w{i}", "type": "wait", "config": {"seconds": seconds}} for i in range(n)]


def run_inline(definition: definitions.Definition, payload: dict | None = None) -> PipelineRun:
    run = engine.create_run(definition, payload=payload or {})
    engine.dispatch_run(run)
    run.refresh_from_db()
    return run


def test_inline_run_completes_every_node_once_in_order():
    run = run_inline(chain(*waits(3)))
    assert run.status == RunStatus.COMPLETED
    nodes = list(run.node_runs.order_by("position"))
    assert [(n.node_id, n.status, n.attempt) for n in nodes] == [
        ("w0", "COMPLETED", 1),
        ("w1", "COMPLETED", 1),
        ("w2", "COMPLETED", 1),
    ]
    assert run.finished_at and run.duration_ms is not None and run.nodes_in(*OPEN_NODES) == []
    assert list(run.events.values_list("kind", flat=True)) == [RunEvent.QUEUED, RunEvent.COMPLETED]


def _statements(n: int) -> list[str]:
    definition = chain(*waits(n))
    with CaptureQueriesContext(connection) as queries:
        run_inline(definition)
    # Transaction control is not a query against the data.
    return [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].split()[0].upper() not in ("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT")
    ]


def test_a_node_boundary_costs_at_most_four_queries():
    ten, twenty = _statements(10), _statements(20)
    per_node = (len(twenty) - len(ten)) / 10
    assert per_node <= 4, twenty


def test_completed_node_never_runs_again():
    run = run_inline(chain(*waits(2)))
    assert engine.execute_node(run.pk, "w0") is None
    assert NodeRun.objects.get(run=run, node_id="w0").attempt == 1


def test_failing_required_node_fails_the_run_and_stops_it():
    run = run_inline(
        chain(
            {
                "id": "a",
                "type": "wait",
                "config": {"seconds": 0, "fail": True, "message": "disk full"},
            },
            *waits(1),
        )
    )
    assert run.status == RunStatus.FAILED
    assert run.error == "Node 'a' failed: disk full"
    assert not NodeRun.objects.filter(run=run, node_id="w0").exists()


def test_failing_optional_node_lets_the_run_go_on():
    run = run_inline(
        chain(
            {"id": "a", "type": "wait", "required": False, "config": {"seconds": 0, "fail": True}},
            *waits(1),
        )
    )
    assert run.status == RunStatus.COMPLETED
    assert NodeRun.objects.get(run=run, node_id="a").status == NodeStatus.FAILED
    assert NodeRun.objects.get(run=run, node_id="w0").status == NodeStatus.COMPLETED


def test_retries_rerun_a_failing_node_with_backoff_until_it_succeeds():
    run = run_inline(
        chain(
            {
                "id": "flaky",
                "type": "wait",
                "retries": 2,
                "retry_backoff_seconds": 0.01,
                "config": {"seconds": 0, "fail_attempts": 2},
            }
        )
    )
    assert run.status == RunStatus.COMPLETED
    node = NodeRun.objects.get(run=run)
    assert node.attempt == 3 and node.status == NodeStatus.COMPLETED
    assert run.events.filter(kind=RunEvent.NODE_RETRY).count() == 2


def test_retries_exhausted_fail_the_node():
    run = run_inline(
        chain(
            {"id": "flaky", "type": "wait", "config": {"seconds": 0, "fail_attempts": 5}},
            defaults={"retries": 1, "retry_backoff_seconds": 0.01},
        )
    )
    assert run.status == RunStatus.FAILED
    assert NodeRun.objects.get(run=run).attempt == 2


def test_timeout_fails_the_node_with_a_clear_error():
    run = run_inline(
        chain({"id": "slow", "type": "wait", "timeout_seconds": 0.3, "config": {"seconds": 5}})
    )
    assert run.status == RunStatus.FAILED
    node = NodeRun.objects.get(run=run)
    assert node.error == "Node 'slow' timed out after 0.3 s"
    assert node.duration_ms < 2000


def test_earlier_outputs_reach_later_nodes():
    definition = definitions.parse(
        {
            "name": "alerts",
            "nodes": [
                {"id": "in", "type": "ingest", "next": "ai"},
                {"id": "ai", "type": "intelligence", "config": {"provider": "local"}},
            ],
        }
    )
    run = run_inline(definition, {"name": "DiskFull", "severity": "critical", "host": "db-1"})
    assert run.status == RunStatus.COMPLETED
    summary = NodeRun.objects.get(run=run, node_id="ai").output["summary"]
    assert "DiskFull" in summary or "db-1" in summary


def test_a_worker_reads_back_the_plan_a_run_was_queued_with():
    definition = chain(*waits(2), name="planned")
    run = engine.create_run(definition, payload={"host": "web-01", "n": [1, 2]}, source="grafana")
    queued_with = engine.plans.get(run.pk)
    engine.plans._plans.clear()  # another process: nothing cached
    read = engine.plans.get(run.pk)
    assert read == queued_with
    assert (read.trace_id, read.definition.entry.successors) == (str(run.trace_id), ("w1",))
