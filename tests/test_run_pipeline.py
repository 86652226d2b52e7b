"""``run_pipeline`` on the embedded default: the literal outputs and messages of the spec."""

from __future__ import annotations

import io
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from orchestrator.builtin import BUILTIN_DEFINITION, sample_payload
from orchestrator.models import NodeRun, PipelineDefinition, PipelineRun, RunEvent
from tests.conftest import CLI, REPO

pytestmark = pytest.mark.django_db(transaction=True)

SAMPLES_DIR = REPO / "orchestrator" / "samples"
HEALTH_CHECK = json.loads((SAMPLES_DIR / "health-check.json").read_text())
SERVER_PAYLOAD = '{"server": "web-01"}'

DRY_RUN_BLOCK = """\
=== DRY RUN ===

Pipeline Definition: health-check
Source: cli
Environment: development

Nodes (3):
  1. [context] metrics
     Config: {"include": ["cpu", "memory", "disk"]}
     → next: analyze

  2. [intelligence] analyze
     Config: {"provider": "local"}
     → next: notify

  3. [notify] notify
     Config: {"driver": "console"}
     → end

Payload:
{
  "server": "web-01"
}

Use without --dry-run to execute
"""

INVALID_DEFINITION = {
    "name": "broken",
    "nodes": [
        {"id": "analyze", "type": "ai", "next": "notify"},
        {"id": "notify", "type": "notify", "config": {"driver": "console"}, "next": "missing"},
    ],
}


@pytest.fixture
def health_check(transactional_db: None) -> PipelineDefinition:
    return PipelineDefinition.objects.create(
        name="health-check", description=HEALTH_CHECK["description"], config=HEALTH_CHECK
    )


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def failing_pipeline(*, required: bool = True) -> dict[str, Any]:
    return {
        "name": "failing",
        "nodes": [
            {
                "id": "disk",
                "type": "wait",
                "config": {"seconds": 0, "fail": True, "message": "disk full"},
                "required": required,
                "next": "after",
            },
            {"id": "after", "type": "wait", "config": {"seconds": 0}},
        ],
    }


