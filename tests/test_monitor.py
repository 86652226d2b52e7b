"""Clarifai users' habits: ``pr monitor`` (local and through Clarifai's GetPipelineVersionRun),
the Clarifai CLI's own config, ids that are both local and Clarifai; and a followed run that no
worker takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from commands.management.commands.pr import Command as PrCommand
from orchestrator import definitions, engine
from orchestrator.models import PipelineRun
from tests.clarifai_peer import ClarifaiPeer
from tests.conftest import CLI, WorkerPool, command
from tests.test_queued_cli import read_until, write_config

pytestmark = pytest.mark.django_db(transaction=True)

FLAGS = ("--user_id=u1", "--app_id=a1", "--pipeline_id=p1", "--pipeline_version_id=v1")
ONE_WAIT = {"name": "monitored", "nodes": [{"id": "a", "type": "wait", "config": {"seconds": 0}}]}


def finished_run() -> PipelineRun:
    run = engine.create_run(definitions.parse(ONE_WAIT), payload={})
    engine.dispatch_run(run)
    return run


def test_pr_help_lists_monitor_with_the_clarifai_cli_options() -> None:
    parser = PrCommand().create_parser("orchestrator", "pr")
    assert "monitor" in parser.format_help()
    monitor = parser._subparsers._group_actions[0].choices["monitor"].format_help()
    for option in ("--timeout", "--monitor_interval", "--log_file", "--local", "--remote"):
        assert option in monitor


def test_monitor_follows_a_local_run_like_watch_and_writes_the_log_file(tmp_path: Path) -> None:
    run = finished_run()
    log = tmp_path / "run.log"
    out = command(
        "pr", "monitor", str(run.pk), "--monitor_interval", "0.05", "--log_file", str(log)
    )
    assert out.error is None
    assert out.stdout.splitlines()[-1] == "✓ Pipeline completed successfully"
    assert "▶ a [wait] started" in log.read_text()
    assert out.stdout.count("▶ a [wait] started") == 1


def test_monitor_stops_at_its_timeout_and_the_run_goes_on() -> None:
    queued = engine.create_run(definitions.parse(ONE_WAIT), payload={})
    outcome = command("pr", "monitor", str(queued.pk), "--timeout", "0.3")
    assert outcome.message == f"Timed out after 0.3 s: pipeline run {queued.pk} is still QUEUED"
    assert f"pipeline run {queued.pk}; it keeps going (QUEUED)." in outcome.stdout
    assert PipelineRun.objects.get(pk=queued.pk).status == "QUEUED"


def test_a_clarifai_run_with_no_local_record_is_monitored_through_clarifai(
    clarifai_peer: ClarifaiPeer,
) -> None:
    clarifai_peer.run_statuses = ["JOB_QUEUED", "JOB_RUNNING", "JOB_RUNNING", "JOB_COMPLETED"]
    out = command("pr", "monitor", "cl-run-9", *FLAGS, "--monitor_interval", "0.01")
    assert out.error is None
    said = [line.split("] ", 1)[-1] for line in out.stdout.splitlines()]
    assert said == [
        "Monitoring Clarifai pipeline version run cl-run-9",
        "JOB_QUEUED (job_queued)",
        "JOB_RUNNING (job_running)",
        "JOB_COMPLETED (job_completed)",
        "Clarifai pipeline version run cl-run-9 is JOB_COMPLETED.",
    ]
    request = clarifai_peer.gets[0]
    assert (
        request.user_app_id.user_id,
        request.user_app_id.app_id,
        request.pipeline_id,
        request.pipeline_version_id,
        request.pipeline_version_run_id,
    ) == ("u1", "a1", "p1", "v1", "cl-run-9")
    assert len(clarifai_peer.gets) == 4
    assert clarifai_peer.metadata[0]["authorization"] == "Key test-pat"


def test_monitoring_a_clarifai_run_that_fails_to_answer_is_one_line(
    clarifai_peer: ClarifaiPeer,
) -> None:
    clarifai_peer.mode = "failure"
    outcome = command("pr", "monitor", "cl-run-9", *FLAGS)
    assert outcome.message.startswith("Clarifai refused it: CONN_DOES_NOT_EXIST")


def test_the_pat_and_user_come_from_the_clarifai_cli_config_when_the_environment_has_none(
    clarifai_peer: ClarifaiPeer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / ".config" / "clarifai" / "config"
    config.parent.mkdir(parents=True)
    config.write_text(
        "current_context: work\n"
        "contexts:\n"
        "  default:\n"
        "    env: {CLARIFAI_PAT: not-this-one}\n"
        "  work:\n"
        "    env:\n"
        "      CLARIFAI_PAT: config-pat\n"
        "      CLARIFAI_USER_ID: config-user\n"
        f"      CLARIFAI_API_BASE: {clarifai_peer.base}\n"
    )
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("ORCHESTRATOR_CLARIFAI_CONFIG")  # the Clarifai CLI's own place, then
    monkeypatch.delenv("CLARIFAI_PAT")
    monkeypatch.delenv("CLARIFAI_API_BASE")
    out = command("pr", "pause", "cl-7", "--app_id=a", "--pipeline_id=p", "--pipeline_version_id=v")
    assert out.stdout == "Pipeline version run cl-7 has been paused.\n"
    [request] = clarifai_peer.requests
    assert request.user_app_id.user_id == "config-user"
    assert clarifai_peer.metadata[0]["authorization"] == "Key config-pat"
    # The environment wins over the config.
    monkeypatch.setenv("CLARIFAI_PAT", "env-pat")
    command("pr", "cancel", "cl-7", "--app_id=a", "--pipeline_id=p", "--pipeline_version_id=v")
    assert clarifai_peer.metadata[1]["authorization"] == "Key env-pat"


def test_an_id_that_is_local_and_clarifai_at_once_is_ambiguous_until_chosen() -> None:
    local = finished_run()
    linked = engine.create_run(
        definitions.parse(ONE_WAIT),
        payload={},
        link=engine.ClarifaiLink("u", "a", "p", "v", str(local.pk)),
    )
    outcome = command("pr", "status", str(local.pk))
    assert outcome.error is not None and outcome.error.returncode == 2
    assert outcome.message == (
        f"Run id {local.pk} is ambiguous: it is local pipeline run {local.pk}, and the Clarifai "
        f"pipeline version run linked to pipeline run {linked.pk}. Pass --local or --remote to "
        "choose."
    )
    local_status = command("pr", "status", str(local.pk), "--local").stdout
    assert local_status.startswith(f"Pipeline run {local.pk}: COMPLETED")
    remote_status = command("pr", "status", str(local.pk), "--remote").stdout
    assert remote_status.startswith(f"Pipeline run {linked.pk}: QUEUED")
    before = PipelineRun.objects.get(pk=linked.pk).status
    assert command("pr", "pause", str(local.pk)).error.returncode == 2
    assert PipelineRun.objects.get(pk=linked.pk).status == before


# --- 6: a queued run that no worker takes ------------------------------------------------------


@pytest.mark.workers
def test_a_followed_run_that_no_worker_takes_says_so_once(queued_cli: CLI, workers: WorkerPool):
    workers.start("elsewhere", queues="elsewhere")  # a worker, but not on the run's queue
    cli = CLI(queued_cli.cwd, {**queued_cli.env, "ORCHESTRATOR_WORKER_NOTICE_SECONDS": "1"})
    following = cli.popen("run_pipeline", "--config", write_config(cli, 0))
    seen = read_until(following.stderr, "Waiting for a worker")
    assert seen.splitlines()[-1].endswith(
        "Waiting for a worker on queue 'orchestrator'; start one with: orchestrator worker"
    )
    workers.start("w1")
    out, rest = following.communicate(timeout=60)
    assert following.returncode == 0, seen + rest
    assert "✓ Pipeline completed successfully" in out
    assert (seen + rest).count("Waiting for a worker") == 1


@pytest.mark.workers
def test_a_run_waiting_behind_a_busy_worker_is_not_said_to_have_none(
    queued_cli: CLI, workers: WorkerPool
):
    workers.start("w1")
    cli = CLI(queued_cli.cwd, {**queued_cli.env, "ORCHESTRATOR_WORKER_NOTICE_SECONDS": "0.5"})
    cli("run_pipeline", "--config", write_config(cli, 2, name="busy"), "--detach", check=True)
    result = cli("run_pipeline", "--config", write_config(cli, 0, name="next"), timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Waiting for a worker" not in result.stderr
