"""``intelligence``: summarise what earlier nodes found, rate its severity and recommend next steps.

Provider ``local`` (default) is deterministic rules over the earlier outputs: alerts from an
``ingest`` output, failed checks from a ``context`` output. Provider ``openai`` asks any
OpenAI-compatible ``/chat/completions`` endpoint for the summary; severity and recommendations
still come from the local rules so that routing never depends on a model's phrasing.
"""

from __future__ import annotations

import json
import math
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from orchestrator.errors import NodeError
from orchestrator.limits import finite_number
from orchestrator.nodes.base import NodeContext, NodeHandler
from orchestrator.nodes.context import describe_check
from orchestrator.nodes.registry import register
from orchestrator.redaction import REDACTED, redact, redact_text

PROVIDERS = ("local", "openai")
SEVERITIES = ("critical", "warning", "info")
DEFAULT_OPENAI_BASE = "https://api.openai.com/v1"
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
DEFAULT_TIMEOUT_SECONDS = 30
#: A failed check at or above this value is critical rather than a warning (load: per core).
CRITICAL_LEVELS = {"cpu": 95.0, "memory": 95.0, "disk": 95.0, "load": 4.0}
MAX_RECOMMENDATIONS = 6
SYSTEM_PROMPT = (
    "You are the on-call assistant of an alert pipeline. You receive, as JSON, the run's alert "
    "payload and the outputs of the pipeline's earlier nodes. Reply in plain text with at most "
    "three sentences: what is wrong, how severe it is, and the first thing to check."
)
#: Keywords (matched in an alert's name and summary, or a check's metric) and the advice they get.
RECOMMENDATION_RULES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("disk", "filesystem", "volume", "inode", "storage"),
        "Free space on {host}: remove old logs and artifacts, or grow the volume",
    ),
    (
        ("memory", "oom", "swap"),
        "Find the processes holding memory on {host} (ps aux --sort=-rss | head) "
        "and look for leaks",
    ),
    (("cpu",), "Find the top CPU consumers on {host} (top -o %CPU) and check for runaway jobs"),
    (("load",), "Look for blocked I/O or too many runnable processes on {host} (uptime, vmstat 1)"),
    (
        ("latency", "slow", "duration", "timeout"),
        "Check upstream dependencies and recent deploys: {name} reports slowness",
    ),
    (
        ("error", "5xx", "500", "fail", "exception"),
        "Check recent deploys and the error logs for {name}",
    ),
    (
        ("down", "unreachable", "unavailable", "heartbeat", "probe"),
        "Check that {host} is reachable and its service is running",
    ),
    (("cert", "ssl", "tls"), "Renew the certificate behind {name} before it expires"),
)


def recommendation_for(name: str, text: str, host: str | None) -> str:
    """The advice for one alert or failed check, by the first rule whose keyword it mentions."""
    haystack = f"{name} {text}".lower()
    where = host or "the affected host"
    for keywords, advice in RECOMMENDATION_RULES:
        if any(k in haystack for k in keywords):
            return advice.format(host=where, name=name)
    return f"Investigate '{name}' on {where}"


def _check_severity(check: Mapping[str, Any]) -> str:
    level = CRITICAL_LEVELS.get(str(check.get("name")))
    value = check.get("value")
    if level is not None and isinstance(value, int | float) and value >= level:
        return "critical"
    return "warning"


def analyse(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Summary, severity and recommendations derived from earlier node outputs; deterministic."""
    alerts: list[Mapping[str, Any]] = []
    checks: list[Mapping[str, Any]] = []
    hosts: list[str] = []
    others: list[str] = []
    for node_id, output in outputs.items():
        if isinstance(output, Mapping) and isinstance(output.get("alerts"), list):
            alerts.extend(a for a in output["alerts"] if isinstance(a, Mapping))
        elif isinstance(output, Mapping) and isinstance(output.get("checks"), list):
            checks.extend(c for c in output["checks"] if isinstance(c, Mapping))
            if output.get("host") and str(output["host"]) not in hosts:
                hosts.append(str(output["host"]))  # parallel branches may check one host twice
        else:
            others.append(str(node_id))

    firing = [a for a in alerts if a.get("status") != "resolved"]
    resolved = [a for a in alerts if a.get("status") == "resolved"]
    failed = [c for c in checks if not c.get("passed")]
    check_host = ", ".join(hosts) or None

    levels = [str(a.get("severity")) for a in firing] + [_check_severity(c) for c in failed]
    severity = next((s for s in SEVERITIES if s in levels), "info")

    parts = []
    if firing:
        critical = sum(1 for a in firing if a.get("severity") == "critical")
        named = ", ".join(
            f"{a.get('name')}" + (f" on {a['host']}" if a.get("host") else "") for a in firing[:3]
        )
        more = f" and {len(firing) - 3} more" if len(firing) > 3 else ""
        counted = f" ({critical} critical)" if critical else ""
        plural = "s" if len(firing) != 1 else ""
        parts.append(f"{len(firing)} firing alert{plural}{counted}: {named}{more}")
    if resolved:
        parts.append(f"{len(resolved)} resolved")
    if checks:
        on_host = f" on {check_host}" if check_host else ""
        if failed:
            parts.append(
                f"{len(failed)} of {len(checks)} host checks failed{on_host}: "
                + ", ".join(describe_check(c) for c in failed)
            )
        else:
            parts.append(f"all {len(checks)} host checks passed{on_host}")
    if not parts:
        parts.append("nothing to report: no alerts or host checks in the earlier outputs")
    if others:
        parts.append(f"also considered: {', '.join(others)}")
    summary = "; ".join(parts)
    summary = summary[0].upper() + summary[1:] + "."

    recommendations = []
    if any(a.get("severity") == "critical" for a in firing):
        recommendations.append("Page the on-call engineer: critical alerts are firing")
    for alert in firing:
        recommendations.append(
            recommendation_for(
                str(alert.get("name")), str(alert.get("summary") or ""), alert.get("host")
            )
        )
    for check in failed:
        recommendations.append(recommendation_for(str(check.get("name")), "", check_host))
    if not recommendations:
        recommendations.append(
            "Confirm the resolved alerts stay resolved" if resolved else "No action needed"
        )
    unique = list(dict.fromkeys(recommendations))[:MAX_RECOMMENDATIONS]
    return {"summary": summary, "severity": severity, "recommendations": unique}


def _server_error_message(body: bytes) -> str:
    """The error message inside an OpenAI-style error body, else the body's start."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300] or "no response body"
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str):
        return error
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])
    return text[:300]


