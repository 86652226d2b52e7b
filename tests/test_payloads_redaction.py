"""Payload building with its limits, and secrets kept out of everything the commands print."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from orchestrator import payloads
from orchestrator.builtin import sample_payload
from orchestrator.errors import PayloadError
from orchestrator.models import PipelineRun
from orchestrator.redaction import REDACTED, is_secret_key, redact, redact_text
from tests.conftest import CLI
from tests.httpserver import LoopbackHTTPServer

# payloads


def test_no_payload_options_give_an_empty_object() -> None:
    assert payloads.build() == {}


def test_file_overrides_sample_and_payload_overrides_both(tmp_path: Path) -> None:
    path = tmp_path / "alert.json"
    path.write_text(json.dumps({"host": "db-09", "team": "storage"}))
    sample = sample_payload("generic")
    built = payloads.build(sample=sample, file=str(path), payload='{"team": "sre", "extra": 1}')
    assert built == {**sample, "host": "db-09", "team": "sre", "extra": 1}
    assert sample == sample_payload("generic")  # the sample was not changed in place


def test_payload_file_may_be_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "alert.json").write_text('{"a": 1}')
    monkeypatch.chdir(tmp_path)
    assert payloads.build(file="alert.json") == {"a": 1}


def test_empty_payload_file_is_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text("")
    with pytest.raises(PayloadError, match=r"^Invalid JSON in payload file .*: Expecting value"):
        payloads.build(file=str(path))


def test_payload_limit_is_a_setting_and_applies_to_the_merged_payload(
    tmp_path: Path, settings: Any
) -> None:
    settings.ORCHESTRATOR_MAX_PAYLOAD_BYTES = 40
    exactly = json.dumps({"a": "x" * 31})
    assert len(exactly) == 40
    assert payloads.build(payload=exactly) == {"a": "x" * 31}
    with pytest.raises(PayloadError) as one_over:
        payloads.build(payload=json.dumps({"a": "x" * 32}))
    assert str(one_over.value) == "Payload too large: --payload is 41 bytes; the limit is 40 bytes"
    path = tmp_path / "half.json"
    path.write_text(json.dumps({"b": "y" * 20}))
    with pytest.raises(PayloadError) as merged:
        payloads.build(file=str(path), payload=json.dumps({"a": "x" * 20}))
    # Measured compactly: {"b":"yyyy…","a":"xxxx…"}
    assert str(merged.value) == "Payload too large: the payload is 55 bytes; the limit is 40 bytes"


def test_payload_size_counts_utf8_bytes_and_non_ascii_within_the_limit_passes(
    settings: Any,
) -> None:
    settings.ORCHESTRATOR_MAX_PAYLOAD_BYTES = 21
    text = json.dumps({"a": "é" * 6}, ensure_ascii=False)  # 15 characters, 21 bytes
    assert payloads.build(payload=text) == {"a": "é" * 6}
    with pytest.raises(PayloadError) as caught:
        payloads.build(payload=json.dumps({"a": "é" * 7}, ensure_ascii=False))
    assert str(caught.value) == "Payload too large: --payload is 23 bytes; the limit is 21 bytes"


# redaction


@pytest.mark.parametrize(
    "key",
    [
        "api_key",
        "apikey",
        "APIKey",
        "apiKey",
        "X-Api-Key",
        "key",
        "private_key",
        "privateKey",
        "routingKey",
        "token",
        "access_token",
        "accessToken",
        "X-Auth-Token",
        "secret",
        "clientSecret",
        "password",
        "dbPassword",
        "passwd",
        "pat",
        "CLARIFAI_PAT",
        "Authorization",
        "auth",
        "webhook",
        "webhook_url",
        "webhookUrl",
        "credentials",
    ],
)
def test_secret_key_names_are_recognised(key: str) -> None:
    assert is_secret_key(key)
    assert redact({key: "hunter2"}) == {key: REDACTED}


@pytest.mark.parametrize(
    "key",
    [
        "name",
        "groupKey",
        "sortKey",
        "monkey",
        "keyboard",
        "max_tokens",
        "tokenizer",
        "author",
        "path",
        "url",
        "severity",
        "fingerprint",
    ],
)
def test_ordinary_key_names_are_kept(key: str) -> None:
    assert not is_secret_key(key)
    assert redact({key: "visible"}) == {key: "visible"}


def test_redact_walks_nested_objects_and_lists_and_leaves_the_input_alone() -> None:
    data = {
        "alerts": [{"labels": {"token": "t1", "host": "web-01"}}, ("x", {"password": "p"})],
        "count": 2,
        "ok": True,
        "none": None,
        7: "int key",
    }
    before = json.dumps(data, default=str)
    assert redact(data) == {
        "alerts": [
            {"labels": {"token": REDACTED, "host": "web-01"}},
            ["x", {"password": REDACTED}],
        ],
        "count": 2,
        "ok": True,
        "none": None,
        7: "int key",
    }
    assert json.dumps(data, default=str) == before


def test_a_secret_object_is_hidden_whole() -> None:
    assert redact({"credentials": {"user": "u", "pass": "p"}}) == {"credentials": REDACTED}


def test_empty_secret_values_are_shown_so_a_missing_key_is_visible() -> None:
    assert redact({"api_key": "", "token": None}) == {"api_key": "", "token": None}


def test_extra_keys_name_a_node_types_own_secrets() -> None:
    config = {"url": "https://example.com/hook/abc", "headers": {"X-Trace": "1"}, "driver": "x"}
    assert redact(config, ["url", "headers"]) == {
        "url": REDACTED,
        "headers": REDACTED,
        "driver": "x",
    }
    assert redact(config)["url"] == "https://example.com/hook/abc"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "posted to https://hooks.slack.com/services/T000/B000/XXXX now",
            f"posted to {REDACTED} now",
        ),
        ("Authorization: Bearer abc.def-123", f"Authorization: {REDACTED}"),
        ("Key 0123456789abcdef0123", REDACTED),
        ("postgres://app:s3cret@db:5432/x", f"postgres://{REDACTED}@db:5432/x"),
        ("key sk-proj-abcdefgh123 failed", f"key {REDACTED} failed"),
        ("https://h/v1?api-version=1&api-key=abc123", f"https://h/v1?api-version=1&{REDACTED}"),
        ("https://h/hook?token=zzz&page=2", f"https://h/hook?{REDACTED}&page=2"),
        ("https://h/x?access_token=q#frag", f"https://h/x?{REDACTED}#frag"),
        ("https://h/x?sort=key&monkey=1", "https://h/x?sort=key&monkey=1"),
        ("CPU on web-01 is 97% for 10 minutes", "CPU on web-01 is 97% for 10 minutes"),
    ],
)
def test_secret_looking_text_is_hidden_whatever_its_key(text: str, expected: str) -> None:
    assert redact_text(text) == expected
    assert redact({"message": text}) == {"message": expected}


# secrets never in the commands' output

OPENAI_KEY = "sk-live-SECRETKEY0123456789abcd"
SLACK_PATH = "/services/T0SECRET/B0SECRET/SLACKSECRETTOKEN42"
URL_TOKEN = "URLTOKENSECRET77"
HEADER_SECRET = "HEADERSECRET99"
PAYLOAD_SECRET = "PAYLOADPASSWORD55"
SECRETS = (OPENAI_KEY, SLACK_PATH, "SLACKSECRETTOKEN42", URL_TOKEN, HEADER_SECRET, PAYLOAD_SECRET)
PAYLOAD = json.dumps({"alert": "disk", "password": PAYLOAD_SECRET})


@pytest.fixture
def peers() -> Iterator[dict[str, LoopbackHTTPServer]]:
    """An OpenAI-compatible endpoint, a Slack webhook that refuses, and a plain webhook."""
    openai = LoopbackHTTPServer(
        200,
        {"model": "test-model", "choices": [{"message": {"content": "Disk on db-02 is full."}}]},
    )
    # A server that echoes what it got, secrets included, in its error reply.
    slack = LoopbackHTTPServer(500, f"no_service for {SLACK_PATH} (key {OPENAI_KEY})")
    hook = LoopbackHTTPServer(200, {"ok": True})
    with openai, slack, hook:
        yield {"openai": openai, "slack": slack, "hook": hook}


UNUSED_PEERS = {name: "http://127.0.0.1:9" for name in ("openai", "slack", "hook")}


def secret_definition(urls: dict[str, str]) -> dict[str, Any]:
    """Secrets in an intelligence and a notify node, aimed at the peers at ``urls``."""
    return {
        "name": "secretive",
        "nodes": [
            {
                "id": "analyze",
                "type": "intelligence",
                "config": {
                    "provider": "openai",
                    "api_key": OPENAI_KEY,
                    "base_url": f"{urls['openai']}/v1",
                    "timeout_seconds": 10,
                },
                "next": "notify",
            },
            {
                "id": "notify",
                "type": "notify",
                "config": {
                    "drivers": [
                        {"driver": "slack", "webhook_url": urls["slack"] + SLACK_PATH},
                        {
                            "driver": "webhook",
                            "url": f"{urls['hook']}/hook?token={URL_TOKEN}",
                            "headers": {"X-Api-Key": HEADER_SECRET},
                        },
                    ]
                },
            },
        ],
    }


def peer_urls(peers: dict[str, LoopbackHTTPServer]) -> dict[str, str]:
    return {name: peer.url for name, peer in peers.items()}


@pytest.fixture
def secret_cli(cli: CLI) -> CLI:
    return CLI(cli.cwd, {**cli.env, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})


def write_definition(cli: CLI, urls: dict[str, str]) -> None:
    (cli.cwd / "secretive.json").write_text(json.dumps(secret_definition(urls)))


def assert_no_secret(*texts: str) -> None:
    everything = "\n".join(texts)
    for secret in SECRETS:
        assert secret not in everything, secret


def test_dry_run_hides_config_and_payload_secrets(secret_cli: CLI) -> None:
    write_definition(secret_cli, UNUSED_PEERS)
    result = secret_cli(
        "run_pipeline", "--config", "secretive.json", "--payload", PAYLOAD, "--dry-run"
    )
    assert result.returncode == 0, result.stderr
    assert_no_secret(result.stdout, result.stderr)
    assert f'"api_key": "{REDACTED}"' in result.stdout
    assert f'"password": "{REDACTED}"' in result.stdout
    assert "Disk on db-02" not in result.stdout  # nothing was executed


def test_result_display_hides_secrets_even_when_a_server_echoes_them(
    secret_cli: CLI, peers: dict[str, LoopbackHTTPServer]
) -> None:
    write_definition(secret_cli, peer_urls(peers))
    result = secret_cli("run_pipeline", "--config", "secretive.json", "--payload", PAYLOAD)
    assert result.returncode == 0, result.stderr
    assert_no_secret(result.stdout, result.stderr)
    assert "  Summary: Disk on db-02 is full.\n  Provider: openai\n" in result.stdout
    assert "  Driver: multiple\n  Channels attempted: 2\n  Succeeded: 1\n" in result.stdout
    assert "  Failed: slack: HTTP 500: no_service for " in result.stdout
    # The secrets were really used: each peer got them.
    (asked,) = peers["openai"].requests
    assert asked.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert [r.path for r in peers["slack"].requests] == [SLACK_PATH]
    (hooked,) = peers["hook"].requests
    assert (hooked.path, hooked.headers["x-api-key"]) == (f"/hook?token={URL_TOKEN}", HEADER_SECRET)


def test_json_and_a_failed_run_hide_secrets(
    secret_cli: CLI, peers: dict[str, LoopbackHTTPServer]
) -> None:
    write_definition(secret_cli, peer_urls(peers))
    peers["openai"].reply(401, {"error": {"message": f"Incorrect API key provided: {OPENAI_KEY}"}})
    result = secret_cli(
        "run_pipeline", "--config", "secretive.json", "--payload", PAYLOAD, "--json"
    )
    assert result.returncode == 1
    assert_no_secret(result.stdout, result.stderr)
    data = json.loads(result.stdout)
    assert data["status"] == "FAILED"
    assert data["error"].startswith("Node 'analyze' failed: OpenAI request failed: HTTP 401: ")
    assert result.stderr.endswith(f"CommandError: Pipeline run {data['run_id']} failed\n")
    assert PipelineRun.objects.get().config == secret_definition(
        peer_urls(peers)
    )  # the record keeps them


def test_pipeline_show_hides_each_node_types_secrets(
    tmp_path: Path, transactional_db: None
) -> None:
    path = tmp_path / "secretive.json"
    path.write_text(json.dumps(secret_definition(UNUSED_PEERS)))
    call_command("pipeline", "save", str(path), stdout=io.StringIO())
    out = io.StringIO()
    call_command("pipeline", "show", "secretive", stdout=out)
    assert_no_secret(out.getvalue())
    shown = json.loads(out.getvalue().split("\n", 1)[1])
    slack, hook = shown["nodes"][1]["config"]["drivers"]
    assert (slack["webhook_url"], hook["url"], hook["headers"]) == (REDACTED, REDACTED, REDACTED)
    assert shown["nodes"][0]["config"]["base_url"] == "http://127.0.0.1:9/v1"
