"""Defaults for the orchestrator, each overridable by a Django setting of the same name."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings

#: Seconds between heartbeats written by a running node.
ORCHESTRATOR_HEARTBEAT_SECONDS: float = 5.0
#: A running node whose heartbeat is older than this is taken to have lost its worker.
ORCHESTRATOR_HEARTBEAT_TIMEOUT: float = 60.0
#: A run whose next node was handed over longer ago than this, with nothing running, is
#: re-dispatched (the broker may have lost the message).
ORCHESTRATOR_REDISPATCH_AFTER: float = 120.0
#: How often ``cancel_requested()`` may read the run's status from the database, in seconds.
ORCHESTRATOR_CANCEL_POLL_SECONDS: float = 0.1
#: Default per-node time limit when a definition gives none, in seconds.
ORCHESTRATOR_DEFAULT_TIMEOUT: float = 3600.0
#: Largest per-node time limit a definition may set; the broker's visibility timeout is above it.
ORCHESTRATOR_MAX_NODE_TIMEOUT: float = 6 * 3600.0
#: Seconds a Celery worker is given past a node's time limit before it is killed.
ORCHESTRATOR_HARD_TIMEOUT_GRACE: float = 30.0
#: Largest payload accepted by ``run_pipeline``, in bytes.
ORCHESTRATOR_MAX_PAYLOAD_BYTES: int = 1024 * 1024
#: Most nodes a pipeline definition may have.
ORCHESTRATOR_MAX_NODES: int = 1000
#: Largest pipeline definition accepted, in bytes of JSON.
ORCHESTRATOR_MAX_DEFINITION_BYTES: int = 1024 * 1024
#: Most retries a node may ask for (each waits twice as long as the one before).
ORCHESTRATOR_MAX_RETRIES: int = 20
#: Seconds a followed run may wait for a worker before the CLI says that none is taking it.
ORCHESTRATOR_WORKER_NOTICE_SECONDS: float = 5.0
#: Most nodes one node's ``next`` list may fan out to.
ORCHESTRATOR_MAX_FANOUT: int = 256
#: Celery queue for node tasks that name no queue of their own.
ORCHESTRATOR_DEFAULT_QUEUE: str = "orchestrator"
#: Dotted path of the dispatcher used when a broker is configured.
ORCHESTRATOR_DISPATCHER: str = "workers.dispatch.CeleryDispatcher"
#: Dotted path of the dispatcher used with no broker (the serve command picks a background one).
ORCHESTRATOR_INLINE_DISPATCHER: str = "orchestrator.dispatch.InlineDispatcher"
#: Extra modules to import so that their node types register themselves.
ORCHESTRATOR_NODE_MODULES: tuple[str, ...] = ()
#: Seconds between recovery passes: every worker runs one this often (one pass at a time across
#: all hosts, under a lease), and so does celery beat where it runs. 0 stops the workers' own.
ORCHESTRATOR_RECOVERY_INTERVAL: float = 30.0
#: How long the engine retries, with backoff, a step that lost its database connection.
ORCHESTRATOR_DB_RETRY_SECONDS: float = 300.0
#: A node whose worker was lost this many times while running it fails instead of running again.
ORCHESTRATOR_MAX_WORKER_LOSSES: int = 3
#: Attempts and first backoff (seconds, doubling) for mirroring a transition to Clarifai.
ORCHESTRATOR_MIRROR_RETRIES: int = 5
ORCHESTRATOR_MIRROR_BACKOFF: float = 1.0
#: Deadline for one Clarifai call, in seconds.
ORCHESTRATOR_CLARIFAI_TIMEOUT: float = 10.0


def get(name: str) -> Any:
    """The setting ``name``: Django settings, else the environment variable, else the default."""
    default = globals()[name]
    if hasattr(settings, name):
        return getattr(settings, name)
    raw = os.environ.get(name)
    if raw is None:
        return default
    if isinstance(default, tuple):
        return tuple(part for part in raw.split(",") if part)
    return type(default)(raw)


def broker_url() -> str:
    """The configured broker URL, empty when runs execute inline."""
    return getattr(settings, "CELERY_BROKER_URL", "") or ""
