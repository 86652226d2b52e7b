"""The Clarifai mirror client against a real gRPC peer on loopback."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import grpc
import pytest
from clarifai_grpc.grpc.api.status import status_code_pb2

from orchestrator.clarifai import (
    STATUS_CODES,
    ClarifaiIds,
    load_config_lock,
    patch_run_status,
    resolve_ids,
)
from orchestrator.errors import ClarifaiError
from tests.clarifai_peer import ClarifaiPeer

PAT = "test-pat-0123456789"
IDS = ClarifaiIds(
    user_id="u1",
    app_id="a1",
    pipeline_id="p1",
    pipeline_version_id="v1",
    pipeline_version_run_id="run-42",
)
LOCK = """\
pipeline:
  id: lock-pipeline
  user_id: lock-user
  app_id: lock-app
  version_id: lock-version
  step_directories: [step1]
  orchestration_spec:
    argo_orchestration_spec: "apiVersion: argoproj.io/v1alpha1"
"""


@pytest.fixture
def peer(clarifai_peer: ClarifaiPeer, monkeypatch: pytest.MonkeyPatch) -> ClarifaiPeer:
    """The shared peer, reset, with this file's PAT and the default deadline."""
    monkeypatch.setenv("CLARIFAI_PAT", PAT)
    monkeypatch.delenv("ORCHESTRATOR_CLARIFAI_TIMEOUT", raising=False)
    return clarifai_peer


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the request ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("verb", "code"), [("pause", 64008), ("cancel", 64004), ("resume", 64001)])
def test_each_verb_sends_the_clis_exact_patch_request(peer: ClarifaiPeer, verb: str, code: int):
    patch_run_status(IDS, STATUS_CODES[verb])

    [request] = peer.requests
    assert request.user_app_id.user_id == "u1"
    assert request.user_app_id.app_id == "a1"
    assert request.pipeline_id == "p1"
    assert request.pipeline_version_id == "v1"
    assert request.action == "overwrite"
    [run] = request.pipeline_version_runs
    assert run.id == "run-42"
    assert run.orchestration_status.status.code == code
    assert peer.metadata[0]["authorization"] == f"Key {PAT}"


def test_explicit_pat_and_base_win_over_the_environment(peer: ClarifaiPeer, monkeypatch):
    monkeypatch.setenv("CLARIFAI_PAT", "env-pat")
    monkeypatch.setenv("CLARIFAI_API_BASE", f"http://127.0.0.1:{unused_port()}")
    patch_run_status(IDS, "JOB_PAUSED", pat="flag-pat", base=peer.base)
    assert peer.metadata[0]["authorization"] == "Key flag-pat"


def test_unknown_status_code_name_is_refused_before_any_call(peer: ClarifaiPeer):
    with pytest.raises(ClarifaiError, match="Unknown Clarifai status code 'JOB_NAPPING'"):
        patch_run_status(IDS, "JOB_NAPPING")
    assert peer.requests == []


# --- id resolution -------------------------------------------------------------------------------


def test_ids_from_flags_need_no_config_lock(tmp_path: Path):
    ids = resolve_ids(
        "r1", user_id="u", app_id="a", pipeline_id="p", pipeline_version_id="v", cwd=tmp_path
    )
    assert ids == ClarifaiIds("u", "a", "p", "v", "r1")


def test_ids_come_from_config_lock_in_the_working_directory(tmp_path: Path):
    (tmp_path / "config-lock.yaml").write_text(LOCK)
    ids = resolve_ids("r1", cwd=tmp_path)
    assert ids == ClarifaiIds("lock-user", "lock-app", "lock-pipeline", "lock-version", "r1")


def test_config_lock_is_read_from_cwd_by_default(tmp_path: Path, monkeypatch):
    (tmp_path / "config-lock.yaml").write_text(LOCK)
    monkeypatch.chdir(tmp_path)
    assert resolve_ids("r1").pipeline_version_id == "lock-version"


def test_flags_override_config_lock(tmp_path: Path):
    (tmp_path / "config-lock.yaml").write_text(LOCK)
    ids = resolve_ids("r1", app_id="flag-app", pipeline_version_id="flag-version", cwd=tmp_path)
    assert ids == ClarifaiIds("lock-user", "flag-app", "lock-pipeline", "flag-version", "r1")


