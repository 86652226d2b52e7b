"""Branches on the embedded default (inline, no broker): fan-out, joins, ``when`` and skips,
``on_failure``, the records they leave, and how the displays and the admin show them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from commands import display
from orchestrator import control, definitions, engine
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.state import Action, NodeStatus, RunStatus

pytestmark = pytest.mark.django_db(transaction=True)


def wait(node_id: str, nxt: str | list[str] | None = None, **options: Any) -> dict[str, Any]:
    config = {"seconds": 0, **options.pop("config", {})}
    node: dict[str, Any] = {"id": node_id, "type": "wait", "config": config, **options}
    if nxt is not None:
        node["next"] = nxt
    return node


def parse(*nodes: dict[str, Any], name: str = "branches", **extra: Any) -> definitions.Definition:
    return definitions.parse({"name": name, "nodes": list(nodes), **extra})


DIAMOND = parse(wait("a", ["b", "c"]), wait("b", "d"), wait("c", "d"), wait("d"), name="diamond")


def run_inline(definition: definitions.Definition, payload: dict | None = None) -> PipelineRun:
    run = engine.create_run(definition, payload=payload or {})
    engine.dispatch_run(run)
    run.refresh_from_db()
    return run


def rows(run: PipelineRun) -> dict[str, NodeRun]:
    return {n.node_id: n for n in NodeRun.objects.filter(run=run)}


def kinds(run: PipelineRun) -> list[str]:
    return list(run.events.order_by("id").values_list("kind", flat=True))


# --- fan-out and joins ---------------------------------------------------------------------------


def test_inline_diamond_runs_the_branches_one_after_another_and_the_join_once():
    run = run_inline(DIAMOND)
    assert run.status == RunStatus.COMPLETED
    nodes = rows(run)
    assert {n: (r.status, r.attempt) for n, r in nodes.items()} == {
        n: (NodeStatus.COMPLETED, 1) for n in "abcd"
    }
    order = sorted(nodes.values(), key=lambda r: r.started_at)
    assert [r.node_id for r in order] == ["a", "b", "c", "d"]  # deterministic: next's order
    assert nodes["d"].started_at >= max(nodes["b"].finished_at, nodes["c"].finished_at)
    assert (nodes["d"].awaiting, nodes["d"].reached) == (0, 2)
    assert kinds(run) == [RunEvent.QUEUED, RunEvent.COMPLETED]
    assert engine.execute_node(run.pk, "d") is None  # a late delivery of the join does nothing
    assert NodeRun.objects.get(run=run, node_id="d").attempt == 1


def test_a_wide_fan_out_and_its_join_cost_at_most_four_queries_per_branch():
    def statements(width: int) -> int:
        branches = [f"b{i}" for i in range(width)]
        definition = parse(wait("a", branches), *(wait(b, "z") for b in branches), wait("z"))
        with CaptureQueriesContext(connection) as queries:
            assert run_inline(definition).status == RunStatus.COMPLETED
        control = ("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT")
        return sum(q["sql"].split()[0].upper() not in control for q in queries.captured_queries)

    assert (statements(20) - statements(10)) / 10 <= 4


def test_a_failed_optional_branch_lets_the_join_run():
    definition = parse(
        wait("a", ["b", "c"]),
        wait("b", "d", required=False, config={"fail": True, "message": "flaky"}),
        wait("c", "d"),
        wait("d"),
    )
    run = run_inline(definition)
    assert run.status == RunStatus.COMPLETED
    nodes = rows(run)
    assert (nodes["b"].status, nodes["b"].error) == (NodeStatus.FAILED, "flaky")
    assert (nodes["d"].status, nodes["d"].reached) == (NodeStatus.COMPLETED, 2)


# --- when and skips ------------------------------------------------------------------------------

TRIAGE = parse(
    wait("classify", ["urgent", "routine"]),
    wait("urgent", "page", when={"path": "payload.severity", "in": ["critical", "warning"]}),
    wait("routine", "log", when={"path": "payload.severity", "equals": "info"}),
    wait("page", "done", when={"path": "urgent.waited_seconds", "exists": True}),
    wait("log", "done"),
    wait("done"),
    name="triage",
)


def test_when_runs_or_skips_a_branch_and_a_join_after_one_skipped_branch_runs():
    run = run_inline(TRIAGE, {"severity": "critical"})
    assert run.status == RunStatus.COMPLETED
    outcome = {n: (r.status, r.reason) for n, r in rows(run).items()}
    assert outcome == {
        "classify": (NodeStatus.COMPLETED, ""),
        "urgent": (NodeStatus.COMPLETED, ""),
        "routine": (
            NodeStatus.SKIPPED,
            'condition not met: payload.severity == "info" (it is "critical")',
        ),
        "page": (NodeStatus.COMPLETED, ""),
        "log": (NodeStatus.SKIPPED, "every node before it was skipped"),
        "done": (NodeStatus.COMPLETED, ""),
    }
    assert rows(run)["done"].reached == 1


def test_a_node_whose_predecessors_were_all_skipped_is_skipped_and_the_run_completes():
    run = run_inline(TRIAGE, {"severity": "debug"})
    assert run.status == RunStatus.COMPLETED
    outcome = {n: r.status for n, r in rows(run).items()}
    assert outcome == {
        "classify": NodeStatus.COMPLETED,
        **dict.fromkeys(["urgent", "routine", "page", "log", "done"], NodeStatus.SKIPPED),
    }
    assert rows(run)["urgent"].reason == (
        'condition not met: payload.severity in ["critical", "warning"] (it is "debug")'
    )
    assert rows(run)["urgent"].output is None


# --- on_failure ----------------------------------------------------------------------------------


def failing(notes: Path, *, boom_required: bool = True) -> definitions.Definition:
    return parse(
        wait("a", ["boom", "c"]),
        wait("boom", "d", required=boom_required, config={"fail": True, "message": "disk full"}),
        wait("c", "d"),
        wait("d"),
        {
            "id": "alert",
            "type": "notify",
            "config": {"driver": "file", "path": str(notes)},
            "when": {"path": "failure.node", "equals": "boom"},
        },
        on_failure="alert",
        name="failing",
    )


def test_a_failed_required_branch_fails_the_run_and_on_failure_runs_once_with_the_failure(
    tmp_path: Path,
):
    notes = tmp_path / "notes.jsonl"
    run = run_inline(failing(notes))
    assert (run.status, run.error) == (RunStatus.FAILED, "Node 'boom' failed: disk full")
    nodes = rows(run)
    assert (nodes["alert"].status, nodes["alert"].attempt) == (NodeStatus.COMPLETED, 1)
    # c was ready, not started, when boom failed: it never starts; nor does the join.
    assert (nodes["c"].status, nodes["c"].attempt) == (NodeStatus.CANCELLED, 0)
    assert "d" not in nodes
    sent = [json.loads(line) for line in notes.read_text().splitlines()]
    assert len(sent) == 1
    assert sent[0]["message"] == f"Pipeline run {run.pk} failed: node 'boom' failed: disk full"
    assert kinds(run) == [
        RunEvent.QUEUED,
        RunEvent.NODE_FAILED,
        RunEvent.ON_FAILURE,
        RunEvent.FAILED,
    ]
    assert run.events.get(kind=RunEvent.ON_FAILURE).node_id == "alert"


def test_on_failure_never_runs_on_success_or_cancel(tmp_path: Path):
    notes = tmp_path / "notes.jsonl"
    fine = run_inline(failing(notes, boom_required=False))
    assert fine.status == RunStatus.COMPLETED
    cancelled = engine.create_run(failing(notes), payload={})
    control.signal(cancelled.pk, Action.CANCEL)
    engine.dispatch_run(cancelled)  # the entry's message arrives after the cancel
    cancelled.refresh_from_db()
    assert cancelled.status == RunStatus.CANCELLED
    assert not NodeRun.objects.filter(node_id="alert").exists()
    assert not notes.exists()


# --- what operators see --------------------------------------------------------------------------


def test_the_result_display_shows_branches_joins_skips_and_the_on_failure_path(tmp_path: Path):
    run = run_inline(TRIAGE, {"severity": "critical"})
    lines = display.result_lines(run)
    assert lines[lines.index("Branches:") + 1 :][:10] == [
        "  classify → urgent, routine (in parallel)",
        "  urgent → page",
        "  routine → log",
        "  page → done",
        "  log → done",
        '  urgent runs only when payload.severity in ["critical", "warning"]',
        '  routine runs only when payload.severity == "info"',
        "  page runs only when urgent.waited_seconds exists",
        "  done is a join: it runs once page, log have ended",
        "",
    ]
    assert "--- wait (classify) --- [fans out to urgent, routine]" in lines
    assert "--- wait (done) --- [join of page, log]" in lines
    log = lines.index("--- wait (log) ---")
    assert lines[log + 1 : log + 3] == [
        "  Status: SKIPPED",
        "  Reason: every node before it was skipped",
    ]
    failed = run_inline(failing(tmp_path / "n.jsonl"))
    shown = display.result_lines(failed)
    assert "  on failure → alert" in shown
    assert "--- notify (alert) --- [on failure]" in shown


def test_status_and_json_show_running_ready_and_skipped_nodes_and_the_graph():
    run = engine.create_run(TRIAGE, payload={"severity": "critical"})
    paused = control.signal(run.pk, Action.PAUSE)
    assert paused.status == RunStatus.PAUSED
    lines = display.status_lines(PipelineRun.objects.get(pk=run.pk))
    assert "  Resume from: classify" in lines
    done = run_inline(TRIAGE, {"severity": "critical"})
    lines = display.status_lines(done)
    assert f"  {'':<16} skipped: every node before it was skipped" in lines
    assert f"  {'':<16} join of page, log" in lines
    assert "  classify → urgent, routine (in parallel)" in lines
    data = display.run_as_dict(done)
    assert (data["running_nodes"], data["ready_nodes"], data["on_failure"]) == ([], [], None)
    by_id = {n["id"]: n for n in data["nodes"]}
    assert by_id["done"]["after"] == ["page", "log"] and by_id["classify"]["next"] == [
        "urgent",
        "routine",
    ]
    assert by_id["log"]["reason"] == "every node before it was skipped"
    assert by_id["page"]["reason"] is None


def test_the_admin_shows_open_nodes_and_branches(client, django_user_model, tmp_path: Path):
    client.force_login(django_user_model.objects.create_superuser("ops", "ops@example.com", "pw"))
    done = run_inline(failing(tmp_path / "n.jsonl"))
    engine.create_run(DIAMOND, payload={})  # queued: its entry node is ready
    listing = client.get(reverse("admin:orchestrator_pipelinerun_changelist"))
    assert listing.status_code == 200
    assert b"a (queued)" in listing.content  # the waiting run's entry node is ready
    page = client.get(reverse("admin:orchestrator_pipelinerun_change", args=[done.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    assert "a → boom, c (in parallel)" in text and "on failure → alert" in text
    assert "Stopped" not in text  # nothing was running when boom failed


# --- the commands --------------------------------------------------------------------------------


def test_dry_run_run_and_status_of_a_branched_pipeline_from_the_command_line(cli, tmp_path: Path):
    config = tmp_path / "triage.json"
    config.write_text(json.dumps(TRIAGE.raw))
    dry = cli("run_pipeline", "--config", str(config), "--dry-run", check=True).stdout.splitlines()
    classify = dry.index("  1. [wait] classify")
    assert dry[classify + 2] == "     → next: urgent, routine (in parallel)"
    done = dry.index("  6. [wait] done")
    assert dry[done + 2 : done + 4] == [
        "     Join: runs once page, log have ended",
        "     → end",
    ]
    urgent = dry.index("  2. [wait] urgent")
    assert dry[urgent + 2] == (
        '     When: payload.severity in ["critical", "warning"] (else skipped)'
    )
    assert "  done is a join: it runs once page, log have ended" in dry

    ran = cli(
        "run_pipeline", "--config", str(config), "--payload", '{"severity": "info"}', "--json"
    )
    assert ran.returncode == 0, ran.stderr
    data = json.loads(ran.stdout)
    statuses = {n["id"]: (n["status"], n["reason"]) for n in data["nodes"]}
    assert statuses["urgent"] == (
        "SKIPPED",
        'condition not met: payload.severity in ["critical", "warning"] (it is "info")',
    )
    assert statuses["page"] == ("SKIPPED", "every node before it was skipped")
    assert statuses["done"] == ("COMPLETED", None)
    assert "↷ urgent skipped: condition not met" in ran.stderr  # the progress line

    status = cli("pr", "status", str(data["run_id"]), check=True).stdout.splitlines()
    assert f"  {'':<16} skipped: every node before it was skipped" in status
    assert "  classify → urgent, routine (in parallel)" in status
