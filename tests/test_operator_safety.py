"""Operator safety, in this process: malformed run ids act on nothing, a refused change writes
nothing, values the databases refuse are refused in one line before anything is written,
--detach needs a broker, --json wherever a script reads the output, and the polish items."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from orchestrator import control, definitions, engine
from orchestrator.models import PipelineDefinition, PipelineRun, RunEvent
from orchestrator.state import Action, NodeStatus, RunStatus
from tests.conftest import command
from tests.test_pr_cli import stored_run, waits

pytestmark = pytest.mark.django_db(transaction=True)


def snapshot() -> list[tuple]:
    """Every run row and event, to show that a refused command changed nothing."""
    runs = list(PipelineRun.objects.order_by("id").values_list())
    return [*runs, *RunEvent.objects.order_by("id").values_list("id", "kind")]


def write(path: Path, data: object) -> str:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


# --- 1 and 14: run ids ----------------------------------------------------------------------------


MALFORMED_IDS = [
    ("pr", "pause", " "),
    ("pr", "cancel", "--pipeline_version_run_id", " "),
    ("pr", "resume", "\t"),
    ("pr", "status", ""),
    ("pr", "status", " "),
    ("pr", "watch", ""),
    ("pr", "monitor", "  "),
    ("pr", "status", "\uff11"),  # full-width digit one
    ("pipelinerun", "cancel", "1\x00"),
]


def test_a_blank_or_malformed_run_id_is_a_usage_error_and_acts_on_no_run() -> None:
    newest = stored_run("QUEUED")  # an unlinked run: its Clarifai id is the empty string
    before = snapshot()
    for args in MALFORMED_IDS:
        outcome = command(*args)
        assert outcome.error is not None and outcome.error.returncode == 2, (args, outcome)
        assert "\n" not in outcome.message
        assert snapshot() == before, args
    assert PipelineRun.objects.get(pk=newest.pk).status == RunStatus.QUEUED


def test_full_width_digits_do_not_name_a_run() -> None:
    run = stored_run()
    assert command("pr", "status", str(run.pk)).stdout.startswith(f"Pipeline run {run.pk}: ")
    wide = "".join(chr(ord(digit) + 0xFEE0) for digit in str(run.pk))  # full-width digits
    outcome = command("pr", "status", wide)
    assert outcome.error is not None and outcome.error.returncode == 2
    assert outcome.message.startswith(f"Invalid run id {wide}: give a local run id")


def test_no_lookup_matches_an_empty_clarifai_id() -> None:
    stored_run()
    assert control.find_run(" ".strip() or "x") is None
    with pytest.raises(control.UsageError):
        control.find_run("")


# --- 2: a refused change writes nothing -----------------------------------------------------------


def test_a_refused_cancel_with_clarifai_ids_stores_nothing_on_the_run() -> None:
    done = stored_run("COMPLETED")
    before = snapshot()
    ids = ("--user_id=U", "--app_id=A", "--pipeline_id=P", "--pipeline_version_id=V")
    outcome = command("pr", "cancel", str(done.pk), *ids)
    assert outcome.message.startswith(f"Cannot cancel pipeline run {done.pk}: it is COMPLETED.")
    assert snapshot() == before
    done.refresh_from_db()
    assert (done.clarifai_user_id, done.clarifai_app_id) == ("", "")


def test_an_accepted_change_stores_the_ids_with_it() -> None:
    queued = stored_run("QUEUED")
    outcome = command("pr", "pause", str(queued.pk), "--user_id=U", "--app_id=A")
    assert outcome.error is None
    queued.refresh_from_db()
    assert (queued.status, queued.clarifai_user_id, queued.clarifai_app_id) == ("PAUSED", "U", "A")


# --- 5: --detach ----------------------------------------------------------------------------------


def test_detach_without_a_broker_is_refused_and_records_nothing(tmp_path: Path) -> None:
    config = write(tmp_path / "w.json", waits(("a", 0)))
    outcome = command("run_pipeline", "--config", config, "--detach")
    assert outcome.message.startswith("--detach needs a broker: set CELERY_BROKER_URL")
    assert "\n" not in outcome.message
    assert not PipelineRun.objects.exists()


# --- 7: --json ------------------------------------------------------------------------------------


def test_every_command_a_script_reads_takes_json(tmp_path: Path) -> None:
    config = write(tmp_path / "w.json", waits(("a", 0), ("b", 0), name="jsonny"))
    dry = json.loads(command("run_pipeline", "--config", config, "--dry-run", "--json").stdout)
    assert (dry["dry_run"], dry["pipeline"], [n["id"] for n in dry["nodes"]]) == (
        True,
        "jsonny",
        ["a", "b"],
    )
    assert not PipelineRun.objects.exists()
    saved = json.loads(command("pipeline", "save", config, "--json").stdout)
    assert saved == {"name": "jsonny", "version": 1, "outcome": "created"}
    shown = json.loads(command("pipeline", "show", "jsonny", "--json").stdout)
    assert shown == waits(("a", 0), ("b", 0), name="jsonny")
    valid = json.loads(command("pipeline", "validate", config, "--json").stdout)
    assert valid == {"target": config, "valid": True, "nodes": 2, "problems": []}
    bad = command("pipeline", "validate", write(tmp_path / "b.json", {"nodes": []}), "--json")
    assert json.loads(bad.stdout)["problems"] == ["Definition must have a non-empty 'nodes' list"]
    assert bad.error is not None
    samples = json.loads(command("pipeline", "samples", "--json").stdout)
    assert {row["outcome"] for row in samples} == {"created"}
    run = engine.create_run(definitions.parse(waits(("a", 0))), payload={})
    engine.dispatch_run(run)
    watched = json.loads(command("pr", "watch", str(run.pk), "--json").stdout)
    assert (watched["run_id"], watched["status"]) == (run.pk, "COMPLETED")


# --- 10: polish -----------------------------------------------------------------------------------


def test_the_list_hint_for_the_next_page_keeps_the_filters() -> None:
    for _ in range(3):
        stored_run("PAUSED", name="two words")
    out = command("pr", "list", "--status", "paused", "--definition", "two words", "--limit", "2")
    assert out.stdout.splitlines()[-1] == (
        "More: orchestrator pr list --status PAUSED --definition 'two words' --limit 2 --page 2"
    )


def test_watch_stamps_replayed_lines_with_their_recorded_times() -> None:
    run = engine.create_run(definitions.parse(waits(("slow", 0.3), ("fast", 0))), payload={})
    engine.dispatch_run(run)
    lines = command("pr", "watch", str(run.pk)).stdout.splitlines()
    stamped = (re.match(r"\[\s*([\d.]+)s\] (.*)", line) for line in lines[:-1])
    stamps = {match.group(2): float(match.group(1)) for match in stamped if match}
    assert stamps["▶ fast [wait] started"] >= 0.3  # not [0.00s]: when it really started
    assert stamps["▶ slow [wait] started"] < stamps["▶ fast [wait] started"]


def test_a_cancelled_run_shows_no_resume_point() -> None:
    run = stored_run("QUEUED")
    control.signal(run.pk, Action.PAUSE)
    assert "Resume from: a" in command("pr", "status", str(run.pk)).stdout
    command("pr", "cancel", str(run.pk))
    run.refresh_from_db()
    assert (run.status, run.nodes_in(NodeStatus.QUEUED, NodeStatus.RETRYING)) == ("CANCELLED", [])
    assert "Resume from" not in command("pr", "status", str(run.pk)).stdout


# --- 12: values the databases refuse --------------------------------------------------------------


REFUSED_RUNS = [
    (("--payload", '{"a": NaN}'), "Invalid JSON in --payload: NaN is not a number"),
    (("--payload", '{"a": Infinity}'), "Infinity is not a number JSON allows"),
    (("--payload", '{"a": "\\u0000"}'), "contains a NUL character"),
    (("--payload", '{"a": "\\ud800"}'), "lone surrogate \\ud800"),
    (("--payload", "[" * 5000 + "]" * 5000), "nested too deeply"),
    (("--payload", '{"a": ' + "9" * 4301 + "}"), "an integer has too many digits"),
    (("--payload", "{}\x00"), "--payload contains a NUL character"),
    (("--source", "s" * 101), "--source is 101 characters long; the limit is 100"),
    (("--environment", "e" * 101), "--environment is 101 characters long"),
    (("--source", "\udcff"), "--source is not valid Unicode"),
    (("--pipeline_version_run_id", "r" * 201), "--pipeline_version_run_id is 201 characters"),
    (("--user_id", "bad id", "--pipeline_version_run_id", "r"), "--user_id may hold only"),
    (("--definition", "\x00"), "--definition contains a NUL character"),
]


def test_run_pipeline_refuses_in_one_line_before_anything_is_written(tmp_path: Path) -> None:
    config = ("--config", write(tmp_path / "w.json", waits(("a", 0))))
    for args, said in REFUSED_RUNS:
        outcome = command("run_pipeline", *(() if "--definition" in args else config), *args)
        assert said in outcome.message, (args, outcome.message)
        assert "\n" not in outcome.message
    assert not PipelineRun.objects.exists()


@pytest.mark.parametrize(
    ("config", "said"),
    [
        ('{"name": "n", "nodes": [{"id": "a", "type": "wait", "timeout_seconds": NaN}]}', "NaN"),
        (json.dumps({**waits(("a", 0)), "description": "\x00"}), "contains a NUL character"),
        (json.dumps({**waits(("a", 0)), "name": "p" * 201}), "name is 201 characters long"),
        (json.dumps(waits(("n" * 201, 0))), "id is 201 characters long"),
    ],
)
def test_validate_refuses_what_save_and_run_pipeline_would_fail_on(
    config: str, said: str, tmp_path: Path
) -> None:
    path = write(tmp_path / "hostile.json", config)
    for args in (("pipeline", "validate", path), ("pipeline", "save", path, "--name", "x")):
        assert said in command(*args).message
    assert said in command("run_pipeline", "--config", path).message
    assert not PipelineDefinition.objects.exists() and not PipelineRun.objects.exists()


def test_a_file_name_too_long_to_be_a_pipeline_name_is_refused_by_validate_too(
    tmp_path: Path,
) -> None:
    data = waits(("a", 0))
    del data["name"]
    path = write(tmp_path / ("p" * 201 + ".json"), data)
    for args in (("pipeline", "validate", path), ("run_pipeline", "--config", path)):
        assert "Pipeline name is 201 characters long; the limit is 200" in command(*args).message
    assert not PipelineRun.objects.exists()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--page", "1000000000000000000"), "--page: '1000000000000000000' is not a whole number"),
        (("--limit", "0"), "--limit: '0' is not a whole number from 1 to 1000"),
        (("--definition", "\x00"), "--definition contains a NUL character"),
    ],
)
def test_pr_list_refuses_pages_and_texts_the_databases_cannot_take(args: tuple, said: str) -> None:
    outcome = command("pr", "list", *args)
    assert said in outcome.message


@pytest.mark.parametrize("interval", ["nan", "inf", "-1", "0"])
def test_watch_intervals_and_timeouts_are_finite_and_positive(interval: str) -> None:
    run = stored_run("COMPLETED")
    for flag in ("--interval", "--timeout"):
        assert "is not a number from" in command("pr", "watch", str(run.pk), flag, interval).message
    assert "is not a number from" in command("pr", "cancel", "1", "--timeout", interval).message
