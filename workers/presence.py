"""Which workers listen on a queue, asked over the broker (for a CLI waiting on a queued run)."""

from __future__ import annotations


def listening_workers(queue: str, timeout: float = 1.0) -> list[str] | None:
    """Names of the workers consuming ``queue`` that answer within ``timeout`` seconds; None
    when the broker cannot be asked."""
    from workers.celery import app

    try:
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception:  # kombu raises transport-specific errors; the caller only informs
        return None
    return sorted(
        name
        for name, queues in replies.items()
        if any(isinstance(q, dict) and q.get("name") == queue for q in queues or [])
    )
