"""The timed measurements against real workers: per-node overhead, throughput, signal latency,
and the wall time of CLI processes. Each runs in a phase process with Django set up on one
database (see :mod:`bench.phases`); the raw Celery baseline runs beside it on the same broker.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.test.utils import override_settings
from django.utils import timezone

from bench import noop
from bench.services import BenchError, Worker, child_env, running
from orchestrator import control, definitions, engine
from orchestrator.models import NodeRun, PipelineRun
from orchestrator.state import TERMINAL, Action, NodeStatus, RunStatus

#: Seconds between reads of a completion signal (the run row, or the Redis key of the baseline).
POLL = 0.005
#: Queues of the baseline workers; the orchestrator's workers take its default queue.
RAW_SERIAL = "bench-serial"
RAW_PARALLEL = "bench-parallel"


@dataclass
class Context:
    """Where a phase runs: its database, broker, scratch directory and run counts."""

    database: str
    database_url: str
    broker_url: str
    workdir: Path
    counts: dict[str, int]
    worker_app: str = "workers.celery"
    #: The ``clarifai`` console script (clarifai 12.x) to compare ``pr pause --help`` with.
    clarifai: str = ""
    rng: random.Random = field(default_factory=lambda: random.Random(6))

    def env(self) -> dict[str, str]:
        return child_env(DATABASE_URL=self.database_url, CELERY_BROKER_URL=self.broker_url)

    def worker(self, name: str, app: str, queue: str, concurrency: int) -> Worker:
        return Worker(name, app, queue, concurrency, self.env(), self.workdir)

    def ours_worker(self, name: str, concurrency: int) -> Worker:
        return self.worker(name, self.worker_app, "orchestrator", concurrency)

    def say(self, text: str) -> None:
        print(f"[{self.database}] {text}", flush=True)


# --- helpers ------------------------------------------------------------------------------------


def line(
    nodes: int, *, node_type: str = "noop", config: dict | None = None, **options: Any
) -> definitions.Definition:
    """A definition of ``nodes`` nodes of one type linked in a line."""
    ids = [f"n{i:02d}" for i in range(nodes)]
    return definitions.parse(
        {
            "name": f"bench-{node_type}-{nodes}",
            "nodes": [
                {
                    "id": node_id,
                    "type": node_type,
                    "config": dict(config or {}),
                    "next": ids[i + 1] if i + 1 < nodes else None,
                    **options,
                }
                for i, node_id in enumerate(ids)
            ],
        }
    )


def summary(samples: Iterable[float], digits: int = 4) -> dict[str, Any]:
    """Median, mean, min and max of ``samples`` (seconds), and the samples themselves."""
    values = list(samples)
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median": round(statistics.median(values), digits),
        "mean": round(statistics.fmean(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "samples": [round(v, digits) for v in values],
    }


def wait_until(
    predicate: Callable[[], Any], timeout: float = 60, interval: float = POLL, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something true; raise BenchError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what or predicate}")
        time.sleep(interval)


def alternating(
    ours: Callable[[], float], raw: Callable[[], float], runs: int, warmup: int
) -> tuple[list[float], list[float]]:
    """``runs`` samples of each after ``warmup`` pairs, the two taking turns to go first so that
    both see the same load."""
    samples: tuple[list[float], list[float]] = ([], [])
    for i in range(warmup + runs):
        if i % 2 == 0:
            pair = (ours(), raw())
        else:
            second = raw()
            pair = (ours(), second)
        if i >= warmup:
            samples[0].append(pair[0])
            samples[1].append(pair[1])
    return samples


def run_status(run_id: int) -> str | None:
    return PipelineRun.objects.filter(pk=run_id).values_list("status", flat=True).first()


def wait_status(run_id: int, wanted: Iterable[str], timeout: float = 60) -> tuple[str, float]:
    """Poll the run row until its status is in ``wanted``; the status and when it was seen."""
    wanted = {str(s) for s in wanted}

    def seen() -> str | None:
        status = run_status(run_id)
        return status if status in wanted else None

    status = wait_until(seen, timeout, what=f"run {run_id} to be {sorted(wanted)}")
    return status, time.perf_counter()


def queue_run(definition: definitions.Definition) -> PipelineRun:
    """Enqueue a run the way ``run_pipeline --detach`` does: record it, then dispatch it."""
    run = engine.create_run(definition, payload={"server": "bench"}, source="bench")
    engine.dispatch_run(run)
    return run


def run_inline(definition: definitions.Definition) -> PipelineRun:
    """Execute a run in this process (no broker), as the CLI does by default."""
    with override_settings(CELERY_BROKER_URL=""):
        run = queue_run(definition)
    run.refresh_from_db()
    if run.status != RunStatus.COMPLETED:
        raise BenchError(f"inline run {run.pk} ended {run.status}: {run.error}")
    return run


def orchestrator_command() -> list[str]:
    """The ``orchestrator`` console script of this interpreter (not a shell shim in front of it)."""
    script = Path(sys.executable).parent / "orchestrator"
    if script.exists():
        return [sys.executable, str(script)]
    return [sys.executable, "-m", "commands.cli"]


def _redis() -> Any:
    import redis

    return redis.Redis.from_url(noop.app.conf.broker_url)


# --- 1. per-node overhead -----------------------------------------------------------------------


def _ours_once(definition: definitions.Definition) -> float:
    started = time.perf_counter()
    run = queue_run(definition)
    status, seen = wait_status(run.pk, TERMINAL)
    if status != RunStatus.COMPLETED:
        raise BenchError(f"run {run.pk} ended {status}")
    return seen - started


def _raw_chain_once(nodes: int) -> float:
    from celery import chain

    key = f"bench:chain:{uuid.uuid4().hex}"
    client = _redis()
    steps = [noop.noop.si().set(queue=RAW_SERIAL) for _ in range(nodes - 1)]
    steps.append(noop.done.si(key).set(queue=RAW_SERIAL))
    started = time.perf_counter()
    chain(*steps, app=noop.app).apply_async()
    wait_until(lambda: client.get(key), what=f"raw chain {key}")
    seen = time.perf_counter()
    client.delete(key)
    return seen - started


def overhead(ctx: Context) -> dict[str, Any]:
    """A ``nodes``-node noop pipeline from enqueue to COMPLETED observed, against a raw chain of
    as many no-op tasks; the two alternate so that both see the same load."""
    nodes, runs, warmup = ctx.counts["nodes"], ctx.counts["overhead_runs"], ctx.counts["warmup"]
    definition = line(nodes)
    ours, raw = alternating(
        lambda: _ours_once(definition), lambda: _raw_chain_once(nodes), runs, warmup
    )
    result = {"nodes": nodes, "ours": summary(ours), "raw": summary(raw)}
    result["ratio"] = round(result["ours"]["median"] / result["raw"]["median"], 3)
    result["per_node_ms"] = {
        "ours": round(result["ours"]["median"] / nodes * 1000, 2),
        "raw": round(result["raw"]["median"] / nodes * 1000, 2),
        "added": round((result["ours"]["median"] - result["raw"]["median"]) / nodes * 1000, 2),
    }
    ctx.say(
        f"overhead: ours {result['ours']['median'] * 1000:.1f} ms, raw chain "
        f"{result['raw']['median'] * 1000:.1f} ms, ratio {result['ratio']:.2f}x"
    )
    return result


# --- 2. throughput ------------------------------------------------------------------------------


def _ours_batch(
    definition: definitions.Definition, runs: int, interval: float = 0.01
) -> dict[str, float]:
    started = time.perf_counter()
    ids = [queue_run(definition).pk for _ in range(runs)]
    enqueued = time.perf_counter()
    rows = PipelineRun.objects.filter(pk__in=ids)

    def all_ended() -> bool:
        ended = rows.filter(status__in=list(TERMINAL)).count()
        return ended == runs

    wait_until(all_ended, timeout=600, interval=interval, what=f"{runs} runs to end")
    finished = time.perf_counter()
    failed = rows.exclude(status=RunStatus.COMPLETED).count()
    if failed:
        raise BenchError(f"{failed} of {runs} throughput runs did not complete")
    return {"enqueue_s": enqueued - started, "total_s": finished - started}


def _raw_batch(tasks: int) -> dict[str, float]:
    key = f"bench:batch:{uuid.uuid4().hex}"
    client = _redis()
    started = time.perf_counter()
    for _ in range(tasks):
        noop.done.apply_async((key,), queue=RAW_PARALLEL)
    enqueued = time.perf_counter()
    wait_until(
        lambda: int(client.get(key) or 0) >= tasks,
        timeout=600,
        interval=0.01,
        what=f"{tasks} raw tasks",
    )
    finished = time.perf_counter()
    client.delete(key)
    return {"enqueue_s": enqueued - started, "total_s": finished - started}


#: pg_stat_database counters read around a batch (the database is the bench's own).
DATABASE_COUNTERS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_fetched")


def _database_counters() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute(
            f"SELECT {', '.join(DATABASE_COUNTERS)} FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        return dict(zip(DATABASE_COUNTERS, cursor.fetchone(), strict=True))


def _database_work(definition: definitions.Definition, runs: int) -> dict[str, float]:
    """What one more batch of runs costs PostgreSQL, per node, from its own counters (enqueueing
    included). Other backends report their counts when idle, at most every ten seconds: the
    read after the batch waits for that."""
    before = _database_counters()
    _ours_batch(definition, runs, interval=1.0)  # the bench's own reads: one a second
    time.sleep(11)
    after = _database_counters()
    nodes = runs * len(definition.nodes)
    return {name: round((after[name] - before[name]) / nodes, 2) for name in DATABASE_COUNTERS}


def throughput(ctx: Context) -> dict[str, Any]:
    """``runs`` concurrent 5-node runs on one worker of concurrency 2, in nodes per second,
    against as many raw no-op tasks on a raw worker of concurrency 2."""
    runs, nodes, rounds = ctx.counts["throughput_runs"], 5, ctx.counts["throughput_rounds"]
    definition = line(nodes)
    ours_worker = ctx.ours_worker("ours-parallel", 2)
    raw_worker = ctx.worker("raw-parallel", "bench.noop", RAW_PARALLEL, 2)
    ours: list[dict[str, float]] = []
    raw: list[dict[str, float]] = []
    with running(ours_worker, raw_worker):
        _ours_batch(definition, 4)  # warm both pool processes and their connections
        _raw_batch(20)
        for i in range(rounds):
            order = [("ours", ours), ("raw", raw)][:: 1 if i % 2 == 0 else -1]
            for name, into in order:
                into.append(
                    _ours_batch(definition, runs) if name == "ours" else _raw_batch(runs * nodes)
                )
        database = _database_work(definition, runs) if ctx.database == "postgresql" else {}
    total = runs * nodes
    ours_rate = statistics.median(total / r["total_s"] for r in ours)
    raw_rate = statistics.median(total / r["total_s"] for r in raw)
    result = {
        "runs": runs,
        "nodes_per_run": nodes,
        "rounds": rounds,
        "ours": {"nodes_per_s": round(ours_rate, 1), "rounds": ours},
        "raw": {"tasks_per_s": round(raw_rate, 1), "rounds": raw},
        "ratio": round(ours_rate / raw_rate, 3),
        "postgresql_per_node": database,
    }
    ctx.say(
        f"throughput: ours {ours_rate:.0f} nodes/s, raw {raw_rate:.0f} tasks/s, "
        f"ratio {result['ratio']:.2f}x"
    )
    return result


# --- 3. signal latency --------------------------------------------------------------------------


def _running_node(run_id: int, node_id: str) -> Callable[[], bool]:
    return lambda: NodeRun.objects.filter(
        run_id=run_id, node_id=node_id, status=NodeStatus.RUNNING
    ).exists()


def _cancel_once(
    ctx: Context, definition: definitions.Definition, by_process: bool
) -> dict[str, float]:
    """Seconds from the cancel returning (and from it being asked for) to CANCELLED seen."""
    run = queue_run(definition)
    wait_until(_running_node(run.pk, "hold"), what=f"run {run.pk} to start its wait node")
    time.sleep(ctx.rng.uniform(0, 0.1))  # land anywhere between two cancel polls of the node
    asked = time.perf_counter()
    if by_process:
        done = subprocess.run(
            [*orchestrator_command(), "pr", "cancel", str(run.pk)],
            env=ctx.env(),
            cwd=ctx.workdir,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise BenchError(f"pr cancel failed: {done.stderr.strip()}")
    else:
        control.signal(run.pk, Action.CANCEL)
    returned = time.perf_counter()
    _, seen = wait_status(run.pk, [RunStatus.CANCELLED])
    return {"after_return": seen - returned, "after_ask": seen - asked, "call": returned - asked}


def _pause_once(ctx: Context, definition: definitions.Definition) -> dict[str, Any]:
    run = queue_run(definition)
    wait_until(_running_node(run.pk, "n00"), what=f"run {run.pk} to start")
    time.sleep(ctx.rng.uniform(0, 0.25))
    result = control.signal(run.pk, Action.PAUSE)
    returned_at = timezone.now()
    returned = time.perf_counter()
    status, seen = wait_status(run.pk, [RunStatus.PAUSED, *TERMINAL])
    late = NodeRun.objects.filter(run_id=run.pk, started_at__gt=returned_at).count()
    if status == RunStatus.PAUSED:
        control.signal(run.pk, Action.CANCEL)  # leave nothing behind for the next measurement
    return {
        "run_id": run.pk,
        "signal_status": str(result.status),
        "status": status,
        "latency_s": seen - returned,
        "nodes_started_after_pause": late,
    }


def signals(ctx: Context) -> dict[str, Any]:
    """Cancel while a ``wait`` node runs, and pause at a node boundary, on a worker of
    concurrency 1 (started by the caller)."""
    runs = ctx.counts["signal_runs"]
    hold = definitions.parse(
        {
            "name": "bench-cancel",
            "nodes": [
                {"id": "hold", "type": "wait", "config": {"seconds": 30}, "next": "after"},
                {"id": "after", "type": "noop"},
            ],
        }
    )
    cancel = [_cancel_once(ctx, hold, by_process=False) for _ in range(runs)]
    by_process = [
        _cancel_once(ctx, hold, by_process=True) for _ in range(ctx.counts["cli_cancels"])
    ]
    steps = line(20, node_type="wait", config={"seconds": 0.02})

    def figures(samples: list[dict[str, float]]) -> dict[str, Any]:
        keys = ("after_return", "after_ask", "call")
        return {key: summary(sample[key] for sample in samples) for key in keys}

    pauses = [_pause_once(ctx, steps) for _ in range(runs)]
    paused = [p for p in pauses if p["status"] == RunStatus.PAUSED]
    result = {
        "cancel": figures(cancel),
        "cancel_by_process": figures(by_process),
        "pause": {
            "runs": len(pauses),
            "paused": len(paused),
            "took_effect_at_boundary": sum(p["signal_status"] == RunStatus.PAUSING for p in pauses),
            "nodes_started_after_pause": sum(p["nodes_started_after_pause"] for p in pauses),
            "latency": summary(p["latency_s"] for p in paused),
            "outcomes": pauses,
        },
    }
    ctx.say(
        f"signals: cancel median {result['cancel']['after_return']['median'] * 1000:.0f} ms, "
        f"max {result['cancel']['after_return']['max'] * 1000:.0f} ms; "
        f"{result['pause']['nodes_started_after_pause']} nodes started after a pause"
    )
    return result


# --- 4. CLI latency -----------------------------------------------------------------------------


def _wall(ctx: Context, argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=ctx.env(), cwd=ctx.workdir, capture_output=True, timeout=60)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv[1:])} failed: {done.stderr.decode(errors='replace')}")
    return took


def _help_pair(ctx: Context, command: list[str], first_ours: bool) -> tuple[float, float]:
    """``pr pause --help`` of ours and of the clarifai CLI, one right after the other."""
    ours_argv = [*command, "pr", "pause", "--help"]
    theirs_argv = [ctx.clarifai, "pr", "pause", "--help"]
    if first_ours:
        ours = _wall(ctx, ours_argv)
        return ours, _wall(ctx, theirs_argv)
    theirs = _wall(ctx, theirs_argv)
    return _wall(ctx, ours_argv), theirs


def cli(ctx: Context) -> dict[str, Any]:
    """Whole-process wall time of ``pr status``, ``pr pause`` and ``--help``, against a bare
    interpreter start (``python -c pass``) as the floor."""
    runs, warmup = ctx.counts["cli_runs"], ctx.counts["warmup"]
    command = orchestrator_command()
    shown = run_inline(line(ctx.counts["nodes"]))
    queued_def = line(3)
    samples: dict[str, list[float]] = {"status": [], "pause": [], "help": [], "python": []}
    pairs: list[tuple[float, float]] = []  # pr pause --help: ours, clarifai's
    for i in range(warmup + runs):
        queued = engine.create_run(queued_def, payload={}, source="bench")  # QUEUED, no worker
        taken = {
            "status": _wall(ctx, [*command, "pr", "status", str(shown.pk)]),
            "pause": _wall(ctx, [*command, "pr", "pause", str(queued.pk)]),
            "help": _wall(ctx, [*command, "--help"]),
            "python": _wall(ctx, [sys.executable, "-c", "pass"]),
        }
        if ctx.clarifai and i >= warmup:
            pairs.append(_help_pair(ctx, command, first_ours=i % 2 == 0))
        if run_status(queued.pk) != RunStatus.PAUSED:
            raise BenchError(f"pr pause left run {queued.pk} {run_status(queued.pk)}")
        if i >= warmup:
            for name, value in taken.items():
                samples[name].append(value)
    result = {name: summary(values) for name, values in samples.items()}
    result["command"] = " ".join(Path(part).name for part in command)
    if pairs:
        ours, theirs = summary(p[0] for p in pairs), summary(p[1] for p in pairs)
        result["pause_help"] = {
            "ours": ours,
            "clarifai": theirs,
            "ratio": round(ours["median"] / theirs["median"], 3),
            "pair_ratios": summary((a / b for a, b in pairs), digits=3),
        }
    ctx.say(
        "cli: " + ", ".join(f"{name} {result[name]['median'] * 1000:.0f} ms" for name in samples)
    )
    return result
