"""How many stalled nodes a recovery pass may send again without flooding the broker: a pure rule.

A node waiting for a worker has a message in its queue unless the broker lost it. The broker
cannot say which messages it holds, only how many, so the pass compares, queue by queue, the
nodes waiting on the queue with the messages in it: only as many nodes as messages are missing
are sent again, the longest-waiting first. Passes repeated while no worker consumes therefore
add nothing once the queue holds a message per waiting node (so a queue never holds more than
twice the nodes waiting on it); after the broker lost its data, every waiting node is sent again.

=================================  ==========================  =============================
messages in the queue (depth)      nodes waiting on it         sent again (of those stalled)
=================================  ==========================  =============================
unknown (no broker to ask)         any                         all of them
at least as many as waiting        W                           none
D fewer than waiting               W                           the W - D longest waiting
=================================  ==========================  =============================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def to_send_again(stalled: Sequence[T], waiting: int, depth: int | None) -> list[T]:
    """Which of ``stalled`` (longest waiting first) to send again, given how many nodes wait on
    their queue in all (``waiting``, stalled ones included) and the queue's depth (None: not
    known)."""
    if depth is None:
        return list(stalled)
    missing = max(0, waiting - depth)
    return list(stalled[:missing])
