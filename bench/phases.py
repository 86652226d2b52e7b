"""One database's share of the benchmarks, in its own process: ``python -m bench.phases
CONFIG.json``, started by :mod:`bench.run` with DATABASE_URL and CELERY_BROKER_URL set.

It migrates the database, runs the phases named in the config with their workers, and writes
the results as JSON to the path the config names. A phase that fails is recorded with its error
and the others go on.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _run(results: dict[str, Any], name: str, measure: Callable[[], Any]) -> None:
    try:
        results[name] = measure()
    except Exception as exc:  # one broken phase must not lose the others' figures
        traceback.print_exc()
        results[name] = {"error": f"{type(exc).__name__}: {exc}"}


def main(config_path: str) -> int:
    config = json.loads(Path(config_path).read_text())
    # A terminated phase still stops the workers it started (the `running` blocks' finally).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from bench import fanout, follow, hotpath, measure, scale
    from bench.services import BenchError, running

    call_command("migrate", verbosity=0, interactive=False)
    ctx = measure.Context(
        database=connection.vendor,
        database_url=os.environ["DATABASE_URL"],
        broker_url=os.environ["CELERY_BROKER_URL"],
        workdir=Path(config["workdir"]),
        counts=config["counts"],
        worker_app=config.get("worker_app", "workers.celery"),
        clarifai=config.get("clarifai", ""),
        rng=random.Random(config.get("seed", 6)),
    )
    wanted = config["phases"]
    results: dict[str, Any] = {"database": ctx.database}
    serial = [name for name in ("overhead", "signals", "follow") if name in wanted]
    if serial:
        workers = [ctx.ours_worker("ours-serial", 1)]
        if "overhead" in wanted:
            workers.append(ctx.worker("raw-serial", "bench.noop", measure.RAW_SERIAL, 1))
        try:
            with running(*workers):
                if "overhead" in wanted:
                    _run(results, "overhead", lambda: measure.overhead(ctx))
                if "signals" in wanted:
                    _run(results, "signals", lambda: measure.signals(ctx))
                if "follow" in wanted:
                    _run(results, "follow", lambda: follow.follow_latency(ctx))
        except BenchError as exc:  # a worker did not start
            traceback.print_exc()
            for name in serial:
                results.setdefault(name, {"error": str(exc)})
    if "throughput" in wanted:
        _run(results, "throughput", lambda: measure.throughput(ctx))
    if "fanout" in wanted:
        _run(results, "fanout", lambda: fanout.fanout(ctx))
    if "cli" in wanted:
        _run(results, "cli", lambda: measure.cli(ctx))
    if "scale" in wanted:
        _run(results, "scale", lambda: scale.scale(ctx))
    if config.get("profile"):
        _run(results, "hot_path", lambda: hotpath.node_path(ctx))
        _run(results, "imports", lambda: hotpath.imports(ctx))
    Path(config["out"]).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
