"""The run event trail: every request and effect, with the host and process it came from."""

from __future__ import annotations

import os
import socket
from functools import cache
from typing import Any

from django.db import transaction

from orchestrator import changes
from orchestrator.models import RunEvent


@cache
def hostname() -> str:
    return socket.gethostname()


def record(run_id: int, kind: str, node_id: str = "", **details: Any) -> RunEvent:
    """Append an event to the run's trail, and announce the change to the run's followers."""
    with transaction.atomic(savepoint=False):
        event = RunEvent.objects.create(
            run_id=run_id,
            kind=kind,
            node_id=node_id,
            host=hostname(),
            pid=os.getpid(),
            details=details,
        )
        if kind != RunEvent.QUEUED:  # nobody follows a run that did not exist a moment ago
            changes.announce(run_id)
    return event
