"""Profiles for ``--profile``: the node hot path (claim, execute, finish, enqueue next) under
cProfile in this process (CPU time), and the import time of the CLI (``python -X importtime``)."""

from __future__ import annotations

import cProfile
import io
import pstats
import subprocess
import sys
import time
from typing import Any

from bench.measure import Context, line, orchestrator_command, run_inline
from orchestrator import engine

#: A queue no worker reads: the nodes enqueued while profiling are published, never consumed.
SINK = "bench-sink"


def _top(profile: cProfile.Profile, key: str, limit: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.strip_dirs().sort_stats(key).print_stats(limit)
    text = out.getvalue()
    return text[text.find("   ncalls") :].rstrip()


def node_path(ctx: Context, runs: int = 5, nodes: int = 20) -> dict[str, Any]:
    """Create and dispatch runs, then execute every node here as a worker task would (the next
    node is really published to the broker), under cProfile."""
    import redis

    from bench import noop

    definition = line(nodes, queue=SINK)
    client = redis.Redis.from_url(noop.app.conf.broker_url)

    def one_run() -> None:
        run = engine.create_run(definition, payload={}, source="bench")
        engine.dispatch_run(run)
        for spec in definition.nodes:
            engine.execute_node(run.pk, spec.id, task_id="profile")

    one_run()  # warm
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(runs):
        one_run()
    plain_ms = (time.perf_counter() - started) / (runs * nodes) * 1000
    cpu_ms = (time.process_time() - cpu) / (runs * nodes) * 1000
    # CPU time, not wall time: what this process spends per node, waits on the database aside.
    profile = cProfile.Profile(time.process_time)
    started = time.perf_counter()
    profile.enable()
    for _ in range(runs):
        one_run()
    profile.disable()
    took = time.perf_counter() - started
    client.delete(SINK)
    per_node_ms = took / (runs * nodes) * 1000
    ctx.say(
        f"hot path in-process: {plain_ms:.2f} ms per node, {cpu_ms:.2f} ms of it on this "
        f"process's CPU ({per_node_ms:.2f} ms under cProfile)"
    )
    return {
        "runs": runs,
        "nodes": nodes,
        "per_node_ms": round(plain_ms, 3),
        "per_node_cpu_ms": round(cpu_ms, 3),
        "per_node_ms_profiled": round(per_node_ms, 3),
        "by_tottime": _top(profile, "tottime", 25),
        "by_cumulative": _top(profile, "cumulative", 40),
    }


def _importtime(ctx: Context, argv: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        env=ctx.env(),
        cwd=ctx.workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    rows = []
    for entry in done.stderr.splitlines():
        if not entry.startswith("import time:") or "imported package" in entry:
            continue
        own, cumulative, name = entry[len("import time:") :].split("|")
        depth = (len(name) - len(name.lstrip())) // 2  # nested imports are indented
        rows.append((int(own), int(cumulative), name.strip(), depth))
    top_level = sorted((r for r in rows if r[3] == 0), key=lambda r: -r[1])
    return {
        "total_ms": round(sum(r[0] for r in rows) / 1000, 1),
        "modules": len(rows),
        "top_level_ms": [(r[2], round(r[1] / 1000, 1)) for r in top_level[:15]],
        "top_self_ms": [
            (r[2], round(r[0] / 1000, 1)) for r in sorted(rows, key=lambda r: -r[0])[:15]
        ],
    }


def imports(ctx: Context) -> dict[str, Any]:
    """What importing the CLI costs, and what a whole ``pr status`` process imports."""
    shown = run_inline(line(5))
    script = orchestrator_command()[1:]
    result = {
        "cli_module": _importtime(ctx, ["-c", "from commands.cli import main"]),
        "pr_status": _importtime(ctx, [*script, "pr", "status", str(shown.pk)]),
        "help": _importtime(ctx, [*script, "--help"]),
    }
    ctx.say(
        f"imports: pr status loads {result['pr_status']['modules']} modules "
        f"in {result['pr_status']['total_ms']:.0f} ms"
    )
    return result
