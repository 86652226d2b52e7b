"""``orchestrator pr pause|cancel|resume`` on Clarifai runs, and linking local runs to them, through
the console script in a subprocess against a real Clarifai gRPC peer on loopback."""

from __future__ import annotations

import json
import socket
import subprocess

import grpc
import pytest

from orchestrator import definitions, engine
from orchestrator.models import PipelineRun, RunEvent
from orchestrator.state import RunStatus
from tests.clarifai_peer import ClarifaiPeer
from tests.conftest import CLI

pytestmark = pytest.mark.django_db(transaction=True)

PAT = "pat-for-the-cli-0123"
FLAGS = ("--user_id=u1", "--app_id=a1", "--pipeline_id=p1", "--pipeline_version_id=v1")
LOCK = """\
pipeline:
  id: lock-pipeline
  user_id: lock-user
  app_id: lock-app
  version_id: lock-version
  step_directories: [step1]
"""
JOB_RUNNING, JOB_CANCELLED, JOB_PAUSED = 64001, 64004, 64008
VERBS = [("pause", JOB_PAUSED, "paused"), ("cancel", JOB_CANCELLED, "cancelled")]
VERBS.append(("resume", JOB_RUNNING, "resumed"))


@pytest.fixture
def pr(cli: CLI, clarifai_peer: ClarifaiPeer) -> CLI:
    """The console script with CLARIFAI_PAT and CLARIFAI_API_BASE pointing at the peer."""
    env = {**cli.env, "CLARIFAI_PAT": PAT, "CLARIFAI_API_BASE": clarifai_peer.base}
    env.pop("ORCHESTRATOR_CLARIFAI_TIMEOUT", None)
    return CLI(cli.cwd, env)


def sent(peer: ClarifaiPeer) -> list[tuple]:
    """Each patch the peer received: (user, app, pipeline, version, run id, code, action)."""
    return [
        (
            request.user_app_id.user_id,
            request.user_app_id.app_id,
            request.pipeline_id,
            request.pipeline_version_id,
            run.id,
            run.orchestration_status.status.code,
            request.action,
        )
        for request in peer.requests
        for run in request.pipeline_version_runs
    ]


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one line a failed command printed, after checking it failed cleanly."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    return line


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- a Clarifai run with no local record --------------------------------------------------------


@pytest.mark.parametrize(("verb", "code", "done"), VERBS)
def test_each_verb_sends_the_clarifai_cli_request_from_flags(
    pr: CLI, clarifai_peer: ClarifaiPeer, verb: str, code: int, done: str
):
    result = pr("pr", verb, "pvr-7", *FLAGS)

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Pipeline version run pvr-7 has been {done}.\n"
    assert sent(clarifai_peer) == [("u1", "a1", "p1", "v1", "pvr-7", code, "overwrite")]
    assert clarifai_peer.metadata[0]["authorization"] == f"Key {PAT}"
    assert not PipelineRun.objects.exists()


def test_the_run_id_may_be_given_as_a_flag(pr: CLI, clarifai_peer: ClarifaiPeer):
    result = pr("pipelinerun", "cancel", "--pipeline_version_run_id=pvr-8", *FLAGS, check=True)
    assert result.stdout == "Pipeline version run pvr-8 has been cancelled.\n"
    assert sent(clarifai_peer) == [("u1", "a1", "p1", "v1", "pvr-8", JOB_CANCELLED, "overwrite")]


def test_ids_come_from_config_lock_in_the_working_directory(pr: CLI, clarifai_peer: ClarifaiPeer):
    (pr.cwd / "config-lock.yaml").write_text(LOCK)
    result = pr("pr", "pause", "pvr-9", check=True)
    assert result.stdout == "Pipeline version run pvr-9 has been paused.\n"
    assert sent(clarifai_peer) == [
        ("lock-user", "lock-app", "lock-pipeline", "lock-version", "pvr-9", JOB_PAUSED, "overwrite")
    ]


def test_flags_override_config_lock(pr: CLI, clarifai_peer: ClarifaiPeer):
    (pr.cwd / "config-lock.yaml").write_text(LOCK)
    pr("pr", "resume", "pvr-9", "--app_id=flag-app", "--pipeline_version_id=flag-v", check=True)
    assert sent(clarifai_peer) == [
        ("lock-user", "flag-app", "lock-pipeline", "flag-v", "pvr-9", JOB_RUNNING, "overwrite")
    ]


def test_json_reports_the_clarifai_run_and_status(pr: CLI, clarifai_peer: ClarifaiPeer):
    result = pr("pr", "pause", "pvr-7", *FLAGS, "--json", check=True)
    assert json.loads(result.stdout) == {
        "pipeline_version_run_id": "pvr-7",
        "action": "pause",
        "status": "JOB_PAUSED",
        "message": "Pipeline version run pvr-7 has been paused.",
    }


