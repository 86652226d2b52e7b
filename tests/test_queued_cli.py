"""``run_pipeline``, ``worker`` and friends with a broker: queued runs, followed or detached."""

from __future__ import annotations

import json
import re
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import redis

from orchestrator import control, definitions, engine
from orchestrator.models import NodeRun, PipelineRun, RunEvent
from orchestrator.state import Action, NodeStatus, RunStatus
from tests.conftest import AMQP, CLI, DEFAULT_QUEUE, WorkerPool, free_port, wait_for
from tests.test_recovery import status_of

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]

PROGRESS = re.compile(r"^\[\s*\d+\.\d\ds\] (.*)$")


def write_config(cli: CLI, *seconds: float, name: str = "waits") -> str:
    """A definition of one ``wait`` node per entry of ``seconds`` (w0, w1, ...), as a file."""
    ids = [f"w{i}" for i in range(len(seconds))]
    nodes = [
        {
            "id": node_id,
            "type": "wait",
            "config": {"seconds": s},
            "next": ids[i + 1] if i + 1 < len(ids) else None,
        }
        for i, (node_id, s) in enumerate(zip(ids, seconds, strict=True))
    ]
    path = Path(cli.cwd) / f"{name}.json"
    path.write_text(json.dumps({"name": name, "nodes": nodes}))
    return str(path)


def progress_lines(stderr: str) -> list[str]:
    """The live progress lines, without their elapsed-time prefix."""
    return [m.group(1) for line in stderr.splitlines() if (m := PROGRESS.match(line))]


def read_until(stream: IO[str], text: str, timeout: float = 30) -> str:
    """Read lines from a child's pipe until one holds ``text``; returns what was read."""
    seen = ""
    deadline = time.monotonic() + timeout
    while text not in seen:
        ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
        line = stream.readline() if ready else ""
        if not line:
            raise AssertionError(f"{text!r} not seen within {timeout}s; got:\n{seen}")
        seen += line
    return seen


def detached_run(stdout: str) -> PipelineRun:
    run_id = int(re.search(r"^Run ID: (\d+)$", stdout, re.M).group(1))
    return PipelineRun.objects.get(pk=run_id)


def test_queued_run_is_followed_live_node_by_node_then_shows_the_result(
    queued_cli: CLI, workers: WorkerPool
):
    workers.start("w1")
    config = write_config(queued_cli, 0.2, 0, 0.2)

    result = queued_cli("run_pipeline", "--config", config, check=True)

    run = PipelineRun.objects.get()
    assert run.status == RunStatus.COMPLETED
    lines = progress_lines(result.stderr)
    assert lines[0] == f"Pipeline run {run.pk} queued (trace {run.trace_id})"
    assert [re.sub(r" in \d+ms$", "", line) for line in lines[1:]] == [
        "▶ w0 [wait] started",
        "✓ w0 completed",
        "▶ w1 [wait] started",
        "✓ w1 completed",
        "▶ w2 [wait] started",
        "✓ w2 completed",
    ]
    assert all(re.search(r" in \d+ms$", line) for line in lines[2::2])
    out = result.stdout.splitlines()
    assert "PIPELINE RESULT" in out and "Status: COMPLETED" in out
    assert f"Run ID: {run.pk}" in out and f"Trace ID: {run.trace_id}" in out
    assert [line for line in out if line.startswith("--- wait")] == [
        "--- wait (w0) ---",
        "--- wait (w1) ---",
        "--- wait (w2) ---",
    ]
    assert out[-1] == "✓ Pipeline completed successfully"


def test_followed_run_that_fails_after_a_retry_reports_it_and_exits_non_zero(
    queued_cli: CLI, workers: WorkerPool
):
    workers.start("w1")
    flaky = {"seconds": 0, "fail_attempts": 1}
    definition = {
        "name": "flaky",
        "nodes": [
            {"id": "flaky", "type": "wait", "config": flaky, "retries": 1, "next": "broken"},
            {"id": "broken", "type": "wait", "config": {"seconds": 0, "fail": True}},
        ],
    }
    config = Path(queued_cli.cwd) / "flaky.json"
    config.write_text(json.dumps(definition))

    result = queued_cli("run_pipeline", "--config", str(config), "--json")

    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["status"] == "FAILED"
    assert [(n["id"], n["status"], n["attempt"]) for n in document["nodes"]] == [
        ("flaky", "COMPLETED", 2),
        ("broken", "FAILED", 1),
    ]
    lines = progress_lines(result.stderr)
    assert "▶ broken [wait] started" in lines
    assert any(line.startswith("✗ broken failed in ") for line in lines)
    assert result.stderr.endswith(f"CommandError: Pipeline run {document['run_id']} failed\n")


def test_detach_returns_at_once_and_a_worker_command_later_finishes_the_run(queued_cli: CLI):
    config = write_config(queued_cli, 0, 0)
    result = queued_cli("run_pipeline", "--config", config, "--detach", check=True)

    run = detached_run(result.stdout)
    assert result.stdout.splitlines() == [
        f"Run ID: {run.pk}",
        f"Trace ID: {run.trace_id}",
        f"Follow it with: orchestrator pr watch {run.pk}",
    ]
    assert progress_lines(result.stderr) == []
    assert status_of(run.pk) == RunStatus.QUEUED  # no worker yet: nothing waited for one

    worker = queued_cli.popen(
        "worker", "-n", "cmd@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"
    )
    try:
        wait_for(lambda: status_of(run.pk) == RunStatus.COMPLETED, timeout=30)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            banner, log = worker.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            banner, log = worker.communicate()
    assert worker.returncode == 0, log
    assert f".> {DEFAULT_QUEUE} " in banner  # the default queue, without -Q
    for task_id in NodeRun.objects.filter(run=run).values_list("task_id", flat=True):
        assert f"run_node[{task_id}] received" in log


