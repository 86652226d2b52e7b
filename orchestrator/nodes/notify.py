"""``notify``: tell people what the run found, through one or more channels.

Drivers: ``console`` (stdout), ``file`` (one JSON line per notification), ``webhook`` (POST JSON),
``slack`` (incoming webhook) and ``email`` (Django's mail settings). Config has either one
``driver`` with its keys at the top level, or ``drivers``: a list of such channel configs. A failed
channel is recorded with its error; the node fails only when every channel failed. URLs, header
values and passwords never appear in the output, the display or the logs.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.core.mail import get_connection, send_mail

from orchestrator import __version__
from orchestrator.errors import NodeError
from orchestrator.nodes.base import NodeContext, NodeHandler
from orchestrator.nodes.context import describe_check
from orchestrator.nodes.registry import register
from orchestrator.redaction import REDACTED, redact, redact_text

DRIVERS = ("console", "email", "file", "slack", "webhook")
DEFAULT_FILE_PATH = "notifications.jsonl"
DEFAULT_TIMEOUT_SECONDS = 10
#: Longest payload excerpt put in a message when there is nothing better to say.
MAX_PAYLOAD_CHARS = 2000
#: Keys of an email channel that override Django's EMAIL_* settings for that channel.
EMAIL_OVERRIDES = ("host", "port", "username", "password", "use_tls", "use_ssl")
SEVERITY_ORDER = ("critical", "warning", "info")
USER_AGENT = f"pipeline-orchestrator/{__version__}"

Notification = dict[str, Any]


def channel_configs(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One config per channel: the ``drivers`` entries, else the top-level config itself."""
    if "drivers" in config:
        entries = config["drivers"] if isinstance(config["drivers"], list) else []
        return [{"driver": e} if isinstance(e, str) else dict(e) for e in entries]
    return [{**config, "driver": config.get("driver", "console")}]


def _is_http_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


def channel_problems(channel: Any) -> list[str]:
    """Problems with one channel's config, as sentences."""
    if not isinstance(channel, Mapping):
        return ["each drivers entry must be a driver name or an object with a driver"]
    driver = channel.get("driver", "console")
    if driver not in DRIVERS:
        return [f"driver must be one of: {', '.join(DRIVERS)}"]
    problems = []
    if driver == "webhook":
        if not _is_http_url(channel.get("url")):
            problems.append("webhook driver needs url, an http:// or https:// URL")
        headers = channel.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            problems.append("headers must be an object of header name to string value")
    elif driver == "slack" and not _is_http_url(channel.get("webhook_url")):
        problems.append("slack driver needs webhook_url, the incoming-webhook https:// URL")
    elif driver == "email":
        to = channel.get("to")
        recipients = [to] if isinstance(to, str) else to
        if (
            not isinstance(recipients, list)
            or not recipients
            or not all(isinstance(r, str) and "@" in r for r in recipients)
        ):
            problems.append("email driver needs to, a list of email addresses")
    elif driver == "file":
        path = channel.get("path", DEFAULT_FILE_PATH)
        if not isinstance(path, str) or not path:
            problems.append("file driver path must be a non-empty path")
    elif driver == "console" and not isinstance(channel.get("quiet", False), bool):
        problems.append("quiet must be true or false")
    timeout = channel.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        problems.append("timeout_seconds must be a positive number")
    return problems