def test_clarifai_failure_is_one_line_with_status_name_and_description(
    pr: CLI, clarifai_peer: ClarifaiPeer
):
    clarifai_peer.mode = "failure"
    line = error_line(pr("pr", "cancel", "pvr-7", *FLAGS))
    assert line == (
        "CommandError: Clarifai refused the change: CONN_DOES_NOT_EXIST (Resource does not exist)"
    )
    assert len(clarifai_peer.requests) == 1


def test_neither_a_local_run_nor_clarifai_ids_is_a_clear_error(
    pr: CLI, clarifai_peer: ClarifaiPeer
):
    line = error_line(pr("pr", "pause", "pvr-7"))
    assert line.startswith("CommandError: Pipeline run not found: pvr-7. No local run has this id")
    assert "--user_id, --app_id, --pipeline_id and --pipeline_version_id" in line
    assert "config-lock.yaml" in line
    assert clarifai_peer.requests == []


def test_partial_ids_name_the_missing_ones_and_both_ways_to_give_them(
    pr: CLI, clarifai_peer: ClarifaiPeer
):
    line = error_line(pr("pr", "pause", "pvr-7", "--user_id=u1", "--pipeline_id=p1"))
    assert "No local run has this id" in line
    assert "Missing Clarifai ids: --app_id, --pipeline_version_id. Pass them as flags" in line
    assert "config-lock.yaml (written by `clarifai pipeline upload`)" in line
    assert clarifai_peer.requests == []


def test_invalid_config_lock_says_why_it_was_not_used(pr: CLI, clarifai_peer: ClarifaiPeer):
    (pr.cwd / "config-lock.yaml").write_text("pipeline: [unclosed\n")
    line = error_line(pr("pr", "pause", "pvr-7"))
    assert "Missing Clarifai ids: --user_id, --app_id, --pipeline_id, --pipeline_version_id" in line
    assert "config-lock.yaml could not be used: " in line
    assert "is not valid YAML" in line
    assert clarifai_peer.requests == []


def test_missing_pat_is_a_clear_error_before_any_request(pr: CLI, clarifai_peer: ClarifaiPeer):
    env = {k: v for k, v in pr.env.items() if k != "CLARIFAI_PAT"}
    line = error_line(CLI(pr.cwd, env)("pr", "pause", "pvr-7", *FLAGS))
    assert line == (
        "CommandError: CLARIFAI_PAT is not set: export your Clarifai personal access token"
    )
    assert clarifai_peer.requests == []


def test_unreachable_clarifai_is_a_clear_error(pr: CLI):
    base = f"http://127.0.0.1:{unused_port()}"
    down = CLI(pr.cwd, {**pr.env, "CLARIFAI_API_BASE": base})
    line = error_line(down("pr", "pause", "pvr-7", *FLAGS, timeout=30))
    assert line.startswith(f"CommandError: Cannot reach Clarifai at {base}: ")


def test_a_stalled_clarifai_cannot_hang_the_cli(pr: CLI, clarifai_peer: ClarifaiPeer):
    clarifai_peer.mode = "stall"
    quick = CLI(pr.cwd, {**pr.env, "ORCHESTRATOR_CLARIFAI_TIMEOUT": "0.5"})
    # The subprocess timeout is the "does not hang" check: the peer would stall for 30 s.
    line = error_line(quick("pr", "cancel", "pvr-7", *FLAGS, timeout=15))
    assert line == "CommandError: Clarifai did not answer within 0.5 s"
    assert 0 < clarifai_peer.deadlines[0] <= 0.6  # a little clock slack


def test_cli_calls_carry_a_ten_second_deadline_by_default(pr: CLI, clarifai_peer: ClarifaiPeer):
    pr("pr", "pause", "pvr-7", *FLAGS, check=True)
    [remaining] = clarifai_peer.deadlines
    assert 8 < remaining <= 10.5  # the peer reads the deadline with a little clock slack


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (
            grpc.StatusCode.UNAUTHENTICATED,
            "CommandError: Clarifai rejected the credentials (UNAUTHENTICATED): check CLARIFAI_PAT",
        ),
        (
            grpc.StatusCode.NOT_FOUND,
            "CommandError: Clarifai has no such pipeline version run (NOT_FOUND): no run pvr-7",
        ),
    ],
)
def test_grpc_errors_are_clear_one_line_messages(
    pr: CLI, clarifai_peer: ClarifaiPeer, code: grpc.StatusCode, message: str
):
    clarifai_peer.mode = "grpc_error"
    clarifai_peer.grpc_code = code
    clarifai_peer.grpc_details = "no run pvr-7"
    assert error_line(pr("pr", "resume", "pvr-7", *FLAGS)) == message


# --- linking a local run ------------------------------------------------------------------------


