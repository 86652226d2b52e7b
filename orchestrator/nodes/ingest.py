"""``ingest``: normalise an alert webhook (Grafana, Alertmanager or any JSON object) into one shape.

Every format becomes ``{"source", "alerts": [{"name", "status", "severity", "summary", "labels",
"starts_at", "host"}], "count"}`` so that later nodes never care where an alert came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.errors import NodeError
from orchestrator.nodes.base import NodeContext, NodeHandler
from orchestrator.nodes.registry import register

FORMATS = ("grafana", "alertmanager", "generic")

#: Severity spellings seen in the wild, mapped onto the three levels later nodes reason about.
SEVERITY_ALIASES = {
    "critical": "critical",
    "crit": "critical",
    "fatal": "critical",
    "emergency": "critical",
    "page": "critical",
    "high": "critical",
    "error": "critical",
    "p1": "critical",
    "sev1": "critical",
    "warning": "warning",
    "warn": "warning",
    "medium": "warning",
    "major": "warning",
    "minor": "warning",
    "p2": "warning",
    "p3": "warning",
    "sev2": "warning",
    "sev3": "warning",
    "info": "info",
    "informational": "info",
    "low": "info",
    "none": "info",
    "ok": "info",
    "notice": "info",
    "p4": "info",
    "p5": "info",
}
#: Grafana legacy ``state`` values and generic ``status`` values, as firing/resolved.
STATUS_ALIASES = {
    "alerting": "firing",
    "firing": "firing",
    "problem": "firing",
    "triggered": "firing",
    "open": "firing",
    "ok": "resolved",
    "resolved": "resolved",
    "normal": "resolved",
    "closed": "resolved",
    "no_data": "no_data",
    "nodata": "no_data",
    "pending": "pending",
    "paused": "paused",
}
#: Alertmanager's zero time, meaning "not set".
ZERO_TIME = "0001-01-01T00:00:00Z"
#: Keys that only Grafana's unified alerting webhook puts on an alert or the envelope.
GRAFANA_ALERT_KEYS = ("dashboardURL", "panelURL", "silenceURL", "valueString", "values")


def detect_format(payload: Mapping[str, Any], source: str = "") -> str:
    """The webhook format of ``payload``; when its shape is ambiguous, ``source`` decides."""
    if "ruleName" in payload or "evalMatches" in payload:
        return "grafana"
    alerts = payload.get("alerts")
    if isinstance(alerts, list):
        if "orgId" in payload or any(
            isinstance(a, Mapping) and any(k in a for k in GRAFANA_ALERT_KEYS) for a in alerts
        ):
            return "grafana"
        if payload.get("version") == "4" or "groupKey" in payload or "receiver" in payload:
            return "alertmanager"
        if source.lower() in FORMATS:
            return source.lower()
        return "alertmanager"
    return "generic"


def normalise_severity(value: Any, status: str = "firing") -> str:
    """``value`` as critical, warning or info; unknown or missing means warning while firing."""
    severity = SEVERITY_ALIASES.get(str(value or "").strip().lower())
    if severity:
        return severity
    return "warning" if status == "firing" else "info"


def normalise_status(value: Any, default: str = "firing") -> str:
    text = str(value or "").strip().lower()
    return STATUS_ALIASES.get(text, text or default)


def host_from(labels: Mapping[str, Any], fallback: Any = None) -> str | None:
    """The host an alert is about: a host label, else ``fallback``; ``host:port`` loses the port."""
    for key in ("host", "hostname", "nodename", "node", "server", "instance"):
        if labels.get(key):
            value = str(labels[key])
            break
    else:
        if not fallback:
            return None
        value = str(fallback)
    head, sep, port = value.rpartition(":")
    if sep and port.isdigit() and (":" not in head or head.endswith("]")):
        return head.strip("[]")
    return value


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _first(mapping: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if mapping.get(key) not in (None, ""):
            return mapping[key]
    return None


def _alert(
    name: Any,
    status: str,
    severity: Any,
    summary: Any,
    labels: dict[str, str],
    starts_at: Any,
    host: str | None,
) -> dict[str, Any]:
    starts = str(starts_at) if starts_at not in (None, "", ZERO_TIME) else None
    return {
        "name": str(name or "unnamed alert"),
        "status": status,
        "severity": normalise_severity(severity, status),
        "summary": str(summary or ""),
        "labels": labels,
        "starts_at": starts,
        "host": host,
    }


def alerts_from_alertmanager(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Alerts of an Alertmanager (or Grafana unified alerting) webhook's ``alerts`` list."""
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise NodeError("Payload has no 'alerts' list: not an Alertmanager or Grafana webhook")
    envelope_status = normalise_status(payload.get("status"))
    common = _string_map(payload.get("commonLabels"))
    result = []
    for item in alerts:
        if not isinstance(item, Mapping):
            continue
        labels = {**common, **_string_map(item.get("labels"))}
        annotations = _string_map(item.get("annotations"))
        status = normalise_status(item.get("status"), envelope_status)
        result.append(
            _alert(
                name=labels.get("alertname") or _first(item, "name", "title", "alert"),
                status=status,
                severity=labels.get("severity") or _first(item, "severity", "priority"),
                summary=_first(annotations, "summary", "description", "message")
                or _first(item, "summary", "message", "valueString"),
                labels=labels,
                starts_at=_first(item, "startsAt", "starts_at"),
                host=host_from(labels, _first(item, "host", "server")),
            )
        )
    return result