def compose(outputs: Mapping[str, Any], payload: Mapping[str, Any], run_id: int) -> tuple[str, str]:
    """The severity and text of a notification: the intelligence summary when there is one, else
    the alerts, else the failed host checks, else the payload."""
    dicts = [o for o in outputs.values() if isinstance(o, Mapping)]
    for output in reversed(dicts):
        if isinstance(output.get("summary"), str) and "provider" in output:
            lines = [output["summary"], *(f"- {r}" for r in output.get("recommendations", []))]
            return str(output.get("severity") or "info"), "\n".join(lines)
    alerts = [a for o in dicts if isinstance(o.get("alerts"), list) for a in o["alerts"]]
    if alerts:
        levels = {a.get("severity") for a in alerts if a.get("status") != "resolved"}
        severity = next((s for s in SEVERITY_ORDER if s in levels), "info")
        lines = [
            f"{a.get('name')} [{a.get('severity')}, {a.get('status')}]"
            + (f" on {a['host']}" if a.get("host") else "")
            + (f": {a['summary']}" if a.get("summary") else "")
            for a in alerts
        ]
        return severity, "\n".join(lines)
    checks = [c for o in dicts if isinstance(o.get("checks"), list) for c in o["checks"]]
    if checks:
        failed = [c for c in checks if not c.get("passed")]
        if not failed:
            return "info", f"All {len(checks)} host checks passed."
        lines = [f"{len(failed)} of {len(checks)} host checks failed:"]
        lines.extend(f"- {describe_check(c)}" for c in failed)
        return "warning", "\n".join(lines)
    if payload:
        text = json.dumps(redact(payload), sort_keys=True, default=str)
        if len(text) > MAX_PAYLOAD_CHARS:
            text = text[:MAX_PAYLOAD_CHARS] + "..."
        return "info", f"Payload: {text}"
    return "info", f"Run {run_id} has nothing to report."


def build_notification(ctx: NodeContext) -> Notification:
    """What every channel sends: title, severity, message and where the run came from. On the
    on_failure path, the message is the failure itself."""
    if ctx.failure:
        severity = "critical"
        text = f"Pipeline run {ctx.run_id} failed: node '{ctx.failure['node']}' failed: " + str(
            ctx.failure.get("error") or "no error recorded"
        )
    else:
        severity, text = compose(ctx.outputs, ctx.payload or {}, ctx.run_id)
    title = ctx.config.get("title") or (
        f"[{severity.upper()}] Pipeline run {ctx.run_id} ({ctx.environment}, source {ctx.source})"
    )
    return {
        "title": redact_text(str(title)),
        "severity": severity,
        "message": redact_text(text),
        "run_id": ctx.run_id,
        "trace_id": ctx.trace_id,
        "source": ctx.source,
        "environment": ctx.environment,
    }


