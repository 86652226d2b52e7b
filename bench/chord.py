"""The raw Celery baseline for a fan-out and a join: a ``chord`` of no-op tasks and a callback.

A chord needs a result backend (Celery counts the header's results there before it sends the
callback), so this app stores results in the same Redis as the broker; otherwise it applies the
worker settings of ``workers.celery`` (JSON only, late acks, prefetch 1), like :mod:`bench.noop`.
Start its worker with ``python -m celery -A bench.chord worker -Q bench-chord``.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from celery import Celery

from workers.defaults import MESSAGE_SETTINGS, TRANSPORT_OPTIONS

QUEUE = "bench-chord"
_broker = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")

app = Celery("bench-chord", set_as_current=False)
app.conf.update(
    MESSAGE_SETTINGS,
    broker_transport_options={"visibility_timeout": 7260, **TRANSPORT_OPTIONS},
    broker_url=_broker,
    result_backend=_broker,
    result_expires=600,
    task_default_queue=QUEUE,
)


@cache
def _redis() -> Any:
    import redis

    return redis.Redis.from_url(app.conf.broker_url)


@app.task(name="bench.chord.noop", ignore_result=False)
def noop() -> None:
    """Do nothing; the result (None) is stored, as a chord's header must."""
    return None


@app.task(name="bench.chord.joined")
def joined(results: list[Any], key: str) -> None:
    """The chord's callback: mark the join done under ``key`` in Redis."""
    _redis().incr(key)
