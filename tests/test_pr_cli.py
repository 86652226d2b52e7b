"""``pr`` / ``pipelinerun`` through the console script in a subprocess: pause, cancel and resume
by either form of the run id, from a second terminal while the first runs the pipeline inline;
help texts, exit statuses, --json and --wait; and list, status and watch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from orchestrator import control, definitions, engine
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.state import Action, NodeStatus, RunStatus
from tests.conftest import CLI, REPO, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def waits(*nodes: tuple[str, float], name: str = "cli-control") -> dict:
    """A definition of wait nodes, (id, seconds) each, linked in order."""
    return {
        "name": name,
        "nodes": [
            {
                "id": node_id,
                "type": "wait",
                "config": {"seconds": seconds},
                "next": nodes[i + 1][0] if i + 1 < len(nodes) else None,
            }
            for i, (node_id, seconds) in enumerate(nodes)
        ],
    }


def stored_run(status: str = "QUEUED", name: str = "cli-control") -> PipelineRun:
    """A run recorded but not dispatched, put straight into ``status``."""
    run = engine.create_run(definitions.parse(waits(("a", 0), ("b", 0), name=name)), payload={})
    if status != "QUEUED":
        PipelineRun.objects.filter(pk=run.pk).update(status=status)
    return run


def config_file(cli: CLI, *nodes: tuple[str, float], name: str) -> str:
    path = cli.cwd / f"{name}.json"
    path.write_text(json.dumps(waits(*nodes, name=name)))
    return str(path)


def manage_py(cli: CLI, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "manage.py"), *args],
        cwd=cli.cwd,
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def started(name: str, node_id: str):
    """The run of pipeline ``name`` once its node ``node_id`` is running, else None."""

    def check() -> PipelineRun | None:
        return PipelineRun.objects.filter(
            pipeline_name=name, node_runs__node_id=node_id, node_runs__status=NodeStatus.RUNNING
        ).first()

    return check


def error_of(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().removeprefix("CommandError: ")


# --- pause, cancel, resume ----------------------------------------------------------------------


def test_pause_by_positional_id_then_resume_by_flag_runs_the_rest_inline(cli: CLI):
    run = stored_run()
    paused = cli("pr", "pause", str(run.pk), check=True)
    assert paused.stdout == (
        f"Pipeline run {run.pk} has been paused. Resume it with: orchestrator pr resume {run.pk}\n"
    )
    request = RunEvent.objects.get(run_id=run.pk, kind=RunEvent.PAUSE_REQUESTED)
    assert request.host == socket.gethostname() and request.pid not in (None, os.getpid())

    resumed = cli("pipelinerun", "resume", f"--pipeline_version_run_id={run.pk}", check=True)
    lines = resumed.stdout.splitlines()
    assert lines[0] == (
        f"Pipeline run {run.pk} has been resumed: node 'a' runs here, inline "
        "(no broker is configured)."
    )
    assert "Status: COMPLETED" in lines and lines[-1] == "✓ Pipeline completed successfully"
    assert "▶ b [wait] started" in resumed.stderr
    nodes = list(NodeRun.objects.filter(run=run).order_by("position"))
    assert [(n.node_id, n.status, n.attempt) for n in nodes] == [
        ("a", "COMPLETED", 1),
        ("b", "COMPLETED", 1),
    ]
    resumed_event = RunEvent.objects.get(run_id=run.pk, kind=RunEvent.RESUMED)
    assert {n.worker for n in nodes} == {f"{resumed_event.host}:{resumed_event.pid}"}


def test_manage_py_pr_and_pipelinerun_control_runs_and_refuse_with_exit_status_1(cli: CLI):
    run = stored_run()
    cancelled = manage_py(cli, "pr", "cancel", str(run.pk))
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout == f"Pipeline run {run.pk} has been cancelled.\n"
    assert PipelineRun.objects.get(pk=run.pk).status == RunStatus.CANCELLED

    again = manage_py(cli, "pipelinerun", "cancel", "--pipeline_version_run_id", str(run.pk))
    assert again.returncode == 1 and again.stdout == ""
    assert error_of(again) == (
        f"Cannot cancel pipeline run {run.pk}: it is CANCELLED. Cancel is allowed when the run "
        "is not already in a terminal state (Completed, Failed, Cancelled)."
    )


def test_a_refused_pause_exits_1_with_the_literal_message(cli: CLI):
    run = stored_run("COMPLETED")
    result = cli("pr", "pause", str(run.pk))
    assert result.returncode == 1 and result.stdout == ""
    assert error_of(result) == (
        f"Cannot pause pipeline run {run.pk}: it is COMPLETED. "
        "Pause is allowed only when the run is Queued or Running."
    )
    assert "Traceback" not in result.stderr


def test_json_reports_the_transition_and_a_repeated_signal_as_a_no_op(cli: CLI):
    run = stored_run()
    first = json.loads(cli("pr", "pause", str(run.pk), "--json", check=True).stdout)
    assert first == {
        "run_id": run.pk,
        "action": "pause",
        "previous_status": "QUEUED",
        "status": "PAUSED",
        "noop": False,
        "message": f"Pipeline run {run.pk} has been paused. Resume it with: "
        f"orchestrator pr resume {run.pk}",
    }
    again = cli("pipelinerun", "pause", f"--pipeline_version_run_id={run.pk}", "--json")
    assert again.returncode == 0
    assert json.loads(again.stdout) == {
        "run_id": run.pk,
        "action": "pause",
        "previous_status": "PAUSED",
        "status": "PAUSED",
        "noop": True,
        "message": f"Pipeline run {run.pk} is already paused.",
    }


def test_a_control_verb_without_a_run_id_is_a_usage_error_naming_both_ways(cli: CLI):
    result = cli("pr", "resume")
    assert result.returncode == 2
    assert error_of(result) == (
        "Give the run id: as an argument (orchestrator pr resume 42) or as "
        "--pipeline_version_run_id=42"
    )


def test_an_unknown_run_without_clarifai_ids_is_a_clear_error(cli: CLI):
    assert not (cli.cwd / "config-lock.yaml").exists()
    result = cli("pr", "cancel", "4242")
    assert result.returncode == 1 and result.stdout == ""
    assert error_of(result).startswith("Pipeline run not found: 4242. No local run has this id")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("command", "verb", "allowed"),
    [
        ("pr", "pause", "Pause is allowed only when the run is Queued or Running."),
        (
            "pipelinerun",
            "cancel",
            "Cancel is allowed when the run is not already in a terminal state "
            "(Completed, Failed, Cancelled).",
        ),
        ("pr", "resume", "Resume is allowed only when the run is Paused."),
    ],
)
def test_help_of_each_control_verb_says_when_it_is_allowed_with_one_example_a_line(
    cli: CLI, command: str, verb: str, allowed: str
):
    result = cli(command, verb, "--help", check=True)
    lines = result.stdout.splitlines()
    assert allowed in lines
    for example in (
        f"  orchestrator pr {verb} 42",
        f"  orchestrator pipelinerun {verb} --pipeline_version_run_id=42",
        f"  python manage.py pr {verb} 42 --wait --json",
    ):
        assert example in lines, result.stdout
    for option in ("--pipeline_version_run_id", "--user_id", "--app_id", "--pipeline_id"):
        assert option in result.stdout
    assert "--pipeline_version_id" in result.stdout and "--wait" in result.stdout


# --- two terminals, inline ----------------------------------------------------------------------


def test_a_second_terminal_pauses_an_inline_run_and_resume_runs_the_rest_there(cli: CLI):
    path = config_file(cli, ("prep", 0), ("slow", 3), ("tail", 0), name="two-terminals")
    first = cli.popen("run_pipeline", "--config", path)
    run = wait_for(started("two-terminals", "slow"), timeout=30)

    paused = cli("pr", "pause", str(run.pk), "--wait", check=True)
    assert paused.stdout.splitlines() == [
        f"Pipeline run {run.pk} is pausing: node 'slow' is running; the run will pause before "
        "'tail'.",
        f"Pipeline run {run.pk} is now PAUSED.",
    ]
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert "Status: PAUSED" in out.splitlines()
    assert out.splitlines()[-1] == (
        f"⏸ Pipeline paused before 'tail'. Resume it with: orchestrator pr resume {run.pk}"
    )
    tail = NodeRun.objects.get(run=run, node_id="tail")
    assert (tail.status, tail.attempt) == (NodeStatus.QUEUED, 0)  # ready, never started

    resumed = cli("pr", "resume", str(run.pk), check=True)
    assert "--- wait (tail) ---" in resumed.stdout
    assert resumed.stdout.splitlines()[-1] == "✓ Pipeline completed successfully"
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    nodes = {n.node_id: n for n in NodeRun.objects.filter(run=run)}
    assert all(n.attempt == 1 and n.status == NodeStatus.COMPLETED for n in nodes.values())
    assert nodes["prep"].worker == nodes["slow"].worker == f"{socket.gethostname()}:{first.pid}"
    assert nodes["tail"].worker != nodes["slow"].worker  # the resuming terminal ran it


def test_cancel_with_wait_from_a_second_terminal_stops_an_inline_run(cli: CLI):
    path = config_file(cli, ("long", 30), ("never", 0), name="cancel-inline")
    first = cli.popen("run_pipeline", "--config", path)
    run = wait_for(started("cancel-inline", "long"), timeout=30)

    result = cli("pr", "cancel", str(run.pk), "--wait", "--json", check=True)
    data = json.loads(result.stdout)
    assert (data["previous_status"], data["status"], data["waited"]) == (
        "RUNNING",
        "CANCELLED",
        True,
    )
    out, err = first.communicate(timeout=30)
    assert first.returncode == 1
    assert "✗ Pipeline cancelled" in out.splitlines()
    assert f"Pipeline run {run.pk} was cancelled" in err
    assert NodeRun.objects.get(run=run, node_id="long").status == NodeStatus.CANCELLED
    assert not NodeRun.objects.filter(run=run, node_id="never").exists()


# --- list, status, watch ------------------------------------------------------------------------


def listed_ids(stdout: str) -> list[int]:
    return [int(line.split()[0]) for line in stdout.splitlines()[1:] if line.split()[0].isdigit()]


def test_pr_list_shows_runs_newest_first_with_filters_pages_and_json(cli: CLI):
    runs = [
        stored_run("COMPLETED", name="alpha"),
        stored_run("PAUSED", name="alpha"),
        stored_run("PAUSED", name="beta"),
        stored_run("CANCELLED", name="alpha"),
        stored_run("QUEUED", name="beta"),
    ]
    ids = [run.pk for run in reversed(runs)]

    everything = cli("pr", "list", check=True)
    assert everything.stdout.splitlines()[0].split() == [
        "RUN",
        "STATUS",
        "PIPELINE",
        "NODE",
        "CREATED",
        "DURATION",
    ]
    assert listed_ids(everything.stdout) == ids

    paused_alpha = cli("pr", "list", "--status", "paused", "--definition", "alpha", check=True)
    assert listed_ids(paused_alpha.stdout) == [runs[1].pk]

    page = cli("pipelinerun", "list", "--limit", "2", "--page", "2", check=True)
    assert listed_ids(page.stdout) == ids[2:4]
    assert page.stdout.splitlines()[-1] == "More: orchestrator pr list --limit 2 --page 3"

    data = json.loads(cli("pr", "list", "--definition", "beta", "--limit", "1", "--json").stdout)
    assert (data["page"], data["limit"], data["has_more"]) == (1, 1, True)
    assert [(r["id"], r["pipeline_name"], r["status"]) for r in data["runs"]] == [
        (runs[4].pk, "beta", "QUEUED")
    ]


def test_pr_status_shows_each_node_and_the_timeline_of_events_and_nodes(cli: CLI):
    run = stored_run()
    control.signal(run.pk, Action.PAUSE)
    control.signal(run.pk, Action.RESUME)  # no broker here: the rest runs inline, to the end
    here = f"{socket.gethostname()}:{os.getpid()}"

    text = cli("pr", "status", str(run.pk), check=True).stdout.splitlines()
    assert text[0] == f"Pipeline run {run.pk}: COMPLETED"
    nodes = text[text.index("Nodes:") + 1 : text.index("Timeline:") - 1]
    assert nodes[0].split() == ["NODE", "TYPE", "STATUS", "TRY", "DURATION", "WORKER"]
    for line, node_id in zip(nodes[1:3], ("a", "b"), strict=True):
        fields = line.split()
        assert fields[:4] == [node_id, "wait", "COMPLETED", "1"]
        assert fields[4].endswith("ms") and fields[5] == here
    timeline = [line.split("  ")[2] for line in text[text.index("Timeline:") + 1 :]]
    assert timeline == [
        "queued", "pause requested", "paused", "resumed",
        "node started [a]", "node completed [a]", "node started [b]", "node completed [b]",
        "completed",
    ]  # fmt: skip

    data = json.loads(cli("pr", "status", str(run.pk), "--json", check=True).stdout)
    assert data["status"] == "COMPLETED"
    assert [(n["id"], n["status"], n["attempt"], n["worker"]) for n in data["nodes"]] == [
        ("a", "COMPLETED", 1, here),
        ("b", "COMPLETED", 1, here),
    ]
    assert all(n["duration_ms"] is not None for n in data["nodes"])
    assert [e["kind"] for e in data["events"]] == [t for t in timeline if "[" not in t]
    assert data["events"][1]["details"] == {"previous": "QUEUED", "status": "PAUSED"}
    assert {(e["host"], e["pid"]) for e in data["events"]} == {(socket.gethostname(), os.getpid())}


def test_pr_watch_follows_a_run_until_it_ends(cli: CLI):
    path = config_file(cli, ("one", 1), ("two", 1), name="watched")
    first = cli.popen("run_pipeline", "--config", path)
    run = wait_for(started("watched", "one"), timeout=30)

    watched = cli("pr", "watch", str(run.pk), check=True)
    lines = watched.stdout.splitlines()
    assert lines[0].endswith(f"Watching pipeline run {run.pk} (watched): RUNNING")
    assert any(line.endswith("▶ two [wait] started") for line in lines)
    assert any("✓ two completed" in line for line in lines)
    assert lines[-1] == "✓ Pipeline completed successfully"
    first.communicate(timeout=30)
    assert first.returncode == 0