def test_detach_json_prints_only_the_queued_run_as_json(queued_cli: CLI):
    config = write_config(queued_cli, 0)

    result = queued_cli("run_pipeline", "--config", config, "--detach", "--json", check=True)

    run = PipelineRun.objects.get()
    assert json.loads(result.stdout) == {
        "run_id": run.pk,
        "trace_id": str(run.trace_id),
        "status": "QUEUED",
    }
    assert run.status == RunStatus.QUEUED  # no worker here: it waits for one


def test_ctrl_c_while_following_leaves_the_run_going_and_says_how_to_watch_or_cancel_it(
    queued_cli: CLI, workers: WorkerPool
):
    workers.start("w1")
    config = write_config(queued_cli, 2.5, 0)
    following = queued_cli.popen("run_pipeline", "--config", config)
    seen = read_until(following.stderr, "▶ w0 [wait] started")  # it is following the run now
    run = PipelineRun.objects.get()

    following.send_signal(signal.SIGINT)
    _, rest = following.communicate(timeout=30)

    err = seen + rest
    assert following.returncode == 0, err  # leaving a run going is not an error
    assert f"Stopped following pipeline run {run.pk}; it keeps going (RUNNING)." in err
    assert f"orchestrator pr watch {run.pk}" in err
    assert f"orchestrator pr cancel {run.pk}" in err
    assert "Traceback" not in err
    assert status_of(run.pk) == RunStatus.RUNNING
    wait_for(lambda: status_of(run.pk) == RunStatus.COMPLETED, timeout=30)
    assert set(NodeRun.objects.values_list("status", "attempt")) == {(NodeStatus.COMPLETED, 1)}


@pytest.fixture(params=["closed port", "silent listener"])
def unreachable_broker(request: pytest.FixtureRequest) -> Iterator[str]:
    """A broker URL nothing answers on: a closed port, or one that accepts and never speaks."""
    if request.param == "closed port":
        yield f"redis://127.0.0.1:{free_port()}/0"
        return
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # the kernel completes connections; nothing ever reads or answers
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


def test_unreachable_broker_is_a_clear_error_within_five_seconds_and_queues_no_run(
    cli: CLI, unreachable_broker: str
):
    unreachable = CLI(cli.cwd, {**cli.env, "CELERY_BROKER_URL": unreachable_broker})
    config = write_config(cli, 0)

    started = time.monotonic()
    result = unreachable("run_pipeline", "--config", config, timeout=30)
    elapsed = time.monotonic() - started

    assert result.returncode == 1
    assert result.stderr.startswith(
        f"CommandError: Cannot reach the broker at {unreachable_broker}"
    )
    assert "Traceback" not in result.stderr
    assert elapsed < 5
    assert not PipelineRun.objects.exists()


def paused_run(*seconds: float) -> PipelineRun:
    """A run of wait nodes w0, w1, ... paused before its first node."""
    nodes = [
        {"id": f"w{i}", "type": "wait", "config": {"seconds": s}, "next": f"w{i + 1}"}
        for i, s in enumerate(seconds)
    ]
    nodes[-1]["next"] = None
    run = engine.create_run(definitions.parse({"name": "paused", "nodes": nodes}), payload={})
    control.signal(run.pk, Action.PAUSE)
    assert status_of(run.pk) == RunStatus.PAUSED
    return run


def test_resume_with_the_broker_down_changes_nothing_and_says_so_in_one_line(cli: CLI):
    run = paused_run(0)
    closed = f"redis://127.0.0.1:{free_port()}/0"

    result = CLI(cli.cwd, {**cli.env, "CELERY_BROKER_URL": closed})("pr", "resume", str(run.pk))

    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"CommandError: Cannot reach the broker at {closed}")
    assert status_of(run.pk) == RunStatus.PAUSED
    assert not RunEvent.objects.filter(run=run, kind=RunEvent.RESUMED).exists()


@pytest.mark.skipif(AMQP, reason="refusing writes by memory limit is a Redis setting")
def test_a_resume_the_broker_refuses_after_commit_says_so_and_the_workers_queue_it(
    queued_cli: CLI, workers: WorkerPool
):
    run = paused_run(0, 0)
    server = redis.Redis.from_url(workers.broker.url)
    server.config_set("maxmemory", 1)  # it answers, and refuses every write
    try:
        result = queued_cli("pr", "resume", str(run.pk))
    finally:
        server.config_set("maxmemory", 0)

    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(
        f"CommandError: Pipeline run {run.pk} has been resumed, but node 'w0' could not be queued ("
    )
    assert "command not allowed when used memory > 'maxmemory'" in line
    assert line.endswith("); the recovery pass will queue it.")
    assert status_of(run.pk) == RunStatus.RUNNING
    workers.start(env={"ORCHESTRATOR_RECOVERY_INTERVAL": "0.5"})
    wait_for(lambda: status_of(run.pk) == RunStatus.COMPLETED, timeout=30)
    assert set(NodeRun.objects.values_list("status", "attempt")) == {(NodeStatus.COMPLETED, 1)}


def test_worker_help_needs_no_broker_and_lists_celery_worker_options(cli: CLI):
    result = cli("worker", "--help", check=True)

    assert result.stdout.startswith("usage: orchestrator worker [celery worker options]")
    assert "orchestrator worker -Q orchestrator,gpu" in result.stdout
    assert "--concurrency" in result.stdout and "--queues" in result.stdout


def test_worker_without_a_broker_says_it_needs_one(cli: CLI):
    result = cli("worker")

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "CommandError: CELERY_BROKER_URL is not set: workers need a broker "
        "(e.g. export CELERY_BROKER_URL=redis://localhost:6379/0)"
    )