def alerts_from_grafana(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Alerts of a Grafana webhook: unified alerting (``alerts``) or legacy (``ruleName``)."""
    if isinstance(payload.get("alerts"), list):
        return alerts_from_alertmanager(payload)
    if "ruleName" not in payload and "evalMatches" not in payload:
        raise NodeError("Payload is not a Grafana webhook: expected 'alerts' or 'ruleName'")
    matches = [m for m in payload.get("evalMatches") or [] if isinstance(m, Mapping)]
    labels = _string_map(payload.get("tags"))
    if matches:
        labels = {**_string_map(matches[0].get("tags")), **labels}
    status = normalise_status(payload.get("state"))
    summary = payload.get("message") or payload.get("title")
    if matches and "value" in matches[0]:
        metric = matches[0].get("metric", "value")
        summary = f"{summary or ''} ({metric}={matches[0]['value']})".strip()
    return [
        _alert(
            name=payload.get("ruleName") or payload.get("title"),
            status=status,
            severity=labels.get("severity"),
            summary=summary,
            labels=labels,
            starts_at=None,
            host=host_from(labels),
        )
    ]


def alerts_from_generic(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One alert from any JSON object with a name, severity and message; none from an empty one."""
    if not payload:
        return []
    labels = _string_map(payload.get("labels") or payload.get("tags"))
    status = normalise_status(_first(payload, "status", "state"))
    return [
        _alert(
            name=_first(payload, "name", "title", "alert", "alertname", "event"),
            status=status,
            severity=_first(payload, "severity", "level", "priority"),
            summary=_first(payload, "message", "summary", "description", "text"),
            labels=labels,
            starts_at=_first(payload, "starts_at", "startsAt", "timestamp", "time"),
            host=host_from(labels, _first(payload, "host", "server", "hostname", "instance")),
        )
    ]


PARSERS = {
    "grafana": alerts_from_grafana,
    "alertmanager": alerts_from_alertmanager,
    "generic": alerts_from_generic,
}


@register
class IngestNode(NodeHandler):
    type_name = "ingest"
    summary = (
        "Normalise the run's alert webhook payload (grafana, alertmanager, generic) into a list of "
        "alerts; `format` is auto (default) or one of those names."
    )

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> list[str]:
        fmt = config.get("format", "auto")
        if fmt != "auto" and fmt not in FORMATS:
            return [f"format must be one of: auto, {', '.join(FORMATS)}"]
        return []

    def execute(self, ctx: NodeContext) -> dict[str, Any]:
        payload = ctx.payload or {}
        if not isinstance(payload, Mapping):
            raise NodeError("Payload must be a JSON object to ingest alerts")
        fmt = ctx.config.get("format", "auto")
        if fmt == "auto":
            fmt = detect_format(payload, ctx.source or "")
        alerts = PARSERS[fmt](payload)
        ctx.logger.info("Ingested %d %s alert(s)", len(alerts), fmt)
        return {"source": fmt, "alerts": alerts, "count": len(alerts)}

    def render(self, output: dict[str, Any]) -> list[str]:
        lines = [f"Source: {output.get('source', '?')}", f"Alerts: {output.get('count', 0)}"]
        alerts = output.get("alerts") or []
        if alerts:
            first = alerts[0]
            host = f" on {first['host']}" if first.get("host") else ""
            lines.append(
                f"First alert: {first.get('name')} ({first.get('severity')}, "
                f"{first.get('status')}){host}"
            )
        return lines
