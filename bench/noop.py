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

from workers.defaults import MESSAGE_SETTINGS, TRANSPORT_OPTIONS

app = Celery("bench", set_as_current=False)
app.conf.update(
    MESSAGE_SETTINGS,
    broker_transport_options={"visibility_timeout": 7260, **TRANSPORT_OPTIONS},
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
