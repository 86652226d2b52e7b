"""The ``pipeline`` command: list, show, validate, save and samples on stored definitions."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from orchestrator.models import PipelineDefinition
from tests.conftest import CLI, REPO

pytestmark = pytest.mark.django_db(transaction=True)

SAMPLES_DIR = REPO / "orchestrator" / "samples"
SAMPLES = {p.stem: json.loads(p.read_text()) for p in sorted(SAMPLES_DIR.glob("*.json"))}
HEALTH_CHECK = SAMPLES["health-check"]
INVALID = {
    "name": "broken",
    "nodes": [
        {"id": "analyze", "type": "ai", "next": "notify"},
        {"id": "notify", "type": "notify", "next": "missing"},
    ],
}
INVALID_MESSAGE = (
    "Pipeline definition invalid:\n"
    "  - Node 'analyze' has unknown type: ai\n"
    "  - Node 'notify' references non-existent next: 'missing'"
)


def pipeline(*args: str) -> str:
    out = io.StringIO()
    call_command("pipeline", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def pipeline_error(*args: str) -> str:
    with pytest.raises(CommandError) as caught:
        pipeline(*args)
    return str(caught.value)


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def one_wait(name: str | None = None, seconds: float = 0) -> dict[str, Any]:
    data: dict[str, Any] = {
        "description": "Wait a moment",
        "nodes": [{"id": "pause", "type": "wait", "config": {"seconds": seconds}}],
    }
    if name:
        data["name"] = name
    return data


# samples


def test_samples_stores_every_shipped_definition() -> None:
    output = pipeline("samples")
    assert output.splitlines() == [
        f"Created pipeline definition {name} (version 1)." for name in SAMPLES
    ]
    stored = {d.name: d for d in PipelineDefinition.objects.all()}
    assert set(stored) == set(SAMPLES) >= {"health-check"}
    for name, data in SAMPLES.items():
        assert stored[name].config == data
        assert stored[name].description == data["description"]
        assert (stored[name].version, stored[name].is_active) == (1, True)


def test_samples_again_leaves_them_and_their_versions_unchanged() -> None:
    pipeline("samples")
    assert pipeline("samples").splitlines() == [
        f"Unchanged pipeline definition {name} (version 1)." for name in SAMPLES
    ]
    assert PipelineDefinition.objects.count() == len(SAMPLES)
    assert set(PipelineDefinition.objects.values_list("version", flat=True)) == {1}


# list


def test_list_with_nothing_stored_says_how_to_load_the_samples() -> None:
    assert pipeline("list") == (
        "No stored definitions. Load the samples with: orchestrator pipeline samples\n"
    )
    assert json.loads(pipeline("list", "--json")) == []


def test_list_shows_name_version_description_and_inactive_ones(tmp_path: Path) -> None:
    pipeline("samples")
    pipeline("save", str(write_json(tmp_path / "w.json", one_wait("zz-wait"))), "--inactive")
    header, *lines = pipeline("list").splitlines()
    assert header.split() == ["NAME", "VERSION", "DESCRIPTION"]
    assert len(lines) == len(SAMPLES) + 1
    health = next(line for line in lines if line.startswith("health-check "))
    assert health.split(None, 2)[1:] == ["v1", HEALTH_CHECK["description"]]
    assert lines[-1].startswith("zz-wait ")
    assert lines[-1].endswith("Wait a moment  (inactive)")
    rows = json.loads(pipeline("list", "--json"))
    assert [(r["name"], r["version"], r["is_active"]) for r in rows] == [
        *((name, 1, True) for name in sorted(SAMPLES)),
        ("zz-wait", 1, False),
    ]


# show


def test_show_prints_the_stored_definition() -> None:
    pipeline("samples")
    header, body = pipeline("show", "health-check").split("\n", 1)
    assert header == "# health-check v1"
    assert json.loads(body) == HEALTH_CHECK


def test_show_of_an_unknown_name_is_an_error() -> None:
    assert pipeline_error("show", "nonexistent") == "Pipeline definition not found: nonexistent"


def test_show_marks_an_inactive_definition() -> None:
    PipelineDefinition.objects.create(name="off", config=one_wait("off"), is_active=False)
    assert pipeline("show", "off").startswith("# off v1 (inactive)\n")


INCIDENT_GRAPH = """\
flowchart TD
    n0["ingest (ingest)"]
    n1["host (context)"]
    n2["disks (context)"]
    n3["analyze (intelligence)"]
    n4["page (notify)<br/>when analyze.severity == #quot;critical#quot;"]
    n5["log (notify)"]
    n6["report-failure (notify)"]
    n0 --> n1
    n0 --> n2
    n1 --> n3
    n2 --> n3
    n3 --> n4
    n3 --> n5
    failed(["run failed"]) -.-> n6