def chat_completion(
    base_url: str, api_key: str, body: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """POST ``body`` to ``{base_url}/chat/completions``; errors become NodeError, keyless."""
    url = base_url.rstrip("/") + "/chat/completions"
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"},
        method="POST",
    )
    where = redact_text(base_url)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as e:
        message = _server_error_message(e.read()).replace(api_key, REDACTED)
        raise NodeError(redact_text(f"OpenAI request failed: HTTP {e.code}: {message}")) from e
    except urllib.error.URLError as e:
        raise NodeError(f"Could not reach {where}: {e.reason}") from e
    except TimeoutError as e:
        raise NodeError(f"OpenAI request to {where} timed out after {timeout:g}s") from e
    try:
        return json.loads(raw)
    except ValueError as e:
        raise NodeError(f"OpenAI endpoint {where} did not answer with JSON") from e


def user_message(ctx: NodeContext) -> str:
    """The JSON the model is asked about: the run's origin, payload and outputs, redacted."""
    return json.dumps(
        {
            "source": ctx.source,
            "environment": ctx.environment,
            "payload": redact(ctx.payload),
            "outputs": redact(dict(ctx.outputs)),
        },
        sort_keys=True,
        default=str,
    )


@register
class IntelligenceNode(NodeHandler):
    type_name = "intelligence"
    summary = (
        "Summarise earlier outputs with a severity and recommendations: provider `local` "
        "(deterministic) or `openai` (OPENAI_API_KEY; `model`, `base_url`, `timeout_seconds`)."
    )
    secret_keys = frozenset({"api_key"})

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> list[str]:
        problems = []
        if config.get("provider", "local") not in PROVIDERS:
            problems.append(f"provider must be one of: {', '.join(PROVIDERS)}")
        for key in ("model", "api_key"):
            if key in config and (not isinstance(config[key], str) or not config[key]):
                problems.append(f"{key} must be a non-empty string")
        base_url = config.get("base_url")
        if base_url is not None and (
            not isinstance(base_url, str) or not base_url.startswith(("http://", "https://"))
        ):
            problems.append("base_url must be an http:// or https:// URL")
        timeout = config.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
        if not finite_number(timeout, low=0, high=math.inf) or timeout <= 0:
            problems.append("timeout_seconds must be a positive number")
        elif timeout > 3600:
            problems.append("timeout_seconds must be at most 3600")
        return problems

    def execute(self, ctx: NodeContext) -> dict[str, Any]:
        analysis = analyse(ctx.outputs)
        if ctx.config.get("provider", "local") == "local":
            return {"provider": "local", **analysis}
        return {"provider": "openai", **analysis, **self.ask_openai(ctx)}

    def ask_openai(self, ctx: NodeContext) -> dict[str, Any]:
        """The model's summary of the payload and earlier outputs, and the model that wrote it."""
        api_key = ctx.config.get("api_key") or os.environ.get("OPENAI_API_KEY", "")
        if not api_key:
            raise NodeError("OPENAI_API_KEY is not set: export it, or use provider 'local'")
        base_url = (
            ctx.config.get("base_url") or os.environ.get("OPENAI_BASE_URL") or DEFAULT_OPENAI_BASE
        )
        model = ctx.config.get("model") or DEFAULT_OPENAI_MODEL
        timeout = float(ctx.config.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS))
        body = {
            "model": model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": user_message(ctx)},
            ],
        }
        ctx.raise_if_cancelled()
        reply = chat_completion(base_url, api_key, body, timeout)
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            content = None
        if not isinstance(content, str) or not content.strip():
            raise NodeError("OpenAI response has no choices[0].message.content")
        return {"summary": content.strip(), "model": str(reply.get("model") or model)}

    def render(self, output: dict[str, Any]) -> list[str]:
        lines = [
            f"Summary: {output.get('summary', '')}",
            f"Provider: {output.get('provider', '?')}",
        ]
        if output.get("model"):
            lines.append(f"Model: {output['model']}")
        lines.append(f"Severity: {output.get('severity', 'info')}")
        lines.extend(f"Recommendation: {r}" for r in output.get("recommendations", []))
        return lines