def post_json(url: str, body: Any, headers: Mapping[str, str], timeout: float) -> str:
    """POST ``body`` as JSON and return the reply's text; failures become a NodeError."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read(4096).decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        detail = e.read(300).decode("utf-8", "replace").strip()
        raise NodeError(f"HTTP {e.code}" + (f": {detail}" if detail else "")) from e
    except urllib.error.URLError as e:
        raise NodeError(f"could not connect: {e.reason}") from e
    except TimeoutError as e:
        raise NodeError(f"no answer within {timeout:g}s") from e
    except ValueError as e:  # urllib's message would quote the URL
        raise NodeError("the URL is not valid") from e


def _timestamped(note: Notification) -> Notification:
    return {**note, "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def send_console(channel: Mapping[str, Any], note: Notification) -> None:
    if not channel.get("quiet"):
        sys.stdout.write(f"{note['title']}\n{note['message']}\n")
        sys.stdout.flush()


def send_file(channel: Mapping[str, Any], note: Notification) -> None:
    path = Path(channel.get("path") or DEFAULT_FILE_PATH).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as stream:
        stream.write(json.dumps(_timestamped(note), sort_keys=True) + "\n")


def send_webhook(channel: Mapping[str, Any], note: Notification) -> None:
    timeout = float(channel.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS))
    post_json(str(channel["url"]), _timestamped(note), channel.get("headers") or {}, timeout)


def send_slack(channel: Mapping[str, Any], note: Notification) -> None:
    timeout = float(channel.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS))
    text = f"*{note['title']}*\n{note['message']}"
    reply = post_json(str(channel["webhook_url"]), {"text": text}, {}, timeout)
    if reply.strip() != "ok":
        raise NodeError(f"Slack did not accept the message: {reply.strip()[:200] or 'empty reply'}")


def send_email(channel: Mapping[str, Any], note: Notification) -> None:
    to = channel.get("to")
    recipients = [to] if isinstance(to, str) else list(to or [])
    overrides = {key: channel[key] for key in EMAIL_OVERRIDES if key in channel}
    connection = get_connection(fail_silently=False, **overrides)
    subject = str(channel.get("subject") or note["title"])
    sent = send_mail(
        subject, note["message"], channel.get("from_email"), recipients, connection=connection
    )
    if not sent:
        raise NodeError("the mail backend sent no message")


SENDERS: dict[str, Callable[[Mapping[str, Any], Notification], None]] = {
    "console": send_console,
    "email": send_email,
    "file": send_file,
    "slack": send_slack,
    "webhook": send_webhook,
}


def scrub(text: str, channel: Mapping[str, Any]) -> str:
    """``text`` without the channel's URLs, header values, password or secret-looking strings."""
    secrets = [channel.get(k) for k in ("url", "webhook_url", "password", "username")]
    secrets += list((channel.get("headers") or {}).values())
    for url in (channel.get("url"), channel.get("webhook_url")):
        if isinstance(url, str):  # a server may echo the path or query, which carry the token
            parts = urlsplit(url)
            secrets += [parts.path if len(parts.path) > 1 else "", parts.query]
    for secret in sorted((s for s in secrets if isinstance(s, str) and s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return redact_text(text)


@register
class NotifyNode(NodeHandler):
    type_name = "notify"
    summary = (
        "Send the run's findings through `driver` (console, email, file, slack, webhook) or a "
        "`drivers` list; fails only when every channel fails."
    )
    secret_keys = frozenset({"url", "webhook_url", "password", "headers"})

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> list[str]:
        problems = []
        if "title" in config and not isinstance(config["title"], str):
            problems.append("title must be a string")
        if "drivers" in config:
            if "driver" in config:
                problems.append("give either driver or drivers, not both")
            entries = config["drivers"]
            if not isinstance(entries, list) or not entries:
                return [*problems, "drivers must be a non-empty list of channel configs"]
            for index, entry in enumerate(entries):
                channel = {"driver": entry} if isinstance(entry, str) else entry
                problems.extend(f"drivers[{index}]: {p}" for p in channel_problems(channel))
            return problems
        return [*problems, *channel_problems(channel_configs(config)[0])]

    def execute(self, ctx: NodeContext) -> dict[str, Any]:
        note = build_notification(ctx)
        channels = channel_configs(ctx.config)
        if not channels:
            raise NodeError("No notification channel configured")
        results = []
        for channel in channels:
            ctx.raise_if_cancelled()
            driver = str(channel.get("driver", "console"))
            sender = SENDERS.get(driver)
            try:
                if sender is None:
                    raise NodeError(f"unknown driver: use one of {', '.join(DRIVERS)}")
                sender(channel, note)
            except (NodeError, OSError, ValueError) as e:
                error = scrub(str(e) or type(e).__name__, channel)
                ctx.logger.warning("Notification via %s failed: %s", driver, error)
                results.append({"driver": driver, "ok": False, "error": error})
            else:
                results.append({"driver": driver, "ok": True})
        succeeded = sum(1 for r in results if r["ok"])
        if not succeeded:
            failures = "; ".join(f"{r['driver']}: {r['error']}" for r in results)
            raise NodeError(f"Every notification channel failed: {failures}")
        return {
            "driver": results[0]["driver"] if len(results) == 1 else "multiple",
            "channels": results,
            "attempted": len(results),
            "succeeded": succeeded,
            "message": note["message"],
            "title": note["title"],
            "severity": note["severity"],
        }

    def render(self, output: dict[str, Any]) -> list[str]:
        lines = [
            f"Driver: {output.get('driver', '?')}",
            f"Channels attempted: {output.get('attempted', 0)}",
            f"Succeeded: {output.get('succeeded', 0)}",
        ]
        failed = [c for c in output.get("channels", []) if not c.get("ok")]
        return lines + [f"Failed: {c.get('driver')}: {c.get('error')}" for c in failed]