"""


def test_show_graph_prints_a_stored_definitions_graph_as_mermaid() -> None:
    pipeline("samples")
    assert pipeline("show", "incident-triage", "--graph") == INCIDENT_GRAPH
    assert pipeline("show", "health-check", "--graph") == (
        "flowchart TD\n"
        '    n0["metrics (context)"]\n'
        '    n1["analyze (intelligence)"]\n'
        '    n2["notify (notify)"]\n'
        "    n0 --> n1\n"
        "    n1 --> n2\n"
    )


def test_show_graph_of_a_file_escapes_what_mermaid_cannot_hold(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "odd.json",
        {
            "name": "odd",
            "nodes": [
                {"id": "end", "type": "wait", "next": ["a<b", "c"]},
                {"id": "a<b", "type": "wait", "when": {"path": "payload.n", "lt": 5}},
                {"id": "c", "type": "wait", "when": {"path": "payload.tag", "equals": "#1"}},
            ],
        },
    )
    assert pipeline("show", "--config", str(path), "--graph").splitlines() == [
        "flowchart TD",
        '    n0["end (wait)"]',  # a reserved word in Mermaid, safe as a label
        '    n1["a#lt;b (wait)<br/>when payload.n #lt; 5"]',
        '    n2["c (wait)<br/>when payload.tag == #quot;#35;1#quot;"]',
        "    n0 --> n1",
        "    n0 --> n2",
    ]
    header, body = pipeline("show", "--config", str(path)).split("\n", 1)
    assert header == f"# {path}" and json.loads(body)["name"] == "odd"


def test_show_needs_a_name_or_a_file_and_refuses_an_invalid_graph(tmp_path: Path) -> None:
    expected = (
        "Give a stored definition's name or --config FILE (one of them): "
        "orchestrator pipeline show health-check --graph"
    )
    assert pipeline_error("show") == expected
    assert pipeline_error("show", "x", "--config", "y.json") == expected
    path = write_json(tmp_path / "broken.json", INVALID)
    assert pipeline_error("show", "--config", str(path), "--graph") == INVALID_MESSAGE


# validate


def test_validate_a_valid_file() -> None:
    path = SAMPLES_DIR / "health-check.json"
    assert pipeline("validate", str(path)) == f"{path} is valid: 3 nodes.\n"


def test_validate_a_one_node_file_says_node(tmp_path: Path) -> None:
    path = write_json(tmp_path / "one.json", one_wait("one"))
    assert pipeline("validate", str(path)) == f"{path} is valid: 1 node.\n"


def test_validate_an_invalid_file_lists_every_problem(tmp_path: Path) -> None:
    path = write_json(tmp_path / "broken.json", INVALID)
    assert pipeline_error("validate", str(path)) == INVALID_MESSAGE


def test_validate_a_file_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{nodes: []}")
    assert pipeline_error("validate", str(path)) == (
        "Invalid JSON in config file: "
        "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    )


def test_validate_a_stored_name() -> None:
    pipeline("samples")
    assert pipeline("validate", "health-check") == "health-check is valid: 3 nodes.\n"


def test_validate_an_invalid_stored_definition() -> None:
    PipelineDefinition.objects.create(name="broken", config=INVALID)
    assert pipeline_error("validate", "broken") == INVALID_MESSAGE


def test_validate_a_name_that_is_neither_file_nor_stored() -> None:
    assert pipeline_error("validate", "nonexistent") == (
        "Pipeline definition not found: nonexistent (neither a file nor a stored definition)"
    )


def test_validate_prefers_an_existing_file_to_a_stored_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    PipelineDefinition.objects.create(name="broken", config=INVALID)
    write_json(tmp_path / "broken", one_wait("broken"))
    monkeypatch.chdir(tmp_path)
    assert pipeline("validate", "broken") == "broken is valid: 1 node.\n"


# save


def test_save_creates_then_updates_and_bumps_the_version(tmp_path: Path) -> None:
    path = write_json(tmp_path / "w.json", one_wait("pauser"))
    assert pipeline("save", str(path)) == "Created pipeline definition pauser (version 1).\n"
    stored = PipelineDefinition.objects.get(name="pauser")
    assert (stored.version, stored.is_active, stored.config) == (1, True, one_wait("pauser"))
    write_json(path, one_wait("pauser", seconds=2))
    assert pipeline("save", str(path)) == "Updated pipeline definition pauser (version 2).\n"
    stored.refresh_from_db()
    assert (stored.version, stored.config) == (2, one_wait("pauser", seconds=2))
    # Saving it again unchanged keeps the version; a change of state bumps it.
    assert pipeline("save", str(path)) == "Unchanged pipeline definition pauser (version 2).\n"
    assert pipeline("save", str(path), "--inactive") == (
        "Updated pipeline definition pauser (version 3).\n"
    )
    assert PipelineDefinition.objects.count() == 1


def test_save_with_name_stores_under_that_name(tmp_path: Path) -> None:
    path = write_json(tmp_path / "w.json", one_wait("in-file"))
    assert pipeline("save", str(path), "--name", "custom") == (
        "Created pipeline definition custom (version 1).\n"
    )
    assert list(PipelineDefinition.objects.values_list("name", flat=True)) == ["custom"]


def test_save_a_file_without_a_name_needs_name(tmp_path: Path) -> None:
    path = write_json(tmp_path / "nameless.json", one_wait())
    assert pipeline_error("save", str(path)) == (
        f'{path} has no name: add a "name" field or pass --name'
    )
    assert not PipelineDefinition.objects.exists()
    pipeline("save", str(path), "--name", "named")
    assert PipelineDefinition.objects.get().name == "named"


def test_save_refuses_an_invalid_definition_and_stores_nothing(tmp_path: Path) -> None:
    path = write_json(tmp_path / "broken.json", INVALID)
    assert pipeline_error("save", str(path)) == INVALID_MESSAGE
    assert pipeline_error("save", str(tmp_path / "missing.json")) == (
        f"Config file not found: {tmp_path / 'missing.json'}"
    )
    assert not PipelineDefinition.objects.exists()


def test_save_inactive_then_save_again_reactivates(tmp_path: Path) -> None:
    path = write_json(tmp_path / "w.json", one_wait("pauser"))
    pipeline("save", str(path), "--inactive")
    assert PipelineDefinition.objects.get().is_active is False
    pipeline("save", str(path))
    assert PipelineDefinition.objects.get().is_active is True


# through the console script


def test_errors_exit_non_zero_with_one_line_and_no_traceback(cli: CLI) -> None:
    write_json(cli.cwd / "broken.json", INVALID)
    result = cli("pipeline", "validate", "broken.json")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"CommandError: {INVALID_MESSAGE}\n"
    saved = cli("pipeline", "save", "broken.json")
    assert (saved.returncode, saved.stderr) == (1, f"CommandError: {INVALID_MESSAGE}\n")
    assert not PipelineDefinition.objects.exists()


def test_the_readme_diamond_is_valid_and_its_picture_is_what_show_graph_prints(
    tmp_path: Path,
) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Branches") :]
    example = section[
        section.index("```json\n") + 8 : section.index("```\n", section.index("```json"))
    ]
    picture = section[section.index("```mermaid\n") + 11 :]
    picture = picture[: picture.index("```\n")]
    path = tmp_path / "diamond.json"
    path.write_text(example)
    assert pipeline("show", "--config", str(path), "--graph") == picture
