"""Property-based: random and malformed definitions, payloads, run ids and flags, driven through
``definitions.validate``, ``pipeline validate|save``, ``run_pipeline`` and ``pr`` in this process
(as the console script runs them), on whichever database the suite uses. Every input gets a run
or a clear message, never a traceback, and a refused command leaves nothing half-written.

The examples are derandomised, so that CI sees the same ones every time; together these tests
draw 1,050 of them on each database (2,100 in a CI run, on SQLite then PostgreSQL).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator import definitions
from orchestrator.models import PipelineDefinition, PipelineRun
from orchestrator.state import TERMINAL
from tests.conftest import Outcome, command

pytestmark = pytest.mark.django_db(transaction=True)


def examples(count: int) -> settings:
    return settings(
        max_examples=count,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


# --- strategies ---------------------------------------------------------------------------------

HOSTILE_TEXT = ["", " ", "\x00", "a\x00b", "\ud800", "x\udfffy", "\uff11\uff12", "n" * 201, "\n"]
HOSTILE_NUMBERS = [math.nan, math.inf, -math.inf, -(10**30), 2**63, 1e308, -0.0]


def huge() -> int:
    """An integer of 4,400 digits (drawn through a function: hypothesis cannot print it)."""
    return 10**4400


huge_numbers = st.builds(huge)

texts = st.one_of(st.text(max_size=12), st.sampled_from(HOSTILE_TEXT))
numbers = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(HOSTILE_NUMBERS),
    huge_numbers,
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=6,
)


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


#: Values of the numeric options that are refused or harmless when run here (never a long wait).
option_values = st.one_of(
    st.sampled_from([0, -1, 0.0, 10**9, 10**30, "1", None, True, [], {}]),
    st.sampled_from(HOSTILE_NUMBERS),
)
node_ids = st.one_of(st.sampled_from(["a", "b", "c"]), texts)


configs = st.one_of(
    st.fixed_dictionaries({}, optional={"seconds": option_values, "fail": st.booleans()}),
    json_values,
)
#: A node: mostly the right shape, with any key missing or holding a hostile value.
nodes = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["wait", "wait", "wait", "bogus", "", 3, None])},
        optional={
            "id": node_ids,
            "config": configs,
            "next": st.one_of(node_ids, st.none(), json_values),
            "retries": option_values,
            "retry_backoff_seconds": option_values,
            "timeout_seconds": option_values,
            "queue": texts,
            "required": option_values,
            "unknown": json_values,
        },
    ),
    json_values,
)


@st.composite
def pipeline_definitions(draw: st.DrawFn) -> Any:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(json_values)
    if kind == 1:
        return {"name": "deep", "nodes": [{"id": "a", "type": "wait", "config": nested(5000)}]}
    data: dict[str, Any] = {"nodes": draw(st.lists(nodes, max_size=4))}
    if draw(st.booleans()):
        data["name"] = draw(texts)
    if draw(st.integers(0, 3)) == 0:
        data["defaults"] = draw(
            st.one_of(
                st.dictionaries(st.sampled_from(["retries", "timeout_seconds"]), option_values),
                json_values,
            )
        )
    if draw(st.integers(0, 5)) == 0:
        data["description"] = draw(texts)
    return data


def as_json(value: Any) -> str:
    """JSON text as a careless sender writes it: NaN and Infinity included."""
    try:
        return json.dumps(value, ensure_ascii=draw_ascii(value))
    except (ValueError, RecursionError):
        return "{"


def draw_ascii(value: Any) -> bool:
    return len(str(value)) % 2 == 0  # both forms of escaping, without another draw


payload_texts = st.one_of(
    json_values.map(as_json),
    st.dictionaries(texts, json_values, max_size=4).map(as_json),
    st.text(max_size=20),
    st.sampled_from(
        ["[" * 5000 + "]" * 5000, '{"n": ' + "7" * 4400 + "}", '{"a": 1e400}', "{}", '{"a": 1}']
    ),
)
run_ids = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", " ", "0", "-1", "1e3", str(2**63), "9" * 5000, "\uff11", "\x00", "1"]),
    st.integers(min_value=-5, max_value=10**20).map(str),
)
CLARIFAI_FLAGS = ["user_id", "app_id", "pipeline_id", "pipeline_version_id"]
flag_numbers = st.one_of(
    st.integers(min_value=-5, max_value=10**20).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "0.0", "", " ", "0x10", "\x00"]),
    st.floats(allow_nan=True).map(str),
)


# --- the property -------------------------------------------------------------------------------


def assert_clear(outcome: Outcome) -> None:
    """A success, or a CommandError whose message says what was wrong (never a traceback)."""
    if outcome.error is None:
        return
    message = str(outcome.error)
    assert message.strip(), "an empty error message"
    assert "Traceback" not in message, message
    assert outcome.error.returncode in (1, 2)


def counts() -> tuple[int, int]:
    return PipelineRun.objects.count(), PipelineDefinition.objects.count()


@examples(300)
@given(data=pipeline_definitions())
def test_validate_returns_sentences_for_any_definition(data: Any) -> None:
    problems = definitions.validate(data)
    assert all(isinstance(p, str) and p for p in problems)
    if not problems:
        assert definitions.parse(data, name="x").nodes


@examples(200)
@given(data=pipeline_definitions(), name=st.one_of(st.none(), texts))
def test_pipeline_validate_and_save_answer_clearly_and_agree(
    tmp_path: Path, data: Any, name: str | None
) -> None:
    path = tmp_path / "definition.json"
    path.write_text(as_json(data), encoding="utf-8", errors="surrogatepass")
    checked = command("pipeline", "validate", str(path))
    assert_clear(checked)
    before = counts()
    saved = command("pipeline", "save", str(path), *(["--name", name] if name is not None else []))
    assert_clear(saved)
    if saved.error is not None:
        assert counts() == before
    elif name is None:
        # What save stores, validate accepted: validate refuses whatever save would fail on.
        assert checked.error is None


@examples(200)
@given(
    data=pipeline_definitions(),
    payload=st.one_of(st.none(), payload_texts),
    source=st.one_of(st.just("cli"), texts),
    environment=st.one_of(st.just("development"), texts),
    dry_run=st.booleans(),
)
def test_run_pipeline_gives_a_run_or_a_clear_message(
    tmp_path: Path, data: Any, payload: str | None, source: str, environment: str, dry_run: bool
) -> None:
    path = tmp_path / "definition.json"
    path.write_text(as_json(data), encoding="utf-8", errors="surrogatepass")
    args = ["run_pipeline", "--config", str(path), "--source", source, "--environment", environment]
    if payload is not None:
        args += ["--payload", payload]
    if dry_run:
        args += ["--dry-run", "--json"]
    before = counts()
    outcome = command(*args)
    assert_clear(outcome)
    new = PipelineRun.objects.filter(pk__gt=0).order_by("-id").first()
    if counts() == before:
        return
    # A run was recorded: it went to the end (completed, or failed in a node).
    assert new is not None and new.status in TERMINAL
    assert (outcome.error is None) == (new.status == "COMPLETED")


@examples(200)
@given(
    verb=st.sampled_from(["pause", "cancel", "resume", "status", "watch", "monitor"]),
    run_id=run_ids,
    clarifai=st.lists(
        st.tuples(
            st.sampled_from(["user_id", "app_id", "pipeline_id", "pipeline_version_id"]), texts
        ),
        max_size=4,
    ),
    scope=st.sampled_from([[], ["--local"], ["--remote"]]),
)
def test_pr_verbs_answer_any_run_id_and_flags_clearly(
    finished_runs: None, verb: str, run_id: str, clarifai: list, scope: list
) -> None:
    args = ["pr", verb, run_id, *scope, *(f"--{k}={v}" for k, v in clarifai)]
    if verb in ("watch", "monitor"):
        args += ["--timeout", "0.05", "--interval", "0.01"]
    assert_clear(command(*args))


@examples(150)
@given(
    page=flag_numbers,
    limit=flag_numbers,
    status=st.one_of(st.sampled_from(["running", "PAUSED"]), texts),
    definition=texts,
)
def test_pr_list_answers_any_page_limit_and_filter_clearly(
    finished_runs: None, page: str, limit: str, status: str, definition: str
) -> None:
    args = ["pr", "list", "--page", page, "--limit", limit, "--status", status]
    assert_clear(command(*args, "--definition", definition, "--json"))


@pytest.fixture
def finished_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A few finished runs to find, and no Clarifai credentials anywhere (nothing leaves here)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CLARIFAI_PAT", raising=False)
    path = tmp_path / "ok.json"
    path.write_text(
        json.dumps({"name": "ok", "nodes": [{"id": "a", "type": "wait", "config": {"seconds": 0}}]})
    )
    for _ in range(3):
        assert command("run_pipeline", "--config", str(path)).error is None
