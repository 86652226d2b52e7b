"""The raw Celery baseline: a tiny app on the same broker with the worker settings of
``workers.celery`` (JSON only, late acks, prefetch 1, results ignored), and no orchestrator.

Start its worker with ``python -m celery -A bench.noop worker -Q <queue>``; the broker comes from
``CELERY_BROKER_URL``.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from celery import Celery

#: The settings that shape a node task's life in ``workers.celery``, copied here so that the
#: baseline pays exactly what Celery itself costs; :func:`differences` checks they still match.
SETTINGS: dict[str, Any] = {
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "task_ignore_result": True,
    "broker_connection_retry_on_startup": True,
    "broker_connection_timeout": 3,
    "broker_transport_options": {
        "visibility_timeout": 7260,
        "socket_connect_timeout": 3,
        "socket_timeout": 10,
    },
    "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
    "worker_hijack_root_logger": False,
    "worker_send_task_events": False,
}

app = Celery("bench", set_as_current=False)
app.conf.update(
    SETTINGS,
    broker_url=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
    task_default_queue="bench",
)


@cache
def _redis() -> Any:
    import redis

    return redis.Redis.from_url(app.conf.broker_url)


@app.task(name="bench.noop")
def noop() -> None:
    """Do nothing."""
    return None


@app.task(name="bench.done")
def done(key: str) -> None:
    """Count one finished task (or chain) under ``key`` in Redis: the cheap completion signal."""
    _redis().incr(key)


def differences(other: Celery) -> dict[str, tuple[Any, Any]]:
    """Settings in which ``other`` (the orchestrator's app) differs from the baseline's."""
    found = {}
    for name in SETTINGS:
        ours, theirs = app.conf[name], other.conf[name]
        if name == "broker_transport_options":
            # The visibility timeout follows the node time limit; only its presence matters.
            ours = {k: v for k, v in ours.items() if k != "visibility_timeout"}
            theirs = {k: v for k, v in theirs.items() if k != "visibility_timeout"}
        if ours != theirs:
            found[name] = (ours, theirs)
    return found
