"""Records at scale: database queries per node boundary, and ``pr list`` / ``pr status`` over
10,000 runs and 100,000 node runs, timed in-process with the queries they issue."""

from __future__ import annotations

import io
import subprocess
import time
from typing import Any

from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings

from bench import records
from bench.measure import Context, line, orchestrator_command, queue_run, summary
from bench.services import BenchError
from orchestrator.models import PipelineRun
from orchestrator.state import RunStatus

#: What Django logs for transaction control since 5.0; counted apart from the statements.
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


def _sql(captured: CaptureQueriesContext, limit: int | None = None) -> list[str]:
    return [" ".join(q["sql"].split())[:240] for q in captured.captured_queries[:limit]]


def boundary_queries(ctx: Context) -> dict[str, Any]:
    """Queries issued by an inline run of 20 noop nodes minus those of 10 nodes, per node."""
    counts: dict[int, int] = {}
    sql_of: dict[int, list[str]] = {}
    sample: list[str] = []
    with override_settings(CELERY_BROKER_URL=""):
        queue_run(line(2))  # warm: connection, node registry
        for nodes in (10, 20):
            with CaptureQueriesContext(connection) as captured:
                run = queue_run(line(nodes))
            run.refresh_from_db()
            if run.status != RunStatus.COMPLETED:
                raise BenchError(f"inline run {run.pk} ended {run.status}: {run.error}")
            counts[nodes] = len(captured)
            sql_of[nodes] = sample = _sql(captured)
    per_node = (counts[20] - counts[10]) / 10
    control = [sum(sql.startswith(TRANSACTION_CONTROL) for sql in sql_of[n]) for n in (10, 20)]
    statements = per_node - (control[1] - control[0]) / 10
    # One node in the middle of the 20-node run: from the run claim before its node claim to
    # the run claim before the next node's.
    claims = [
        i for i, sql in enumerate(sample) if sql.startswith("INSERT INTO orchestrator_noderun")
    ]
    one_node = sample[claims[9] - 1 : claims[10] - 1] if len(claims) > 10 else []
    result = {
        "queries_10_nodes": counts[10],
        "queries_20_nodes": counts[20],
        "per_node_boundary": per_node,
        "per_node_statements": statements,
        "one_node": one_node,
        "whole_run": sample,
    }
    ctx.say(f"queries per node boundary: {per_node:g} ({statements:g} besides transaction control)")
    return result


def _timed_command(args: list[str], repeats: int) -> dict[str, Any]:
    """Median time of ``call_command(*args)`` in this process, and the queries of one call."""
    call_command(*args, stdout=io.StringIO())  # warm
    took = []
    for _ in range(repeats):
        started = time.perf_counter()
        call_command(*args, stdout=io.StringIO())
        took.append(time.perf_counter() - started)
    with CaptureQueriesContext(connection) as captured:
        call_command(*args, stdout=io.StringIO())
    return {
        **summary(took),
        "queries": len(captured),
        "query_ms": round(sum(float(q["time"]) for q in captured.captured_queries) * 1000, 2),
        "sql": _sql(captured),
    }


def _process_time(ctx: Context, args: list[str], repeats: int) -> dict[str, Any]:
    argv = [*orchestrator_command(), *args]
    took = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run(argv, env=ctx.env(), cwd=ctx.workdir, capture_output=True)
        took.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise BenchError(f"{' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
    return summary(took)


def scale(ctx: Context) -> dict[str, Any]:
    """Seed the records, then time the commands operators run most against them."""
    result: dict[str, Any] = {"boundary": boundary_queries(ctx)}
    runs, node_runs = ctx.counts["scale_runs"], ctx.counts["scale_node_runs"]
    if not runs:
        return result
    ctx.say(f"seeding {runs} runs and {node_runs} node runs")
    result["seed"] = records.seed(runs, node_runs)
    ctx.say(f"seeded in {result['seed']['seconds']:.1f} s")
    seeded = PipelineRun.objects.filter(queued_by="bench-seed").order_by("pk")
    shown = seeded.values_list("pk", flat=True)[runs // 2]
    repeats = ctx.counts["scale_repeats"]
    result["total_runs"] = PipelineRun.objects.count()
    result["list"] = _timed_command(["pipelinerun", "list"], repeats)
    result["list_failed"] = _timed_command(["pipelinerun", "list", "--status", "FAILED"], repeats)
    result["status"] = _timed_command(["pipelinerun", "status", str(shown)], repeats)
    result["status_json"] = _timed_command(["pipelinerun", "status", str(shown), "--json"], repeats)
    result["list_process"] = _process_time(ctx, ["pr", "list"], ctx.counts["cli_runs"])
    ctx.say(
        f"scale: pr list {result['list']['median'] * 1000:.1f} ms "
        f"(queries: {result['list']['queries']}), pr status "
        f"{result['status']['median'] * 1000:.1f} ms (queries: {result['status']['queries']})"
    )
    return result
