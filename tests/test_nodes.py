"""The built-in node types, run for real: psutil, a loopback HTTP server, locmem mail, files."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.builtin import BUILTIN_DEFINITION, builtin_definition, sample_payload
from orchestrator.errors import NodeError
from orchestrator.nodes import get
from orchestrator.nodes.base import NodeContext, NodeHandler
from orchestrator.nodes.context import ContextNode
from orchestrator.nodes.ingest import IngestNode, detect_format
from orchestrator.nodes.intelligence import SYSTEM_PROMPT, IntelligenceNode
from orchestrator.nodes.notify import NotifyNode
from tests.httpserver import LoopbackHTTPServer

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "orchestrator" / "samples"
OPENAI_KEY = "sk-test-0123456789abcdefghijklmn"
ALL_THRESHOLDS = ("cpu", "memory", "disk", "load")


def execute(
    handler: type[NodeHandler],
    config: dict[str, Any] | None = None,
    payload: dict[str, Any] | None = None,
    outputs: dict[str, Any] | None = None,
    **context: Any,
) -> dict[str, Any]:
    ctx = NodeContext(
        run_id=1,
        node_id="n",
        config=config or {},
        payload=payload or {},
        outputs=outputs or {},
        **context,
    )
    output = handler().execute(ctx)
    json.dumps(output)  # every output must be storable as JSON
    return output


@pytest.fixture
def http_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopbackHTTPServer]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with LoopbackHTTPServer() as server:
        yield server


def analysis(severity: str = "critical") -> dict[str, Any]:
    return {
        "provider": "local",
        "summary": "Disk /var on db-02 is 97% full.",
        "severity": severity,
        "recommendations": ["Free space on db-02"],
    }


# ingest


@pytest.mark.parametrize(
    ("source", "name", "severity", "host", "count"),
    [
        ("grafana", "HighCPUUsage", "critical", "web-01", 1),
        ("alertmanager", "DiskSpaceLow", "warning", "db-02", 2),
        ("generic", "CheckoutLatencyHigh", "warning", "api-03", 1),
    ],
)
def test_ingest_normalises_each_sample_payload(
    source: str, name: str, severity: str, host: str, count: int
) -> None:
    output = execute(IngestNode, payload=sample_payload(source))
    assert output["source"] == source
    assert output["count"] == count == len(output["alerts"])
    first = output["alerts"][0]
    assert set(first) == {"name", "status", "severity", "summary", "labels", "starts_at", "host"}
    assert (first["name"], first["severity"], first["host"], first["status"]) == (
        name,
        severity,
        host,
        "firing",
    )
    assert first["summary"]


def test_ingest_alertmanager_keeps_labels_and_resolved_status() -> None:
    alerts = execute(IngestNode, payload=sample_payload("alertmanager"))["alerts"]
    assert alerts[0]["labels"]["mountpoint"] == "/var/lib/postgresql"
    assert alerts[0]["starts_at"] == "2024-05-14T08:02:30.123Z"
    assert alerts[1]["status"] == "resolved"
    assert alerts[1]["host"] == "db-03"


def test_ingest_reads_legacy_grafana_webhook() -> None:
    payload = {
        "title": "[Alerting] Memory high",
        "ruleId": 7,
        "ruleName": "Memory high",
        "state": "alerting",
        "message": "Memory above 90%",
        "evalMatches": [{"metric": "mem_used", "value": 93.5, "tags": {"host": "cache-1"}}],
    }
    assert detect_format(payload) == "grafana"
    alert = execute(IngestNode, payload=payload)["alerts"][0]
    assert alert["name"] == "Memory high"
    assert alert["status"] == "firing"
    assert alert["host"] == "cache-1"
    assert alert["summary"] == "Memory above 90% (mem_used=93.5)"


def test_ingest_detects_format_from_shape_then_from_source() -> None:
    assert detect_format(sample_payload("grafana")) == "grafana"
    assert detect_format(sample_payload("alertmanager")) == "alertmanager"
    assert detect_format(sample_payload("generic")) == "generic"
    bare = {"alerts": [{"labels": {"alertname": "X"}, "status": "firing"}]}
    assert detect_format(bare) == "alertmanager"
    assert detect_format(bare, source="grafana") == "grafana"
    assert execute(IngestNode, payload=bare, source="grafana")["source"] == "grafana"


def test_ingest_explicit_format_refuses_a_payload_of_another_shape() -> None:
    with pytest.raises(NodeError, match="no 'alerts' list"):
        execute(IngestNode, {"format": "alertmanager"}, payload=sample_payload("generic"))


def test_ingest_empty_payload_yields_no_alerts_and_renders_count() -> None:
    output = execute(IngestNode, payload={})
    assert output == {"source": "generic", "alerts": [], "count": 0}
    assert IngestNode().render(output) == ["Source: generic", "Alerts: 0"]


def test_ingest_render_names_first_alert() -> None:
    lines = IngestNode().render(execute(IngestNode, payload=sample_payload("grafana")))
    assert lines == [
        "Source: grafana",
        "Alerts: 1",
        "First alert: HighCPUUsage (critical, firing) on web-01",
    ]


def test_ingest_config_check_lists_formats() -> None:
    assert IngestNode.check_config({"format": "auto"}) == []
    assert IngestNode.check_config({"format": "pagerduty"}) == [
        "format must be one of: auto, grafana, alertmanager, generic"
    ]


# context


def test_context_zero_thresholds_fail_real_checks() -> None:
    thresholds = dict.fromkeys(ALL_THRESHOLDS, 0)
    output = execute(ContextNode, {"thresholds": thresholds})
    assert set(output["metrics"]) == set(ALL_THRESHOLDS)
    assert output["checks_run"] == 4
    by_name = {c["name"]: c for c in output["checks"]}
    assert not by_name["memory"]["passed"] and not by_name["disk"]["passed"]
    assert output["checks_failed"] == sum(not c["passed"] for c in output["checks"]) >= 2
    lines = ContextNode().render(output)
    assert lines[:2] == ["Checks run: 4", f"Checks failed: {output['checks_failed']}"]
    assert any(line.startswith("Failed: memory ") for line in lines)


def test_context_generous_thresholds_pass_and_render_one_line() -> None:
    thresholds = {"cpu": 100, "memory": 100, "disk": 100, "load": 1000}
    output = execute(ContextNode, {"thresholds": thresholds})
    assert output["checks_failed"] == 0
    assert all(c["passed"] for c in output["checks"])
    assert 0 < output["metrics"]["memory"] <= 100
    assert output["host"]
    assert ContextNode().render(output) == ["Checks run: 4"]


def test_context_include_limits_metrics(tmp_path: Path) -> None:
    output = execute(ContextNode, {"include": ["memory", "disk"], "disk_path": str(tmp_path)})
    assert list(output["metrics"]) == ["memory", "disk"]
    assert [c["threshold"] for c in output["checks"]] == [90.0, 90.0]


def test_context_missing_disk_path_is_a_node_error(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="Cannot read disk usage"):
        execute(ContextNode, {"include": ["disk"], "disk_path": str(tmp_path / "absent")})


def test_context_config_check_reports_every_problem() -> None:
    problems = ContextNode.check_config(
        {"include": ["cpu", "gpu"], "thresholds": {"cpu": -1, "net": 5}, "disk_path": ""}
    )
    assert problems == [
        "include has unknown metric(s) gpu: use cpu, memory, disk, load",
        "thresholds.cpu must be a non-negative number",
        "thresholds has unknown metric 'net': use cpu, memory, disk, load",
        "disk_path must be a non-empty path",
    ]


# intelligence


def test_intelligence_local_is_deterministic_and_rates_critical_alerts() -> None:
    outputs = {
        "ingest": execute(IngestNode, payload=sample_payload("grafana")),
        "context": {
            "metrics": {"disk": 97.0},
            "checks": [{"name": "disk", "value": 97.0, "threshold": 90.0, "passed": False}],
            "checks_run": 1,
            "checks_failed": 1,
            "host": "web-01",
        },
    }
    first = execute(IntelligenceNode, outputs=outputs)
    assert first == execute(IntelligenceNode, outputs=json.loads(json.dumps(outputs)))
    assert first["provider"] == "local"
    assert first["severity"] == "critical"
    assert first["summary"] == (
        "1 firing alert (1 critical): HighCPUUsage on web-01; "
        "1 of 1 host checks failed on web-01: disk 97% exceeds 90%."
    )
    assert first["recommendations"][0] == "Page the on-call engineer: critical alerts are firing"
    assert any("Free space on web-01" in r for r in first["recommendations"])
    assert IntelligenceNode().render(first)[:3] == [
        f"Summary: {first['summary']}",
        "Provider: local",
        "Severity: critical",
    ]


def test_intelligence_local_with_nothing_to_report_is_info() -> None:
    output = execute(IntelligenceNode, outputs={"pause": {"waited_seconds": 0.1}})
    assert output["severity"] == "info"
    assert output["recommendations"] == ["No action needed"]
    assert "also considered: pause" in output["summary"]


def test_intelligence_openai_posts_chat_completion_and_returns_summary(
    http_server: LoopbackHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    http_server.reply(
        200,
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {
                        "role": "assistant",
                        "content": "  CPU on web-01 is pegged; check runaway jobs.\n",
                    },
                }
            ],
        },
    )
    payload = {"name": "HighCPU", "severity": "critical", "token": "payload-secret-991"}
    outputs = {"ingest": execute(IngestNode, payload=payload)}
    config = {"provider": "openai", "base_url": f"{http_server.url}/v1", "timeout_seconds": 5}
    output = execute(
        IntelligenceNode, config, payload, outputs, source="grafana", environment="production"
    )

    (request,) = http_server.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    user_content = json.dumps(
        {
            "environment": "production",
            "outputs": outputs,
            "payload": {"name": "HighCPU", "severity": "critical", "token": "***redacted***"},
            "source": "grafana",
        },
        sort_keys=True,
    )
    assert request.json == {
        "model": "gpt-4o-mini",
        "temperature": 0,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user_content},
        ],
    }
    assert output["summary"] == "CPU on web-01 is pegged; check runaway jobs."
    assert output["provider"] == "openai"
    assert output["model"] == "gpt-4o-mini-2024-07-18"
    assert output["severity"] == "critical"
    lines = IntelligenceNode().render(output)
    assert lines[:2] == [f"Summary: {output['summary']}", "Provider: openai"]
    assert OPENAI_KEY not in json.dumps(output) + "\n".join(lines)


def test_intelligence_openai_base_url_comes_from_environment(
    http_server: LoopbackHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{http_server.url}/compat/v1/")
    http_server.reply(200, {"choices": [{"message": {"role": "assistant", "content": "Fine."}}]})
    output = execute(IntelligenceNode, {"provider": "openai", "model": "llama3"})
    assert http_server.requests[0].path == "/compat/v1/chat/completions"
    assert http_server.requests[0].json["model"] == "llama3"
    assert (output["summary"], output["model"]) == ("Fine.", "llama3")


def test_intelligence_openai_http_error_names_status_and_message_not_key(
    http_server: LoopbackHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    http_server.reply(
        401,
        {
            "error": {
                "message": f"Incorrect API key provided: {OPENAI_KEY}.",
                "type": "invalid_request_error",
            }
        },
    )
    with pytest.raises(NodeError) as raised:
        execute(IntelligenceNode, {"provider": "openai", "base_url": http_server.url})
    message = str(raised.value)
    assert message.startswith("OpenAI request failed: HTTP 401: Incorrect API key provided: ")
    assert OPENAI_KEY not in message


def test_intelligence_openai_without_key_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(NodeError) as raised:
        execute(IntelligenceNode, {"provider": "openai"})
    assert str(raised.value) == "OPENAI_API_KEY is not set: export it, or use provider 'local'"


def test_intelligence_config_check() -> None:
    assert IntelligenceNode.check_config({"provider": "local"}) == []
    assert IntelligenceNode.check_config(
        {"provider": "claude", "base_url": "ftp://x", "timeout_seconds": 0}
    ) == [
        "provider must be one of: local, openai",
        "base_url must be an http:// or https:// URL",
        "timeout_seconds must be a positive number",
    ]


# notify


def test_notify_console_prints_summary_and_renders_counts(capsys: pytest.CaptureFixture) -> None:
    output = execute(NotifyNode, {"driver": "console"}, outputs={"analyze": analysis()})
    printed = capsys.readouterr().out
    assert "[CRITICAL] Pipeline run 1" in printed
    assert "Disk /var on db-02 is 97% full.\n- Free space on db-02" in printed
    assert output["channels"] == [{"driver": "console", "ok": True}]
    lines = NotifyNode().render(output)
    assert lines == ["Driver: console", "Channels attempted: 1", "Succeeded: 1"]


def test_notify_console_quiet_prints_nothing(capsys: pytest.CaptureFixture) -> None:
    execute(NotifyNode, {"driver": "console", "quiet": True}, outputs={"analyze": analysis()})
    assert capsys.readouterr().out == ""


def test_notify_file_appends_one_json_line_per_notification(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "notifications.jsonl"
    config = {"driver": "file", "path": str(path)}
    execute(NotifyNode, config, outputs={"analyze": analysis()}, trace_id="t-1")
    execute(NotifyNode, config, outputs={"analyze": analysis("warning")}, trace_id="t-2")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["trace_id"], r["severity"]) for r in records] == [
        ("t-1", "critical"),
        ("t-2", "warning"),
    ]
    assert records[0]["message"] == "Disk /var on db-02 is 97% full.\n- Free space on db-02"
    assert records[0]["time"].endswith("+00:00")


def test_notify_webhook_posts_exact_json_and_hides_url_and_headers(
    http_server: LoopbackHTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = {
        "driver": "webhook",
        "url": f"{http_server.url}/hooks/team-7f3k9q",
        "headers": {"X-Signature": "sig-5151-secret"},
    }
    output = execute(
        NotifyNode,
        config,
        outputs={"analyze": analysis()},
        source="grafana",
        environment="production",
        trace_id="trace-9",
    )
    (request,) = http_server.requests
    assert request.path == "/hooks/team-7f3k9q"
    assert request.headers["x-signature"] == "sig-5151-secret"
    assert request.headers["content-type"] == "application/json"
    body = request.json
    assert body.pop("time")
    assert body == {
        "title": "[CRITICAL] Pipeline run 1 (production, source grafana)",
        "severity": "critical",
        "message": "Disk /var on db-02 is 97% full.\n- Free space on db-02",
        "run_id": 1,
        "trace_id": "trace-9",
        "source": "grafana",
        "environment": "production",
    }
    assert output["succeeded"] == 1
    shown = json.dumps(output) + "\n".join(NotifyNode().render(output)) + caplog.text
    assert "team-7f3k9q" not in shown and "sig-5151-secret" not in shown


def test_notify_slack_posts_text_to_incoming_webhook(http_server: LoopbackHTTPServer) -> None:
    http_server.reply(200, "ok")
    config = {"driver": "slack", "webhook_url": f"{http_server.url}/services/T0/B0/xoxsecret"}
    output = execute(NotifyNode, config, outputs={"analyze": analysis("warning")})
    assert http_server.requests[0].path == "/services/T0/B0/xoxsecret"
    assert http_server.requests[0].json == {
        "text": "*[WARNING] Pipeline run 1 (development, source cli)*\n"
        "Disk /var on db-02 is 97% full.\n- Free space on db-02"
    }
    assert output["channels"] == [{"driver": "slack", "ok": True}]


def test_notify_email_sends_through_django_mail(mailoutbox: list) -> None:
    config = {"driver": "email", "to": ["oncall@example.com"], "password": "smtp-pass-77"}
    output = execute(
        NotifyNode,
        config,
        outputs={"ingest": execute(IngestNode, payload=sample_payload("alertmanager"))},
    )
    (mail,) = mailoutbox
    assert mail.to == ["oncall@example.com"]
    assert mail.subject == "[WARNING] Pipeline run 1 (development, source cli)"
    assert mail.body.startswith("DiskSpaceLow [warning, firing] on db-02: Disk /var/lib/postgresql")
    assert "DiskSpaceLow [warning, resolved] on db-03" in mail.body
    assert "smtp-pass-77" not in json.dumps(output) + "\n".join(NotifyNode().render(output))


def test_notify_one_failed_channel_is_recorded_without_secrets(
    http_server: LoopbackHTTPServer, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    http_server.reply(500, "upstream broke at /hook/tok-aa11bb22")
    config = {
        "drivers": [
            {"driver": "webhook", "url": f"{http_server.url}/hook/tok-aa11bb22"},
            {"driver": "console"},
        ]
    }
    with caplog.at_level(logging.WARNING):
        output = execute(NotifyNode, config, outputs={"analyze": analysis()})
    assert output["driver"] == "multiple"
    assert (output["attempted"], output["succeeded"]) == (2, 1)
    assert output["channels"][0]["ok"] is False
    assert output["channels"][0]["error"].startswith("HTTP 500: upstream broke at ")
    lines = NotifyNode().render(output)
    assert lines[:3] == ["Driver: multiple", "Channels attempted: 2", "Succeeded: 1"]
    assert lines[3].startswith("Failed: webhook: HTTP 500")
    assert "Notification via webhook failed" in caplog.text
    shown = json.dumps(output) + "\n".join(lines) + caplog.text + capsys.readouterr().out
    assert "tok-aa11bb22" not in shown


def test_notify_every_channel_failing_is_a_node_error(http_server: LoopbackHTTPServer) -> None:
    http_server.reply(404, "no_service")
    config = {
        "drivers": [
            {"driver": "slack", "webhook_url": f"{http_server.url}/services/T1/B1/zz9secret"},
            {
                "driver": "webhook",
                "url": "http://127.0.0.1:9/closed-port-secret",
                "timeout_seconds": 2,
            },
        ]
    }
    with pytest.raises(NodeError) as raised:
        execute(NotifyNode, config, outputs={"analyze": analysis()})
    message = str(raised.value)
    assert message.startswith("Every notification channel failed: slack: HTTP 404: no_service; ")
    assert "webhook: could not connect" in message
    assert "zz9secret" not in message and "closed-port-secret" not in message


def test_notify_message_falls_back_to_redacted_payload(capsys: pytest.CaptureFixture) -> None:
    output = execute(NotifyNode, {}, payload={"event": "deploy", "api_key": "k-123456"})
    assert output["message"] == 'Payload: {"api_key": "***redacted***", "event": "deploy"}'
    assert "k-123456" not in capsys.readouterr().out


def test_notify_config_check_reports_driver_problems() -> None:
    assert NotifyNode.check_config({}) == []
    assert NotifyNode.check_config({"driver": "pager"}) == [
        "driver must be one of: console, email, file, slack, webhook"
    ]
    assert NotifyNode.check_config({"driver": "webhook"}) == [
        "webhook driver needs url, an http:// or https:// URL"
    ]
    assert NotifyNode.check_config(
        {"driver": "console", "drivers": ["console", {"driver": "email", "to": "nobody"}, "fax"]}
    ) == [
        "give either driver or drivers, not both",
        "drivers[1]: email driver needs to, a list of email addresses",
        "drivers[2]: driver must be one of: console, email, file, slack, webhook",
    ]
    assert NotifyNode.check_config({"drivers": []}) == [
        "drivers must be a non-empty list of channel configs"
    ]


def test_notify_secret_keys_cover_urls_and_passwords() -> None:
    assert {"url", "webhook_url", "password"} <= NotifyNode.secret_keys
    assert "api_key" in IntelligenceNode.secret_keys


# built-in definition, samples


def test_sample_payload_unknown_source_gets_a_private_generic_copy() -> None:
    payload = sample_payload("datadog")
    assert payload == sample_payload("generic")
    payload["name"] = "changed"
    assert sample_payload("generic")["name"] == "CheckoutLatencyHigh"


def test_builtin_definition_chains_the_four_node_types() -> None:
    nodes = BUILTIN_DEFINITION["nodes"]
    assert BUILTIN_DEFINITION["name"] == "alert-pipeline"
    assert [(n["id"], n["type"], n.get("next")) for n in nodes] == [
        ("ingest", "ingest", "context"),
        ("context", "context", "analyze"),
        ("analyze", "intelligence", "notify"),
        ("notify", "notify", None),
    ]
    assert nodes[2]["config"]["provider"] == "local"
    assert nodes[3]["config"]["driver"] == "console"
    assert builtin_definition() == BUILTIN_DEFINITION
    assert builtin_definition() is not BUILTIN_DEFINITION


def test_health_check_sample_is_the_design_example() -> None:
    definition = json.loads((SAMPLES_DIR / "health-check.json").read_text())
    assert definition == {
        "name": "health-check",
        "description": "Check the host and tell the on-call channel",
        "defaults": {"retries": 0, "timeout_seconds": 300},
        "nodes": [
            {
                "id": "metrics",
                "type": "context",
                "config": {"include": ["cpu", "memory", "disk"]},
                "next": "analyze",
            },
            {
                "id": "analyze",
                "type": "intelligence",
                "config": {"provider": "local"},
                "next": "notify",
            },
            {"id": "notify", "type": "notify", "config": {"driver": "console"}},
        ],
    }


@pytest.mark.parametrize("name", ["health-check", "alert-triage", "incident-triage"])
def test_sample_and_builtin_node_configs_pass_their_checks(name: str) -> None:
    definition = json.loads((SAMPLES_DIR / f"{name}.json").read_text())
    for node in [*definition["nodes"], *BUILTIN_DEFINITION["nodes"]]:
        handler = get(node["type"])
        assert handler is not None, node["type"]
        assert handler.check_config(node.get("config", {})) == [], node["id"]


def test_alert_triage_sample_runs_end_to_end_into_a_jsonl_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    definition = json.loads((SAMPLES_DIR / "alert-triage.json").read_text())
    types = [n["type"] for n in definition["nodes"]]
    assert types == ["ingest", "context", "intelligence", "notify"]
    outputs: dict[str, Any] = {}
    for node in definition["nodes"]:
        handler = get(node["type"])
        assert handler is not None
        outputs[node["id"]] = execute(
            handler, node["config"], sample_payload("alertmanager"), dict(outputs)
        )
    (line,) = (tmp_path / "notifications.jsonl").read_text().splitlines()
    assert json.loads(line)["message"] == (
        outputs["triage"]["summary"]
        + "".join(f"\n- {r}" for r in outputs["triage"]["recommendations"])
    )