def test_stored_link_fills_what_flags_leave_and_beats_config_lock(tmp_path: Path):
    (tmp_path / "config-lock.yaml").write_text(LOCK)
    stored = {
        "user_id": "s-user",
        "app_id": "s-app",
        "pipeline_id": "s-pipe",
        "pipeline_version_id": "",
    }
    ids = resolve_ids("r1", user_id="flag-user", stored=stored, cwd=tmp_path)
    assert ids == ClarifaiIds("flag-user", "s-app", "s-pipe", "lock-version", "r1")


def test_missing_ids_are_named_with_both_ways_to_supply_them(tmp_path: Path):
    with pytest.raises(ClarifaiError) as raised:
        resolve_ids("r1", user_id="u", pipeline_id="p", cwd=tmp_path)
    assert str(raised.value) == (
        "Missing Clarifai ids: --app_id, --pipeline_version_id. Pass them as flags, or run from a "
        "directory with a config-lock.yaml (written by `clarifai pipeline upload`)."
    )


def test_config_lock_missing_keys_leaves_them_missing(tmp_path: Path):
    (tmp_path / "config-lock.yaml").write_text("pipeline:\n  id: p\n  user_id: u\n")
    assert load_config_lock(tmp_path / "config-lock.yaml") == {"pipeline_id": "p", "user_id": "u"}
    missing = r"^Missing Clarifai ids: --app_id, --pipeline_version_id\."
    with pytest.raises(ClarifaiError, match=missing):
        resolve_ids("r1", cwd=tmp_path)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("pipeline: [unclosed\n", "is not valid YAML"),
        ("- just\n- a list\n", "has no `pipeline:` mapping"),
        ("model:\n  id: m\n", "has no `pipeline:` mapping"),
        ("pipeline: flat-string\n", "has no `pipeline:` mapping"),
        ("", "has no `pipeline:` mapping"),
    ],
)
def test_invalid_config_lock_says_why_it_was_not_used(tmp_path: Path, content: str, reason: str):
    (tmp_path / "config-lock.yaml").write_text(content)
    with pytest.raises(ClarifaiError) as raised:
        resolve_ids("r1", cwd=tmp_path)
    message = str(raised.value)
    assert message.startswith(
        "Missing Clarifai ids: --user_id, --app_id, --pipeline_id, "
        "--pipeline_version_id. Pass them as flags"
    )
    assert "config-lock.yaml could not be used: " in message
    assert reason in message


def test_unreadable_config_lock_is_a_clarifai_error(tmp_path: Path):
    (tmp_path / "config-lock.yaml").mkdir()
    with pytest.raises(ClarifaiError, match="could not be read"):
        load_config_lock(tmp_path / "config-lock.yaml")
    unusable = r"config-lock\.yaml could not be used: .*could not be read"
    with pytest.raises(ClarifaiError, match=unusable):
        resolve_ids("r1", cwd=tmp_path)


def test_invalid_config_lock_is_ignored_when_flags_supply_everything(tmp_path: Path):
    (tmp_path / "config-lock.yaml").write_text("pipeline: [unclosed\n")
    ids = resolve_ids(
        "r1", user_id="u", app_id="a", pipeline_id="p", pipeline_version_id="v", cwd=tmp_path
    )
    assert ids.app_id == "a"


# --- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize("pat", [None, ""])
def test_missing_pat_fails_before_any_request(peer: ClarifaiPeer, monkeypatch, pat):
    if pat is None:
        monkeypatch.delenv("CLARIFAI_PAT")
    else:
        monkeypatch.setenv("CLARIFAI_PAT", pat)
    with pytest.raises(ClarifaiError) as raised:
        patch_run_status(IDS, "JOB_PAUSED")
    assert str(raised.value) == (
        "CLARIFAI_PAT is not set: export your Clarifai personal access token"
    )
    assert raised.value.retryable is False
    assert peer.requests == []


def test_failure_status_names_the_code_description_and_details(peer: ClarifaiPeer):
    peer.mode = "failure"
    peer.failure_details = "pipeline version run run-42 not found"
    with pytest.raises(ClarifaiError) as raised:
        patch_run_status(IDS, "JOB_CANCELLED")
    assert str(raised.value) == (
        "Clarifai refused the change: CONN_DOES_NOT_EXIST "
        "(Resource does not exist): pipeline version run run-42 not found"
    )
    assert raised.value.code_name == "CONN_DOES_NOT_EXIST"
    assert raised.value.retryable is False


