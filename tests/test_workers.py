"""Every node a Celery task: real redis-server, real worker processes, nothing lost."""

from __future__ import annotations

import pytest

from orchestrator import definitions, engine
from orchestrator.models import NodeRun, PipelineRun
from orchestrator.state import NodeStatus, RunStatus
from tests.conftest import WorkerPool, wait_for

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]


def linear(name: str, *nodes: dict) -> definitions.Definition:
    linked = [
        {**n, "next": nodes[i + 1]["id"] if i + 1 < len(nodes) else None}
        for i, n in enumerate(nodes)
    ]
    return definitions.parse({"name": name, "nodes": linked})


def wait(node_id: str, seconds: float = 0, **options: object) -> dict:
    return {"id": node_id, "type": "wait", "config": {"seconds": seconds}, **options}


def queue_run(definition: definitions.Definition) -> PipelineRun:
    run = engine.create_run(definition, payload={"server": "web-01"})
    engine.dispatch_run(run)
    return run


def finished(run_id: int, statuses=(RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)):
    def check() -> PipelineRun | None:
        run = PipelineRun.objects.get(pk=run_id)
        return run if run.status in statuses else None

    return check


def test_three_node_definition_completes_through_a_worker(workers: WorkerPool):
    worker = workers.start("w1")
    run = queue_run(
        linear(
            "three",
            {"id": "metrics", "type": "context"},
            {"id": "analyze", "type": "intelligence"},
            {"id": "notify", "type": "notify", "config": {"driver": "console"}},
        )
    )
    done = wait_for(finished(run.pk), timeout=30)
    assert done.status == RunStatus.COMPLETED, done.error
    nodes = list(NodeRun.objects.filter(run=run).order_by("position"))
    assert [n.node_id for n in nodes] == ["metrics", "analyze", "notify"]
    assert all(n.status == NodeStatus.COMPLETED and n.attempt == 1 for n in nodes)
    assert all(n.task_id for n in nodes)
    assert all(n.worker.endswith(str(n.worker.split(":")[-1])) for n in nodes)
    assert "run_node" in worker.output()
