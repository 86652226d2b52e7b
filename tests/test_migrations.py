"""Migration 0003_branches carries runs recorded before branches over, and back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("orchestrator", "0002_self_healing")]
BRANCHES = [("orchestrator", "0003_branches")]
CONFIG = {
    "name": "line",
    "nodes": [
        {"id": "first", "type": "wait", "next": "second"},
        {"id": "second", "type": "context", "next": "third"},
        {"id": "third", "type": "notify"},
    ],
}


def migrate(targets: list[tuple[str, str]]):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


@pytest.fixture
def before_branches() -> Iterator[object]:
    apps = migrate(BEFORE)
    try:
        yield apps
    finally:
        leaves = MigrationExecutor(connection).loader.graph.leaf_nodes("orchestrator")
        migrate(leaves)


def test_current_and_resume_nodes_become_ready_node_runs_and_come_back(before_branches):
    apps = before_branches
    run_model = apps.get_model("orchestrator", "PipelineRun")
    node_model = apps.get_model("orchestrator", "NodeRun")
    sent = timezone.now() - timedelta(minutes=5)

    def run(status: str, **fields):
        return run_model.objects.create(
            pipeline_name="line", config=CONFIG, status=status, dispatched_at=sent, **fields
        )

    queued = run("QUEUED", current_node="first")
    between = run("RUNNING", current_node="second")  # first done, second's message in flight
    node_model.objects.create(run=between, node_id="first", node_type="wait", status="COMPLETED")
    busy = run("RUNNING", current_node="second")
    node_model.objects.create(run=busy, node_id="first", node_type="wait", status="COMPLETED")
    node_model.objects.create(
        run=busy, node_id="second", node_type="context", position=1, status="RUNNING", attempt=1
    )
    paused = run("PAUSED", resume_from="third")
    done = run("COMPLETED")

    apps = migrate(BRANCHES)
    node_model = apps.get_model("orchestrator", "NodeRun")

    def open_nodes(old) -> list[tuple]:
        rows = node_model.objects.filter(run_id=old.pk, status__in=["QUEUED", "RUNNING"])
        return list(
            rows.values_list("node_id", "node_type", "position", "status", "attempt", "reached")
        )

    assert open_nodes(queued) == [("first", "wait", 0, "QUEUED", 0, 1)]
    assert open_nodes(between) == [("second", "context", 1, "QUEUED", 0, 1)]
    assert open_nodes(busy) == [("second", "context", 1, "RUNNING", 1, 1)]
    assert open_nodes(paused) == [("third", "notify", 2, "QUEUED", 0, 1)]
    assert open_nodes(done) == []
    ready = node_model.objects.get(run_id=between.pk, node_id="second")
    assert ready.dispatched_at == sent  # recovery re-dispatches it if its message was lost
    assert node_model.objects.get(run_id=paused.pk, node_id="third").dispatched_at is None

    apps = migrate(BEFORE)
    run_model = apps.get_model("orchestrator", "PipelineRun")
    back = {r.pk: r for r in run_model.objects.all()}
    assert (back[queued.pk].current_node, back[between.pk].current_node) == ("first", "second")
    assert back[busy.pk].current_node == "second"
    assert (back[paused.pk].resume_from, back[paused.pk].current_node) == ("third", "")
    assert back[between.pk].dispatched_at == sent
    node_model = apps.get_model("orchestrator", "NodeRun")
    assert not node_model.objects.filter(status="QUEUED", attempt=0).exists()
