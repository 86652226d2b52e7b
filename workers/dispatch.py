"""The dispatcher used when a broker is configured: one Celery message per node."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from orchestrator import conf, engine
from orchestrator.errors import BrokerUnavailable

if TYPE_CHECKING:
    from orchestrator.definitions import NodeSpec


class CeleryDispatcher:
    inline = False

    def check(self, timeout: float = 2.0) -> None:
        """Raise BrokerUnavailable unless the broker answers within ``timeout`` seconds."""
        from workers.celery import app

        url = app.conf.broker_url or conf.broker_url()
        # Every wait bounded by ``timeout``: a broker that accepts connections and never answers
        # must not hold the caller for the transport's usual socket timeout.
        bounded = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        try:
            with app.connection_for_write(
                connect_timeout=timeout, transport_options=bounded
            ) as connection:
                connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
        except Exception as exc:  # kombu raises transport-specific errors
            raise BrokerUnavailable(f"Cannot reach the broker at {_safe(url)}: {exc}") from exc

    def enqueue_node(self, run_id: int, spec: NodeSpec, countdown: float = 0) -> None:
        from workers.tasks import run_node

        limit = engine.node_timeout(spec)
        run_node.apply_async(
            (run_id, spec.id),
            queue=spec.queue or conf.get("ORCHESTRATOR_DEFAULT_QUEUE"),
            countdown=countdown or None,
            soft_time_limit=limit + 1,
            time_limit=limit + conf.get("ORCHESTRATOR_HARD_TIMEOUT_GRACE"),
        )

    def queue_depths(self, queues: list[str]) -> dict[str, int | None]:
        """Messages ready in each queue, as the broker reports them (0 for a queue it lacks)."""
        from workers.celery import app

        depths: dict[str, int | None] = {}
        with app.connection_for_write() as connection:
            for name in queues:
                channel = connection.channel()
                try:
                    depths[name] = channel.queue_declare(queue=name, passive=True).message_count
                except connection.channel_errors:  # no such queue: nothing was ever sent to it
                    depths[name] = 0
                finally:
                    errors = (*connection.connection_errors, *connection.channel_errors)
                    with contextlib.suppress(*errors):
                        channel.close()
        return depths

    def enqueue_mirror(self, run_id: int, event_id: int) -> None:
        from workers.tasks import mirror_transition

        mirror_transition.apply_async(
            (run_id, event_id), queue=conf.get("ORCHESTRATOR_DEFAULT_QUEUE")
        )


def _safe(url: str) -> str:
    """The broker URL without its password."""
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))
