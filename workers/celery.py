"""The Celery app, configured from Django settings (namespace ``CELERY``) with safe defaults.

JSON only, late acks, re-queued on a lost worker, one message prefetched at a time, results
ignored (the database holds them), and a visibility timeout above the largest node time limit.
"""

from __future__ import annotations

import os

from celery import Celery, signals

from workers.defaults import CONSUMER_TIMEOUT, MESSAGE_SETTINGS, TRANSPORT_OPTIONS

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")

app = Celery("orchestrator", include=["workers.tasks"])


def _defaults() -> dict:
    from orchestrator import conf

    longest = max(
        conf.get("ORCHESTRATOR_DEFAULT_TIMEOUT"), conf.get("ORCHESTRATOR_MAX_NODE_TIMEOUT")
    )
    hard_limit = longest + conf.get("ORCHESTRATOR_HARD_TIMEOUT_GRACE")
    queue = conf.get("ORCHESTRATOR_DEFAULT_QUEUE")
    return {
        **MESSAGE_SETTINGS,
        "task_default_queue": queue,
        "task_create_missing_queues": True,
        "broker_transport_options": {
            # Above the largest node time limit, or Redis would hand a running node out twice.
            "visibility_timeout": int(hard_limit + 600),
            **TRANSPORT_OPTIONS,
        },
        "beat_schedule": {
            "orchestrator-recover": {
                "task": "workers.tasks.recover",
                "schedule": conf.get("ORCHESTRATOR_RECOVERY_INTERVAL"),
                "options": {"queue": queue},
            }
        },
    }


app.conf.update(_defaults())
app.config_from_object("django.conf:settings", namespace="CELERY")
# Celery's Django fix-up closes the database connection around every task unless told to reuse
# it; a node task is a few short queries, so opening a connection each time would dominate it.
# Connections are still released by Django's own rules (CONN_MAX_AGE, errors) after each task.
app.conf.update(CELERY_DB_REUSE_MAX=int(os.environ.get("CELERY_DB_REUSE_MAX", "1000")))


@signals.task_postrun.connect
def _release_old_connections(**kwargs: object) -> None:
    from django.db import close_old_connections

    close_old_connections()


_healer = None


@signals.worker_ready.connect
def _start_healing(**kwargs: object) -> None:
    """Every worker runs the recovery pass periodically, one pass at a time across hosts."""
    global _healer
    from orchestrator.healing import Healer

    _healer = Healer()
    _healer.start()


@signals.worker_shutdown.connect
def _stop_healing(**kwargs: object) -> None:
    if _healer is not None:
        _healer.stop()


@signals.celeryd_after_setup.connect
def _hold_messages_as_long_as_nodes_run(instance: object, **kwargs: object) -> None:
    """RabbitMQ closes a channel whose delivery stays unacknowledged past its consumer timeout
    (30 min by default), and a node's message is acknowledged only when the node ends: ask for a
    longer one on each consumer (RabbitMQ 3.12+; older servers ignore the argument, see the
    README)."""
    if app.connection_for_read().transport.driver_type != "amqp":
        return
    timeout_ms = int(_defaults()["broker_transport_options"]["visibility_timeout"] * 1000)
    for queue in app.amqp.queues.consume_from.values():
        queue.consumer_arguments = {
            **(queue.consumer_arguments or {}),
            CONSUMER_TIMEOUT: timeout_ms,
        }