def run_in_process(*args: str) -> str:
    """``run_pipeline`` in this process; its stdout (node output to the terminal not included)."""
    out = io.StringIO()
    call_command("run_pipeline", *args, "--quiet", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def command_error(*args: str) -> str:
    with pytest.raises(CommandError) as caught:
        run_in_process(*args)
    return str(caught.value)


def nothing_recorded() -> bool:
    return not (
        PipelineRun.objects.exists() or NodeRun.objects.exists() or RunEvent.objects.exists()
    )


def only_run() -> PipelineRun:
    (run,) = PipelineRun.objects.all()
    return run


# dry run


def test_dry_run_of_a_definition_prints_the_spec_block_and_records_nothing(
    health_check: PipelineDefinition,
) -> None:
    output = run_in_process(
        "--definition", "health-check", "--payload", SERVER_PAYLOAD, "--dry-run"
    )
    assert output == DRY_RUN_BLOCK
    assert nothing_recorded()


def test_dry_run_of_a_config_file_names_the_file_and_executes_nothing(
    tmp_path: Path, transactional_db: None
) -> None:
    notes = tmp_path / "notes.jsonl"
    definition = {
        **HEALTH_CHECK,
        "nodes": [
            *HEALTH_CHECK["nodes"][:2],
            {"id": "notify", "type": "notify", "config": {"driver": "file", "path": str(notes)}},
        ],
    }
    path = write_json(tmp_path / "custom.json", definition)
    output = run_in_process("--config", str(path), "--payload", SERVER_PAYLOAD, "--dry-run")
    expected = DRY_RUN_BLOCK.replace(
        "Pipeline Definition: health-check", f"Pipeline Config: {path}"
    ).replace('{"driver": "console"}', json.dumps({"driver": "file", "path": str(notes)}))
    assert output == expected
    assert nothing_recorded()
    assert not notes.exists()


def test_dry_run_shows_source_environment_and_the_built_in_pipeline(
    transactional_db: None,
) -> None:
    output = run_in_process(
        "--sample", "--source", "grafana", "--environment", "production", "--dry-run"
    )
    lines = output.splitlines()
    assert lines[:7] == [
        "=== DRY RUN ===",
        "",
        "Pipeline Definition: alert-pipeline (built-in)",
        "Source: grafana",
        "Environment: production",
        "",
        "Nodes (4):",
    ]
    assert "  1. [ingest] ingest" in lines
    assert "  4. [notify] notify" in lines
    payload = output.split("Payload:\n", 1)[1].rsplit("\n\nUse without --dry-run", 1)[0]
    assert json.loads(payload) == sample_payload("grafana")
    assert nothing_recorded()


# the result display, through the console script


def test_run_prints_the_result_display_and_exits_zero(
    cli: CLI, health_check: PipelineDefinition
) -> None:
    result = cli("run_pipeline", "--definition", "health-check", "--payload", SERVER_PAYLOAD)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    run = only_run()
    assert run.status == "COMPLETED"
    assert run.payload == {"server": "web-01"}
    assert run.definition == health_check
    rule = "=" * 60
    display = result.stdout[result.stdout.index(rule) :]
    assert display.startswith(f"{rule}\nPIPELINE RESULT\n{rule}\n\nStatus: COMPLETED\n")
    header = [
        "Status: COMPLETED",
        "Definition: health-check",
        f"Trace ID: {run.trace_id}",
        f"Run ID: {run.pk}",
    ]
    lines = display.splitlines()
    assert lines[4:8] == header
    assert re.fullmatch(r"Duration: \d+\.\d{2}ms", lines[8])
    sections = display.split("\n\n")
    context, intelligence, notify = (s.splitlines() for s in sections[2:5])
    assert context[:2] == ["--- context (metrics) ---", "  Checks run: 3"]
    assert intelligence[0] == "--- intelligence (analyze) ---"
    assert intelligence[1].startswith("  Summary: ") and len(intelligence[1]) > len("  Summary: ")
    assert intelligence[2] == "  Provider: local"
    assert notify[:4] == [
        "--- notify (notify) ---",
        "  Driver: console",
        "  Channels attempted: 1",
        "  Succeeded: 1",
    ]
    for section in (context, intelligence, notify):
        assert re.fullmatch(r"  Duration: \d+\.\d{2}ms", section[-1])
    assert sections[5] == "✓ Pipeline completed successfully\n"
    # The console driver's notification is printed before the display.
    assert result.stdout.index(run.node_runs.get(node_id="analyze").output["summary"]) < (
        result.stdout.index(rule)
    )


def test_failed_node_shows_its_error_and_the_command_fails(cli: CLI, tmp_path: Path) -> None:
    path = write_json(tmp_path / "failing.json", failing_pipeline())
    result = cli("run_pipeline", "--config", str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    run = only_run()
    assert result.stderr.endswith(f"CommandError: Pipeline run {run.pk} failed\n")
    assert "Status: FAILED\n" in result.stdout
    assert "--- wait (disk) ---\n  Status: FAILED\n  Error: disk full\n" in result.stdout
    assert "--- wait (after) ---" not in result.stdout
    assert result.stdout.endswith("✗ Pipeline failed at node 'disk'\n")
    # The failure's text once in the progress lines and once with its node, no more.
    assert (result.stdout + result.stderr).count("disk full") == 2
    assert (run.status, run.error) == ("FAILED", "Node 'disk' failed: disk full")


def test_failed_optional_node_shows_its_error_and_the_run_goes_on(
    tmp_path: Path, transactional_db: None
) -> None:
    path = write_json(tmp_path / "optional.json", failing_pipeline(required=False))
    output = run_in_process("--config", str(path))
    assert "Status: COMPLETED\n" in output
    assert "--- wait (disk) ---\n  Status: FAILED\n  Error: disk full\n" in output
    assert "--- wait (after) ---\n  Waited: " in output
    assert output.endswith("✓ Pipeline completed successfully\n")


# errors: the spec's literal CommandErrors, through the console script


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--definition", "nonexistent"], "Pipeline definition not found: nonexistent"),
        (["--config", "missing.json"], "Config file not found: missing.json"),
        (
            ["--definition", "health-check", "--config", "custom.json"],
            "Cannot specify both --definition and --config",
        ),
        (
            ["--config", "broken.json"],
            "Pipeline definition invalid:\n"
            "  - Node 'analyze' has unknown type: ai\n"
            "  - Node 'notify' references non-existent next: 'missing'",
        ),
        (
            ["--config", "bad.json"],
            "Invalid JSON in config file: "
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
    ],
    ids=["not-found", "config-missing", "both", "invalid", "bad-json"],
)
def test_spec_errors_are_one_command_error_line_and_record_nothing(
    cli: CLI, args: list[str], message: str
) -> None:
    write_json(cli.cwd / "custom.json", HEALTH_CHECK)
    write_json(cli.cwd / "broken.json", INVALID_DEFINITION)
    (cli.cwd / "bad.json").write_text("{nodes: []}")
    result = cli("run_pipeline", *args)
    assert result.returncode == 1
    assert result.stderr == f"CommandError: {message}\n"
    assert result.stdout == ""
    assert nothing_recorded()


# errors: the other clear errors, with nothing recorded


def test_invalid_payload_json_is_refused(transactional_db: None) -> None:
    assert command_error("--payload", "{server: web-01}") == (
        "Invalid JSON in --payload: "
        "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    )
    assert nothing_recorded()


@pytest.mark.parametrize(
    ("payload", "kind"), [("[1, 2]", "list"), ('"web-01"', "str"), ("42", "int"), ("null", "")]
)
def test_payload_that_is_not_an_object_is_refused(
    transactional_db: None, payload: str, kind: str
) -> None:
    message = command_error("--payload", payload)
    assert message.startswith("Payload must be a JSON object; --payload holds a JSON")
    assert message.endswith(kind)
    assert nothing_recorded()


def test_missing_payload_file_is_refused(transactional_db: None) -> None:
    assert command_error("--file", "/nonexistent/alert.json") == (
        "Payload file not found: /nonexistent/alert.json"
    )
    assert nothing_recorded()


def test_unreadable_payload_file_is_refused(tmp_path: Path, transactional_db: None) -> None:
    assert command_error("--file", str(tmp_path)) == (
        f"Cannot read payload file {tmp_path}: Is a directory"
    )
    binary = tmp_path / "alert.bin"
    binary.write_bytes(b"\xff\xfe{}")
    assert command_error("--file", str(binary)) == (
        f"Cannot read payload file {binary}: not UTF-8 text"
    )
    assert nothing_recorded()


def test_payload_file_that_is_not_an_object_is_refused(
    tmp_path: Path, transactional_db: None
) -> None:
    path = write_json(tmp_path / "list.json", [1])
    assert command_error("--file", str(path)) == (
        f"Payload must be a JSON object; payload file {path} holds a JSON list"
    )
    assert nothing_recorded()


def test_payload_over_one_mebibyte_is_refused(tmp_path: Path, transactional_db: None) -> None:
    big = json.dumps({"blob": "x" * (1024 * 1024)})
    path = tmp_path / "big.json"
    path.write_text(big)
    size = len(big)
    assert command_error("--file", str(path)) == (
        f"Payload too large: payload file {path} is {size} bytes; the limit is 1048576 bytes"
    )
    assert command_error("--payload", big) == (
        f"Payload too large: --payload is {size} bytes; the limit is 1048576 bytes"
    )
    assert nothing_recorded()


def test_payload_just_under_the_limit_is_accepted(transactional_db: None) -> None:
    filler = 1024 * 1024 - len(json.dumps({"blob": ""}))
    output = run_in_process(
        "--config",
        str(SAMPLES_DIR / "health-check.json"),
        "--payload",
        json.dumps({"blob": "x" * filler}),
        "--dry-run",
    )
    assert output.startswith("=== DRY RUN ===")


def test_inactive_definition_is_refused(health_check: PipelineDefinition) -> None:
    PipelineDefinition.objects.filter(pk=health_check.pk).update(is_active=False)
    assert command_error("--definition", "health-check") == (
        "Pipeline definition is inactive: health-check "
        "(save it again or set is_active in the admin to run it)"
    )
    assert nothing_recorded()


def test_stored_definition_that_became_invalid_is_refused(transactional_db: None) -> None:
    PipelineDefinition.objects.create(name="broken", config=INVALID_DEFINITION)
    assert command_error("--definition", "broken").startswith("Pipeline definition invalid:\n")
    assert nothing_recorded()


# --json


def test_json_prints_only_the_finished_run_on_stdout(
    cli: CLI, health_check: PipelineDefinition
) -> None:
    result = cli(
        "run_pipeline", "--definition", "health-check", "--payload", SERVER_PAYLOAD, "--json"
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    run = only_run()
    assert data["status"] == "COMPLETED"
    assert data["run_id"] == run.pk
    assert data["trace_id"] == str(run.trace_id)
    assert data["pipeline"] == "health-check"
    assert [(n["id"], n["type"], n["status"]) for n in data["nodes"]] == [
        ("metrics", "context", "COMPLETED"),
        ("analyze", "intelligence", "COMPLETED"),
        ("notify", "notify", "COMPLETED"),
    ]
    assert data["nodes"][0]["output"]["checks_run"] == 3
    assert data["nodes"][1]["output"]["provider"] == "local"
    assert data["nodes"][2]["output"]["succeeded"] == 1
    # The console driver's notification went to stderr instead.
    assert data["nodes"][1]["output"]["summary"] in result.stderr


def test_json_of_a_failed_run_is_still_json_and_the_command_fails(cli: CLI, tmp_path: Path) -> None:
    path = write_json(tmp_path / "failing.json", failing_pipeline())
    result = cli("run_pipeline", "--config", str(path), "--json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["status"] == "FAILED"
    assert data["error"] == "Node 'disk' failed: disk full"
    assert data["nodes"][0]["error"] == "disk full"
    assert result.stderr.endswith(f"CommandError: Pipeline run {data['run_id']} failed\n")


# what is stored on the run


def test_source_and_environment_are_stored_on_the_run(health_check: PipelineDefinition) -> None:
    run_in_process(
        "--definition", "health-check", "--source", "pagerduty", "--environment", "staging"
    )
    run = only_run()
    assert (run.source, run.environment) == ("pagerduty", "staging")


def test_source_and_environment_default_to_cli_and_development(
    health_check: PipelineDefinition,
) -> None:
    run_in_process("--definition", "health-check")
    run = only_run()
    assert (run.source, run.environment, run.payload) == ("cli", "development", {})


def test_payload_merges_sample_then_file_then_payload(
    tmp_path: Path, health_check: PipelineDefinition
) -> None:
    path = write_json(tmp_path / "alert.json", {"host": "db-09", "team": "storage"})
    run_in_process(
        "--definition",
        "health-check",
        "--sample",
        "--file",
        str(path),
        "--payload",
        '{"team": "sre"}',
    )
    assert only_run().payload == {**sample_payload("generic"), "host": "db-09", "team": "sre"}


@pytest.mark.parametrize(
    ("source", "ingested", "first_alert"),
    [
        ("grafana", "grafana", "HighCPUUsage (critical, firing) on web-01"),
        ("alertmanager", "alertmanager", "DiskSpaceLow (warning, firing) on db-02"),
        ("generic", "generic", "CheckoutLatencyHigh (warning, firing) on api-03"),
        ("nagios", "generic", "CheckoutLatencyHigh (warning, firing) on api-03"),
    ],
)
def test_sample_runs_the_built_in_pipeline_on_the_sources_payload(
    transactional_db: None, source: str, ingested: str, first_alert: str
) -> None:
    output = run_in_process("--sample", "--source", source)
    run = only_run()
    assert run.status == "COMPLETED"
    assert (run.pipeline_name, run.definition, run.source) == ("alert-pipeline", None, source)
    assert run.config == BUILTIN_DEFINITION
    assert run.payload == sample_payload(source)
    assert list(run.node_runs.order_by("position").values_list("node_id", "status")) == [
        ("ingest", "COMPLETED"),
        ("context", "COMPLETED"),
        ("analyze", "COMPLETED"),
        ("notify", "COMPLETED"),
    ]
    assert f"--- ingest (ingest) ---\n  Source: {ingested}\n" in output
    assert f"  First alert: {first_alert}\n" in output
    assert "Definition: alert-pipeline\n" in output


def test_config_file_run_records_the_file_pipeline(tmp_path: Path, transactional_db: None) -> None:
    nameless = {k: v for k, v in HEALTH_CHECK.items() if k != "name"}
    path = write_json(tmp_path / "custom.json", nameless)
    output = run_in_process("--config", str(path), "--sample")
    run = only_run()
    assert (run.status, run.pipeline_name, run.definition) == ("COMPLETED", "custom", None)
    assert "Definition: custom\n" in output


# python manage.py, and a fresh machine


def manage_py(cli: CLI, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_manage_py_run_pipeline_is_the_same_command(
    cli: CLI, health_check: PipelineDefinition
) -> None:
    dry_run = ["run_pipeline", "--definition", "health-check", "--payload", SERVER_PAYLOAD]
    dry_run.append("--dry-run")
    via_manage = manage_py(cli, *dry_run)
    via_script = cli(*dry_run)
    assert (via_manage.returncode, via_manage.stdout) == (0, DRY_RUN_BLOCK)
    assert (via_script.returncode, via_script.stdout) == (0, DRY_RUN_BLOCK)

    missing = manage_py(cli, "run_pipeline", "--definition", "nonexistent")
    assert missing.returncode == 1
    assert missing.stderr == "CommandError: Pipeline definition not found: nonexistent\n"

    ran = manage_py(cli, "run_pipeline", "--sample", "--source", "grafana", "--json")
    assert ran.returncode == 0, ran.stderr
    data = json.loads(ran.stdout)
    assert (data["status"], data["pipeline"], data["source"]) == (
        "COMPLETED",
        "alert-pipeline",
        "grafana",
    )
    assert PipelineRun.objects.get(pk=data["run_id"]).status == "COMPLETED"


def test_fresh_database_file_is_created_and_migrated_on_first_use(cli: CLI, tmp_path: Path) -> None:
    database = tmp_path / "fresh.sqlite3"
    fresh = CLI(cli.cwd, {**cli.env, "DATABASE_URL": f"sqlite:///{database}"})
    assert not database.exists()
    samples = fresh("pipeline", "samples")
    assert samples.returncode == 0, samples.stderr
    assert "Created pipeline definition health-check (version 1)." in samples.stdout
    assert database.exists()
    result = fresh("run_pipeline", "--definition", "health-check", "--sample")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("✓ Pipeline completed successfully\n")
    with sqlite3.connect(database) as db:
        applied = {app for (app,) in db.execute("SELECT app FROM django_migrations")}
        runs = db.execute("SELECT pipeline_name, status FROM orchestrator_pipelinerun").fetchall()
    assert {"orchestrator", "contenttypes", "auth"} <= applied
    assert runs == [("health-check", "COMPLETED")]
    assert nothing_recorded()  # the test database saw none of it


def test_ctrl_c_on_an_inline_run_cancels_it_and_its_node(cli: CLI, tmp_path: Path) -> None:
    import signal
    import time

    config = write_json(tmp_path / "long.json", {"name": "long", "nodes": [
        {"id": "hold", "type": "wait", "config": {"seconds": 30}, "next": "after"},
        {"id": "after", "type": "wait", "config": {"seconds": 0}},
    ]})  # fmt: skip
    process = cli.popen("run_pipeline", "--config", str(config))
    deadline = time.monotonic() + 30
    while not NodeRun.objects.filter(node_id="hold", status="RUNNING").exists():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=15)

    run = only_run()
    assert process.returncode == 1
    assert stderr.strip().splitlines()[-1] == (
        f"CommandError: Interrupted: pipeline run {run.pk} was cancelled."
    )
    assert run.status == "CANCELLED"
    assert NodeRun.objects.get(run=run, node_id="hold").status == "CANCELLED"
    assert not NodeRun.objects.filter(run=run, node_id="after").exists()
