"""The CLI from a host with no database: ORCHESTRATOR_URL and ORCHESTRATOR_TOKEN, no DATABASE_URL.

Each answer is compared with the same command run against the database, and the remote process
is shown to create no database of its own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from orchestrator import tokens
from orchestrator.models import ApiToken, PipelineRun
from orchestrator.state import RunStatus
from tests.conftest import CLI, ApiUsers, wait_for
from tests.served import Server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def remote(cli: CLI, served: Server, api_users: ApiUsers, tmp_path: Path) -> CLI:
    home = tmp_path / "operator-host"
    home.mkdir()
    env = {k: v for k, v in cli.env.items() if k != "DATABASE_URL"}
    env.update(ORCHESTRATOR_URL=served.url, ORCHESTRATOR_TOKEN=api_users.operator)
    return CLI(home, env)


def write_waits(where: Path, *seconds: float) -> str:
    ids = [f"w{i}" for i in range(len(seconds))]
    nodes = [
        {
            "id": i,
            "type": "wait",
            "config": {"seconds": s},
            "next": ids[n + 1] if n + 1 < len(ids) else None,
        }
        for n, (i, s) in enumerate(zip(ids, seconds, strict=True))
    ]
    path = where / "waits.json"
    path.write_text(json.dumps({"name": "waits", "nodes": nodes}))
    return str(path)


def test_remote_commands_print_what_the_database_commands_print(remote: CLI, cli: CLI):
    # A fan-out, so that the branches' lines are compared too.
    config = write_waits(remote.cwd, 4, 0.3, 0)
    definition = json.loads(Path(config).read_text())
    definition["nodes"][0]["next"] = ["w1", "w2"]
    definition["nodes"][1]["next"] = None
    Path(config).write_text(json.dumps(definition))
    detached = remote("run_pipeline", "--config", config, "--detach", check=True)
    run_id = int(re.search(r"^Run ID: (\d+)$", detached.stdout, re.M).group(1))
    run = PipelineRun.objects.get(pk=run_id)
    assert detached.stdout.splitlines() == [
        f"Run ID: {run_id}",
        f"Trace ID: {run.trace_id}",
        f"Follow it with: orchestrator pr watch {run_id}",
    ]
    wait_for(lambda: PipelineRun.objects.get(pk=run_id).status == RunStatus.RUNNING)
    paused = remote("pr", "pause", str(run_id), "--wait", "--json", check=True)
    document = json.loads(paused.stdout)
    assert document["action"] == "pause" and document["status"] == "PAUSED"
    assert document["waited"] is True

    for args in (
        ("pr", "status", str(run_id)),
        ("pr", "status", str(run_id), "--json"),
        ("pr", "list"),
        ("pr", "list", "--json", "--limit", "1"),
        ("pr", "pause", str(run_id)),  # already paused: a success that says so
    ):
        here, there = cli(*args), remote(*args)
        assert (there.returncode, there.stdout, there.stderr) == (
            here.returncode,
            here.stdout,
            here.stderr,
        ), args
        if args == ("pr", "status", str(run_id)):
            assert "  w0 → w1, w2 (in parallel)" in there.stdout.splitlines()

    resumed = remote("pr", "resume", str(run_id), check=True)
    assert resumed.stdout.startswith(f"Pipeline run {run_id} has been resumed: nodes 'w1', 'w2'")
    watched = remote("pr", "watch", str(run_id), check=True)
    assert watched.stdout.splitlines()[-1] == "✓ Pipeline completed successfully"

    refused_here, refused_there = (
        cli("pr", "cancel", str(run_id)),
        remote("pr", "cancel", str(run_id)),
    )
    assert refused_there.returncode == refused_here.returncode == 1
    assert refused_there.stderr == refused_here.stderr
    assert f"Cannot cancel pipeline run {run_id}: it is COMPLETED." in refused_there.stderr
    assert not list(remote.cwd.glob("*.sqlite3*"))  # no database on the operator's host


def test_remote_run_pipeline_follows_the_run_and_exits_like_the_database_command(
    remote: CLI,
):
    config = write_waits(remote.cwd, 0, 0)
    followed = remote("run_pipeline", "--config", config, "--payload", '{"host": "web-01"}')
    assert followed.returncode == 0, followed.stderr
    run = PipelineRun.objects.get()
    assert run.payload == {"host": "web-01"} and run.source == "cli"
    out = followed.stdout.splitlines()
    assert out[:4] == ["=" * 60, "PIPELINE RESULT", "=" * 60, ""]
    assert f"Run ID: {run.pk}" in out and out[-1] == "✓ Pipeline completed successfully"
    assert f"Pipeline run {run.pk} queued (trace {run.trace_id})" in followed.stderr
    assert "✓ w1 completed" in followed.stderr

    failing = remote.cwd / "failing.json"
    failing.write_text(
        json.dumps(
            {"name": "failing", "nodes": [{"id": "x", "type": "wait", "config": {"fail": True}}]}
        )
    )
    failed = remote("run_pipeline", "--config", str(failing), "--json")
    assert failed.returncode == 1
    document = json.loads(failed.stdout)
    assert document["status"] == "FAILED"
    assert f"Pipeline run {document['run_id']} failed" in failed.stderr

    invalid = remote.cwd / "invalid.json"
    invalid.write_text(json.dumps({"nodes": [{"id": "a", "type": "nope"}]}))
    refused = remote("run_pipeline", "--config", str(invalid))
    assert refused.returncode == 1 and "unknown type: nope" in refused.stderr
    assert PipelineRun.objects.count() == 2
    assert not list(remote.cwd.glob("*.sqlite3*"))


def test_remote_cli_fails_in_one_line_without_a_good_token_or_a_server(remote: CLI, served: Server):
    token = ApiToken.objects.get(label="tests")
    tokens.revoke(str(token.pk))
    revoked = remote("pr", "list")
    assert revoked.returncode == 1
    assert revoked.stderr.strip() == (
        f"CommandError: The orchestrator API at {served.url} did not accept the token in "
        "ORCHESTRATOR_TOKEN (401): it is wrong or was revoked"
    )
    no_token = CLI(remote.cwd, {**remote.env, "ORCHESTRATOR_TOKEN": ""})("pr", "list")
    assert no_token.returncode == 1 and "ORCHESTRATOR_TOKEN is not" in no_token.stderr
    gone = CLI(remote.cwd, {**remote.env, "ORCHESTRATOR_URL": "http://127.0.0.1:9"})("pr", "list")
    assert gone.returncode == 1
    assert gone.stderr.startswith(
        "CommandError: Cannot reach the orchestrator API at http://127.0.0.1:9"
    )
    local_only = remote("pipeline", "list")
    assert local_only.returncode == 1 and "only 'pr' and 'run_pipeline'" in local_only.stderr
    for result in (revoked, no_token, gone, local_only):
        assert "Traceback" not in result.stderr
    assert not list(remote.cwd.glob("*.sqlite3*"))
