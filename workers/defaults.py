"""Celery settings that shape a node task's life, as plain constants.

``workers.celery`` applies them to the orchestrator's app; the benchmark's raw Celery baseline
applies the same ones, so the two pay the same for what Celery itself does.
"""

from __future__ import annotations

from typing import Any

#: JSON only, late acks, re-queued on a lost worker, one message prefetched at a time, results
#: ignored (the database holds them), and publishing that fails fast when the broker is down.
MESSAGE_SETTINGS: dict[str, Any] = {
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "task_ignore_result": True,
    "broker_connection_retry_on_startup": True,
    "broker_connection_timeout": 3,
    "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
    "worker_hijack_root_logger": False,
    "worker_send_task_events": False,
}

#: Redis transport options besides the visibility timeout, which follows the node time limit.
TRANSPORT_OPTIONS: dict[str, Any] = {"socket_connect_timeout": 3, "socket_timeout": 10}

#: RabbitMQ's consumer argument for how long a delivery may stay unacknowledged, in ms.
CONSUMER_TIMEOUT = "x-consumer-timeout"
