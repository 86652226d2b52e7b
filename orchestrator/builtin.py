"""The built-in alert pipeline (used when no definition is given) and sample webhook payloads."""

from __future__ import annotations

import copy
from typing import Any

#: The pipeline run when the CLI gets neither a stored definition nor a definition file.
BUILTIN_DEFINITION: dict[str, Any] = {
    "name": "alert-pipeline",
    "description": "Normalise an alert, add host context, analyse it locally, print a notification",
    "defaults": {"retries": 0, "timeout_seconds": 300},
    "nodes": [
        {"id": "ingest", "type": "ingest", "config": {"format": "auto"}, "next": "context"},
        {"id": "context", "type": "context", "config": {}, "next": "analyze"},
        {
            "id": "analyze",
            "type": "intelligence",
            "config": {"provider": "local"},
            "next": "notify",
        },
        {"id": "notify", "type": "notify", "config": {"driver": "console"}},
    ],
}

#: Sample payloads, one per webhook format, shaped as the real senders send them.
SAMPLE_PAYLOADS: dict[str, dict[str, Any]] = {
    # Grafana unified alerting contact point, webhook integration.
    "grafana": {
        "receiver": "orchestrator",
        "status": "firing",
        "orgId": 1,
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "HighCPUUsage",
                    "grafana_folder": "Infrastructure",
                    "instance": "web-01:9100",
                    "severity": "critical",
                },
                "annotations": {
                    "summary": "CPU usage on web-01 has been above 95% for 10 minutes",
                    "description": "node_cpu_seconds_total rate over 5m is 0.97",
                },
                "startsAt": "2024-05-14T09:21:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://grafana.example.com/alerting/grafana/cpu-high/view",
                "fingerprint": "a1b2c3d4e5f60718",
                "silenceURL": "http://grafana.example.com/alerting/silence/new",
                "dashboardURL": "http://grafana.example.com/d/node-exporter",
                "panelURL": "http://grafana.example.com/d/node-exporter?viewPanel=3",
                "values": {"B": 0.97, "C": 1},
                "valueString": "[ var='B' labels={instance=web-01:9100} value=0.97 ]",
            }
        ],
        "groupLabels": {"alertname": "HighCPUUsage"},
        "commonLabels": {"alertname": "HighCPUUsage", "severity": "critical"},
        "commonAnnotations": {},
        "externalURL": "http://grafana.example.com/",
        "version": "1",
        "groupKey": '{}:{alertname="HighCPUUsage"}',
        "truncatedAlerts": 0,
        "title": "[FIRING:1] HighCPUUsage Infrastructure (web-01:9100 critical)",
        "state": "alerting",
        "message": "**Firing**\n\nValue: B=0.97\nLabels:\n - alertname = HighCPUUsage\n",
    },
    # Prometheus Alertmanager webhook_config, payload version 4.
    "alertmanager": {
        "version": "4",
        "groupKey": '{}/{severity="warning"}:{alertname="DiskSpaceLow"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "orchestrator-webhook",
        "groupLabels": {"alertname": "DiskSpaceLow"},
        "commonLabels": {"alertname": "DiskSpaceLow", "job": "node", "severity": "warning"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example.com:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "DiskSpaceLow",
                    "device": "/dev/sda1",
                    "instance": "db-02:9100",
                    "job": "node",
                    "mountpoint": "/var/lib/postgresql",
                    "severity": "warning",
                },
                "annotations": {
                    "summary": "Disk /var/lib/postgresql on db-02 is 91% full",
                    "description": "Less than 9% of the filesystem is free.",
                },
                "startsAt": "2024-05-14T08:02:30.123Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example.com:9090/graph?g0.expr=disk_free",
                "fingerprint": "5c1e7e3b9d2f4a60",
            },
            {
                "status": "resolved",
                "labels": {
                    "alertname": "DiskSpaceLow",
                    "device": "/dev/sdb1",
                    "instance": "db-03:9100",
                    "job": "node",
                    "mountpoint": "/var/log",
                    "severity": "warning",
                },
                "annotations": {"summary": "Disk /var/log on db-03 is 90% full"},
                "startsAt": "2024-05-14T07:40:00Z",
                "endsAt": "2024-05-14T08:10:00Z",
                "generatorURL": "http://prometheus.example.com:9090/graph?g0.expr=disk_free",
                "fingerprint": "8d7a6b5c4e3f2a10",
            },
        ],
    },
    # Anything that can send a JSON object: cron jobs, scripts, uptime checkers.
    "generic": {
        "name": "CheckoutLatencyHigh",
        "severity": "warning",
        "message": "p95 latency of /api/checkout is 2.4s (threshold 1s) for 15 minutes",
        "host": "api-03",
        "service": "checkout",
        "status": "firing",
        "timestamp": "2024-05-14T09:30:00Z",
    },
}


def builtin_definition() -> dict[str, Any]:
    """A copy of :data:`BUILTIN_DEFINITION`, safe to change."""
    return copy.deepcopy(BUILTIN_DEFINITION)


def sample_payload(source: str) -> dict[str, Any]:
    """A copy of the sample webhook payload for ``source``; unknown sources get the generic one."""
    return copy.deepcopy(SAMPLE_PAYLOADS.get(source.lower(), SAMPLE_PAYLOADS["generic"]))
