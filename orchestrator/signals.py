"""Django signals sent by the engine, for progress display and integrations.

Receivers are called in the process executing the node (a worker, or the CLI inline).
"""

from __future__ import annotations

from django.dispatch import Signal

#: Sent after a node is claimed: ``run_id``, ``node_id``, ``node_type``, ``attempt``.
node_started = Signal()
#: Sent after a node's outcome is recorded: ``run_id``, ``node_id``, ``status``, ``duration_ms``,
#: ``error``.
node_finished = Signal()
