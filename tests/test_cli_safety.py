"""The console script in a subprocess: database problems in one line, one embedded database per
user wherever the command runs, exit statuses of usage errors, and an inline resume that says
so before the rest of the run executes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from django.db import connection

from orchestrator import control, definitions, engine
from orchestrator.models import PipelineRun
from orchestrator.state import Action, NodeStatus
from tests.conftest import CLI, free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def one_line_error(result, *, code: int = 1) -> str:
    """The single stderr line of a failed command, checked to be no traceback."""
    assert result.returncode == code, result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def with_env(cli: CLI, env: dict[str, str]) -> CLI:
    return CLI(cli.cwd, {**cli.env, **env})


def postgres_url(**parts: str) -> str:
    """A URL to the test database's PostgreSQL server, with ``parts`` replaced."""
    settings = {**connection.settings_dict, **parts}
    auth = settings["USER"] + (f":{settings['PASSWORD']}" if settings.get("PASSWORD") else "")
    host = settings.get("HOST") or "127.0.0.1"
    return f"postgres://{auth}@{host}:{settings.get('PORT') or 5432}/{settings['NAME']}"


needs_postgres = pytest.mark.skipif(
    os.environ.get("TEST_DATABASE_URL", "").split(":")[0] not in ("postgres", "postgresql"),
    reason="a PostgreSQL server is only known on the PostgreSQL pass",
)


# --- 3: database problems -----------------------------------------------------------------------


def test_a_database_server_that_is_down_is_one_line_with_the_password_hidden(cli: CLI) -> None:
    port = free_port()
    url = f"postgres://ops:s3cret@127.0.0.1:{port}/orchestrator"
    for args in (("pr", "list"), ("migrate",)):
        line = one_line_error(with_env(cli, {"DATABASE_URL": url})(*args))
        assert line.endswith(
            f"Cannot reach the database at postgres://ops@127.0.0.1:{port}/orchestrator "
            "(password hidden): connection refused."
        ), line
        assert "s3cret" not in line


@pytest.mark.parametrize("url", ["mysqlx://db/x", "postgres://h:port/db"])
def test_an_unusable_database_url_is_one_line(cli: CLI, url: str) -> None:
    line = one_line_error(with_env(cli, {"DATABASE_URL": url})("pr", "list"))
    assert line.startswith("Error: DATABASE_URL is not usable"), line


def test_a_settings_module_the_cli_cannot_use_is_one_line(cli: CLI) -> None:
    line = one_line_error(with_env(cli, {"DJANGO_SETTINGS_MODULE": "nowhere.x"})("pr", "list"))
    assert line == (
        "Error: DJANGO_SETTINGS_MODULE=nowhere.x cannot be imported (No module named 'nowhere'); "
        "unset it to use the orchestrator's own settings."
    )
    line = one_line_error(with_env(cli, {"DJANGO_SETTINGS_MODULE": "json"})("pr", "list"))
    assert "DJANGO_SETTINGS_MODULE=json does not install the orchestrator" in line


@needs_postgres
def test_postgresql_problems_name_the_fix(cli: CLI) -> None:
    missing = connection.settings_dict["NAME"] + "_missing"
    line = one_line_error(with_env(cli, {"DATABASE_URL": postgres_url(NAME=missing)})("pr", "list"))
    assert line.endswith(
        f"The database '{missing}' does not exist on the server of "
        f"{postgres_url(NAME=missing)}: create it (createdb {missing}) or fix "
        "DATABASE_URL."
    ), line
    # Before migrate: a schema with no tables in it.
    bare = postgres_url() + "?options=-csearch_path%3Dno_tables_here"
    for args in (("pr", "list"), ("run_pipeline", "--sample")):
        line = one_line_error(with_env(cli, {"DATABASE_URL": bare})(*args))
        assert line.endswith(
            "has no orchestrator tables (or older ones). Run 'orchestrator migrate' first."
        ), line


# --- 4: one embedded database per user ------------------------------------------------------------


def user_env(cli: CLI, home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in cli.env.items()
        if k not in ("DATABASE_URL", "ORCHESTRATOR_HOME", "XDG_DATA_HOME")
    }
    return {**env, "HOME": str(home), **extra}


def test_the_embedded_database_is_one_per_user_whatever_the_directory(
    cli: CLI, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    one = {"name": "here", "nodes": [{"id": "a", "type": "wait", "config": {"seconds": 0}}]}
    (first / "w.json").write_text(json.dumps(one))
    env = user_env(cli, home)
    CLI(first, env)("run_pipeline", "--config", "w.json", check=True)
    listed = json.loads(CLI(second, env)("pr", "list", "--json", check=True).stdout)
    assert [row["pipeline_name"] for row in listed["runs"]] == ["here"]
    database = home / ".local" / "share" / "orchestrator" / "orchestrator.sqlite3"
    assert database.exists()
    assert not list(first.glob("*.sqlite3")) and not list(second.glob("*.sqlite3"))
    assert f"(now: {database})" in CLI(second, env)("--help", check=True).stdout

    elsewhere = tmp_path / "elsewhere"
    env = user_env(cli, home, ORCHESTRATOR_HOME=str(elsewhere))
    assert json.loads(CLI(second, env)("pr", "list", "--json", check=True).stdout)["runs"] == []
    assert (elsewhere / "orchestrator.sqlite3").exists()


# --- exit statuses ------------------------------------------------------------------------------


def test_usage_errors_exit_2_and_refusals_exit_1_in_one_line(cli: CLI) -> None:
    run = engine.create_run(definitions.parse({"nodes": [{"id": "a", "type": "wait"}]}), payload={})
    PipelineRun.objects.filter(pk=run.pk).update(status="COMPLETED")
    assert one_line_error(cli("pr", "pause", " "), code=2).startswith(
        "CommandError: Invalid run id ' ': give a local run id"
    )
    paged = cli("pr", "list", "--page", "1" + "0" * 18)
    assert paged.returncode == 2 and "Traceback" not in paged.stderr
    assert "--page: '1000000000000000000' is not a whole number from 1 to" in paged.stderr
    line = one_line_error(cli("run_pipeline", "--sample", "--payload", '{"a": NaN}'))
    assert line.startswith("CommandError: Invalid JSON in --payload: NaN is not a number")
    line = one_line_error(cli("pr", "pause", str(run.pk)))
    assert line.startswith(f"CommandError: Cannot pause pipeline run {run.pk}: it is COMPLETED.")
    assert PipelineRun.objects.count() == 1


# --- 10: an inline resume says so first -------------------------------------------------------


def test_an_inline_resume_says_resumed_before_the_rest_of_the_run_executes(cli: CLI) -> None:
    data = {
        "name": "later",
        "nodes": [
            {"id": "a", "type": "wait", "config": {"seconds": 0}, "next": "b"},
            {"id": "b", "type": "wait", "config": {"seconds": 1.5}},
        ],
    }
    run = engine.create_run(definitions.parse(data), payload={})
    control.signal(run.pk, Action.PAUSE)
    resuming = cli.popen("pr", "resume", str(run.pk))
    first = resuming.stdout.readline()
    assert first.startswith(f"Pipeline run {run.pk} has been resumed: node 'a' runs here"), first
    # Said while the run still goes on here, not after it ended.
    wait_for(lambda: run.node_runs.filter(node_id="b", status=NodeStatus.RUNNING).exists())
    assert PipelineRun.objects.get(pk=run.pk).status == "RUNNING"
    out, err = resuming.communicate(timeout=30)
    assert resuming.returncode == 0, err
    assert "✓ Pipeline completed successfully" in out
