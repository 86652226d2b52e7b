"""Fan-out and join: one node fanning out to ``width`` no-op branches joined by one node, against
a Celery ``chord`` of ``width`` no-op tasks and a callback (with the result backend a chord
needs), on the same broker with the same worker settings and pool size, run by run alternately.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from bench import chord
from bench.measure import Context, _ours_once, alternating, summary, wait_until
from bench.services import running
from orchestrator import definitions


def fan_out(width: int) -> definitions.Definition:
    """``start`` → ``b00`` … ``b{width-1}`` (in parallel) → ``join``, every node a no-op."""
    branches = [f"b{i:02d}" for i in range(width)]
    return definitions.parse(
        {
            "name": f"bench-fanout-{width}",
            "nodes": [
                {"id": "start", "type": "noop", "next": branches},
                *({"id": b, "type": "noop", "next": "join"} for b in branches),
                {"id": "join", "type": "noop"},
            ],
        }
    )


def _chord_once(width: int) -> float:
    from celery import chord as celery_chord

    key = f"bench:chord:{uuid.uuid4().hex}"
    client = chord._redis()
    header = [chord.noop.si().set(queue=chord.QUEUE) for _ in range(width)]
    started = time.perf_counter()
    result = celery_chord(header, app=chord.app)(chord.joined.s(key).set(queue=chord.QUEUE))
    wait_until(lambda: client.get(key), what=f"chord {key}")
    seen = time.perf_counter()
    client.delete(key)
    del result
    return seen - started


def _close_results() -> None:
    """Drop the client's subscriptions to chord results now, while Redis is up: otherwise each
    result still held unsubscribes at interpreter exit, and fails loudly."""
    consumer = chord.app.backend.result_consumer
    consumer.stop()
    consumer.subscribed_to.clear()


def fanout(ctx: Context) -> dict[str, Any]:
    """Enqueue to completion seen, median of ``overhead_runs`` after ``warmup``, alternating."""
    width, processes = ctx.counts["fanout_width"], ctx.counts["fanout_processes"]
    runs, warmup = ctx.counts["overhead_runs"], ctx.counts["warmup"]
    definition = fan_out(width)
    ours_worker = ctx.ours_worker("ours-fanout", processes)
    raw_worker = ctx.worker("raw-chord", "bench.chord", chord.QUEUE, processes)
    with running(ours_worker, raw_worker):
        ours, raw = alternating(
            lambda: _ours_once(definition), lambda: _chord_once(width), runs, warmup
        )
    _close_results()
    result: dict[str, Any] = {
        "width": width,
        "processes": processes,
        "ours": summary(ours),
        "raw": summary(raw),
    }
    result["ratio"] = round(result["ours"]["median"] / result["raw"]["median"], 3)
    ctx.say(
        f"fanout: ours {result['ours']['median'] * 1000:.1f} ms, chord "
        f"{result['raw']['median'] * 1000:.1f} ms, ratio {result['ratio']:.2f}x"
    )
    return result