def test_internal_failure_status_is_retryable(peer: ClarifaiPeer):
    peer.mode = "failure"
    peer.failure_code = status_code_pb2.INTERNAL_SERVER_ISSUE
    peer.failure_description = "Internal error"
    with pytest.raises(ClarifaiError) as raised:
        patch_run_status(IDS, "JOB_PAUSED")
    assert raised.value.code_name == "INTERNAL_SERVER_ISSUE"
    assert raised.value.retryable is True


def test_unreachable_peer_is_a_retryable_unavailable_error(peer: ClarifaiPeer):
    base = f"http://127.0.0.1:{unused_port()}"
    with pytest.raises(ClarifaiError) as raised:
        patch_run_status(IDS, "JOB_PAUSED", base=base, timeout=5)
    assert str(raised.value).startswith(f"Cannot reach Clarifai at {base}: ")
    assert raised.value.code_name == "UNAVAILABLE"
    assert raised.value.retryable is True


def test_stalled_peer_hits_the_deadline_quickly(peer: ClarifaiPeer):
    peer.mode = "stall"
    started = time.monotonic()
    with pytest.raises(ClarifaiError) as raised:
        patch_run_status(IDS, "JOB_PAUSED", timeout=0.5)
    assert time.monotonic() - started < 2
    assert str(raised.value) == "Clarifai did not answer within 0.5 s"
    assert raised.value.code_name == "DEADLINE_EXCEEDED"
    assert raised.value.retryable is True


def test_timeout_comes_from_the_environment(peer: ClarifaiPeer, monkeypatch):
    peer.mode = "stall"
    monkeypatch.setenv("ORCHESTRATOR_CLARIFAI_TIMEOUT", "0.3")
    with pytest.raises(ClarifaiError, match=r"^Clarifai did not answer within 0.3 s$"):
        patch_run_status(IDS, "JOB_PAUSED")


@pytest.mark.parametrize(
    ("code", "message", "retryable"),
    [
        (
            grpc.StatusCode.UNAUTHENTICATED,
            "Clarifai rejected the credentials (UNAUTHENTICATED): check CLARIFAI_PAT",
            False,
        ),
        (
            grpc.StatusCode.NOT_FOUND,
            "Clarifai has no such pipeline version run (NOT_FOUND): no run run-42",
            False,
        ),
        (
            grpc.StatusCode.INVALID_ARGUMENT,
            "Clarifai call failed: INVALID_ARGUMENT: no run run-42",
            False,
        ),
        (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "Clarifai call failed: RESOURCE_EXHAUSTED: no run run-42",
            True,
        ),
    ],
)
def test_grpc_errors_become_one_line_messages(peer: ClarifaiPeer, code, message, retryable):
    peer.mode = "grpc_error"
    peer.grpc_code = code
    peer.grpc_details = "no run run-42"
    with pytest.raises(ClarifaiError) as raised:
        patch_run_status(IDS, "JOB_PAUSED")
    assert str(raised.value) == message
    assert raised.value.code_name == code.name
    assert raised.value.retryable is retryable


def test_the_pat_never_appears_in_an_error(peer: ClarifaiPeer):
    peer.mode = "grpc_error"
    peer.grpc_code = grpc.StatusCode.PERMISSION_DENIED
    peer.grpc_details = f"key {PAT} may not patch runs"
    with pytest.raises(ClarifaiError) as raised:
        patch_run_status(IDS, "JOB_PAUSED")
    assert PAT not in str(raised.value)
    assert "PERMISSION_DENIED" in str(raised.value)


def test_channel_retries_a_briefly_unavailable_peer_by_itself(peer: ClarifaiPeer):
    # ClarifaiChannel's service config retries UNAVAILABLE, so two failures cost one call.
    peer.fail_times = 2
    patch_run_status(IDS, "JOB_RUNNING")
    assert len(peer.requests) == 3


def test_unusable_api_base_is_a_clarifai_error(peer: ClarifaiPeer):
    with pytest.raises(ClarifaiError, match="CLARIFAI_API_BASE 'ftp://x' is not usable"):
        patch_run_status(IDS, "JOB_PAUSED", base="ftp://x")


@pytest.mark.parametrize("scheme", ["https://", ""])
def test_https_and_bare_bases_use_tls(peer: ClarifaiPeer, scheme: str):
    # The peer speaks plaintext, so a TLS handshake with it fails before any request arrives.
    with pytest.raises(ClarifaiError) as raised:
        patch_run_status(IDS, "JOB_PAUSED", base=f"{scheme}127.0.0.1:{peer.port}", timeout=3)
    assert raised.value.code_name == "UNAVAILABLE"
    assert peer.requests == []