def run_pipeline(pr: CLI, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``run_pipeline`` of a one-node pipeline (a 0.1 s wait), inline, with ``args``."""
    path = pr.cwd / "quick.json"
    nodes = [{"id": "nap", "type": "wait", "config": {"seconds": 0.1}}]
    path.write_text(json.dumps({"name": "quick", "nodes": nodes}))
    return pr("run_pipeline", "--config", str(path), "--quiet", *args, check=check)


def test_run_pipeline_links_the_run_and_pr_status_shows_the_link(
    pr: CLI, clarifai_peer: ClarifaiPeer
):
    run_pipeline(pr, "--pipeline_version_run_id=pvr-1", *FLAGS)
    run = PipelineRun.objects.get()
    assert run.is_linked
    assert (run.clarifai_user_id, run.clarifai_app_id) == ("u1", "a1")
    assert (run.clarifai_pipeline_id, run.clarifai_pipeline_version_id) == ("p1", "v1")
    assert run.clarifai_pipeline_version_run_id == "pvr-1"

    status = pr("pr", "status", str(run.pk), check=True).stdout
    assert "  Clarifai:    run pvr-1 of u1/a1 pipeline p1 version v1\n" in status
    assert "  Mirror:      not mirrored yet\n" in status
    data = json.loads(pr("pr", "status", str(run.pk), "--json", check=True).stdout)
    assert data["clarifai"]["pipeline_version_run_id"] == "pvr-1"
    assert data["clarifai"]["mirror"] == "not mirrored yet"
    assert clarifai_peer.requests == []


def test_run_pipeline_takes_the_link_from_config_lock_with_flags_winning(pr: CLI):
    (pr.cwd / "config-lock.yaml").write_text(LOCK)
    run_pipeline(pr, "--pipeline_version_run_id=pvr-2")
    run_pipeline(pr, "--pipeline_version_run_id=pvr-3", FLAGS[1])
    first, second = PipelineRun.objects.order_by("id")
    assert (first.clarifai_user_id, first.clarifai_app_id) == ("lock-user", "lock-app")
    assert first.clarifai_pipeline_id == "lock-pipeline"
    assert first.clarifai_pipeline_version_id == "lock-version"
    assert (second.clarifai_user_id, second.clarifai_app_id) == ("lock-user", "a1")
    assert second.clarifai_pipeline_version_run_id == "pvr-3"


def test_run_pipeline_with_incomplete_link_records_no_run(pr: CLI):
    line = error_line(run_pipeline(pr, "--pipeline_version_run_id=pvr-4", FLAGS[0], check=False))
    assert "Missing Clarifai ids: --app_id, --pipeline_id, --pipeline_version_id." in line
    assert not PipelineRun.objects.exists()


# --- control of a local linked run from the CLI -------------------------------------------------


def linked_run(run_id: str = "pvr-5") -> PipelineRun:
    """A QUEUED run linked to Clarifai, not handed to any executor."""
    definition = definitions.parse({"name": "linked", "nodes": [{"id": "nap", "type": "wait"}]})
    link = engine.ClarifaiLink("s-user", "s-app", "s-pipe", "s-version", run_id)
    return engine.create_run(definition, payload={}, link=link)


def test_cli_mirrors_an_immediate_pause_and_cancel_of_a_linked_run_with_its_stored_ids(
    pr: CLI, clarifai_peer: ClarifaiPeer
):
    (pr.cwd / "config-lock.yaml").write_text(LOCK)  # the stored link wins over it
    run = linked_run()

    paused = pr("pr", "pause", "pvr-5", check=True)  # found by its Clarifai run id
    assert paused.stdout.startswith(f"Pipeline run {run.pk} has been paused.")
    assert sent(clarifai_peer) == [
        ("s-user", "s-app", "s-pipe", "s-version", "pvr-5", JOB_PAUSED, "overwrite")
    ]
    assert "  Mirror:      JOB_PAUSED mirrored at " in pr("pr", "status", str(run.pk)).stdout

    pr("pr", "cancel", str(run.pk), check=True)
    assert [request[5] for request in sent(clarifai_peer)] == [JOB_PAUSED, JOB_CANCELLED]
    assert PipelineRun.objects.get(pk=run.pk).status == RunStatus.CANCELLED
    mirrored = RunEvent.objects.filter(run=run, kind=RunEvent.MIRRORED).order_by("id")
    assert [event.details["code"] for event in mirrored] == ["JOB_PAUSED", "JOB_CANCELLED"]


def test_clarifai_failure_keeps_the_local_pause_and_pr_status_shows_it(
    pr: CLI, clarifai_peer: ClarifaiPeer
):
    clarifai_peer.mode = "failure"
    run = linked_run()

    result = pr("pr", "pause", str(run.pk), check=True)
    assert result.stdout.startswith(f"Pipeline run {run.pk} has been paused.")
    assert PipelineRun.objects.get(pk=run.pk).status == RunStatus.PAUSED
    [failed] = RunEvent.objects.filter(run=run, kind=RunEvent.MIRROR_FAILED)
    assert "CONN_DOES_NOT_EXIST (Resource does not exist)" in failed.details["error"]
    status = pr("pr", "status", str(run.pk), check=True).stdout
    assert (
        "  Mirror:      JOB_PAUSED failed (attempt 1): Clarifai refused the change: "
        "CONN_DOES_NOT_EXIST (Resource does not exist)\n"
    ) in status
