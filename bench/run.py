"""``python -m bench.run [--quick] [--json PATH] [--only NAME]``: every benchmark, side by side
with raw Celery, in one process tree.

It starts a private redis-server, creates a dedicated PostgreSQL database and a SQLite file,
runs the phases of each database in a child process (:mod:`bench.phases`, which starts the
Celery workers), prints a table and writes JSON. Everything it started is stopped, and the
database dropped, on the way out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.services import (
    REPO,
    BenchError,
    PostgresDatabase,
    RedisServer,
    child_env,
    load,
    machine,
)
from bench.services import stop_leftovers as stop_leftover_processes

PHASES = ("overhead", "throughput", "fanout", "signals", "follow", "cli", "scale")
#: Phases also run on SQLite (the CLI's default database); the others need PostgreSQL only.
SQLITE_PHASES = ("overhead", "fanout", "follow", "cli", "scale")
FULL = {
    "nodes": 20,
    "overhead_runs": 15,
    "throughput_runs": 200,
    "throughput_rounds": 1,
    "signal_runs": 20,
    "cli_cancels": 3,
    "cli_runs": 10,
    "warmup": 2,
    "scale_runs": 10_000,
    "scale_node_runs": 100_000,
    "scale_repeats": 5,
    "fanout_width": 20,
    "fanout_processes": 2,
}
QUICK = {
    **FULL,
    "overhead_runs": 5,
    "throughput_runs": 50,
    "signal_runs": 5,
    "cli_cancels": 1,
    "cli_runs": 3,
    "warmup": 1,
    "scale_repeats": 3,
}
DEFAULT_JSON = REPO / "bench" / "results" / "latest.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark the orchestrator side by side with raw Celery.",
    )
    parser.add_argument("--quick", action="store_true", help="Fewer runs (about a minute).")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"Results file (default: {DEFAULT_JSON})."
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"Run only these measurements ({', '.join(PHASES)}); repeat or comma-separate.",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432"),
        help="PostgreSQL server URL, without a database (default: $BENCH_POSTGRES_URL or "
        "postgres://postgres@127.0.0.1:5432); the database --postgres-db is created there.",
    )
    parser.add_argument(
        "--postgres-db",
        default=None,
        metavar="NAME",
        help="Name of the scratch database, dropped, created and dropped again "
        "(default: orchestrator_bench_<pid>, so that concurrent benches never collide).",
    )
    parser.add_argument("--no-sqlite", action="store_true", help="Skip the SQLite figures.")
    parser.add_argument(
        "--worker-app",
        default="workers.celery",
        metavar="MODULE",
        help="Celery app of the orchestrator's workers (default: workers.celery); for trying a "
        "change of worker settings side by side.",
    )
    parser.add_argument(
        "--profile", action="store_true", help="Also profile the node hot path and CLI imports."
    )
    parser.add_argument(
        "--clarifai",
        default=os.environ.get("BENCH_CLARIFAI") or shutil.which("clarifai") or "",
        metavar="PATH",
        help="The clarifai 12.x console script, to compare `pr pause --help` with in paired "
        "runs (default: $BENCH_CLARIFAI, else clarifai on PATH; the row is left out without).",
    )
    parser.add_argument(
        "--keep", action="store_true", help="Keep the scratch directory (worker logs)."
    )
    for name in FULL:
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            metavar="N",
            help=f"default {FULL[name]} ({QUICK[name]} with --quick)",
        )
    args = parser.parse_args(argv)
    chosen = [p.strip() for group in args.only or [] for p in group.split(",") if p.strip()]
    unknown = sorted(set(chosen) - set(PHASES))
    if unknown:
        parser.error(f"unknown measurement {', '.join(unknown)}; choose from {', '.join(PHASES)}")
    args.phases = [p for p in PHASES if not chosen or p in chosen]
    base = QUICK if args.quick else FULL
    args.counts = {
        name: value if getattr(args, name) is None else getattr(args, name)
        for name, value in base.items()
    }
    return args


def run_phases(
    label: str,
    database_url: str,
    broker_url: str,
    phases: list[str],
    args: argparse.Namespace,
    workdir: Path,
    counts: dict[str, int],
) -> dict[str, Any]:
    """Run ``phases`` on one database in a child process; its results, or the error."""
    config = workdir / f"phases-{label}.json"
    out = workdir / f"results-{label}.json"
    config.write_text(
        json.dumps(
            {
                "phases": phases,
                "counts": counts,
                "workdir": str(workdir),
                "out": str(out),
                "profile": args.profile and label == "postgresql",
                "worker_app": args.worker_app,
                "clarifai": args.clarifai,
            }
        )
    )
    env = child_env(DATABASE_URL=database_url, CELERY_BROKER_URL=broker_url)
    print(f"== {label}: {', '.join(phases)}", flush=True)
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.phases", str(config)], env=env, cwd=workdir
    )
    try:
        code = child.wait()
    except BaseException:
        child.terminate()
        try:
            child.wait(60)
        except subprocess.TimeoutExpired:
            child.kill()
        raise
    if not out.exists():
        return {"error": f"the {label} phase process exited with status {code}"}
    return json.loads(out.read_text())


# --- the table ----------------------------------------------------------------------------------


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} s" if value >= 1 else f"{value * 1000:.1f} ms"


def plural(count: int, word: str) -> str:
    if count == 1:
        return f"{count} {word}"
    return f"{count} {word[:-1]}ies" if word.endswith("y") else f"{count} {word}s"


def _row(
    measurement: str,
    ours: str,
    baseline: str = "-",
    ratio: str = "-",
    target: str = "-",
    met: bool | None = None,
) -> dict[str, str]:
    return {
        "measurement": measurement,
        "ours": ours,
        "baseline": baseline,
        "ratio": ratio,
        "target": target,
        "met": "-" if met is None else ("yes" if met else "NO"),
    }


def _failed(measurement: str, result: dict[str, Any]) -> dict[str, str] | None:
    if "error" in result:
        return {**_row(measurement, f"error: {result['error']}"[:120]), "met": "ERROR"}
    return None


def rows(results: dict[str, dict[str, Any]], counts: dict[str, int]) -> list[dict[str, str]]:
    table: list[dict[str, str]] = []
    names = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}
    for db, name in names.items():
        data = results.get(db, {})
        if "overhead" not in data:
            continue
        result = data["overhead"]
        title = f"1. Per-node overhead: {counts['nodes']}-node run, 1 worker, {name}"
        if (bad := _failed(title, result)) is not None:
            table.append(bad)
            continue
        primary = db == "postgresql"
        table.append(
            _row(
                f"{title} (median of {result['ours']['n']})",
                f"{seconds(result['ours']['median'])} ({result['per_node_ms']['ours']} ms/node)",
                f"raw chain {seconds(result['raw']['median'])} "
                f"({result['per_node_ms']['raw']} ms/task)",
                f"{result['ratio']:.2f}x",
                "≤ 1.5x" if primary else "reported",
                result["ratio"] <= 1.5 if primary else None,
            )
        )
    for db, name in names.items():
        result = results.get(db, {}).get("fanout")
        if result is None:
            continue
        title = f"6. Fan-out of 20 no-op branches and a join, {name}"
        if (bad := _failed(title, result)) is not None:
            table.append(bad)
            continue
        title = f"6. Fan-out of {result['width']} no-op branches and a join, {name}"
        table.append(
            _row(
                f"{title}, {result['processes']} processes (median of {result['ours']['n']})",
                seconds(result["ours"]["median"]),
                f"chord {seconds(result['raw']['median'])}",
                f"{result['ratio']:.2f}x",
                "≤ 2x",
                result["ratio"] <= 2,
            )
        )
    pg = results.get("postgresql", {})
    if "throughput" in pg:
        result = pg["throughput"]
        title = "2. Throughput: concurrent 5-node runs, 2 processes"
        bad = _failed(title, result)
        table.append(
            bad
            or _row(
                f"2. Throughput: {result['runs']} concurrent 5-node runs, 2 processes",
                f"{result['ours']['nodes_per_s']:.0f} nodes/s",
                f"{result['raw']['tasks_per_s']:.0f} raw tasks/s",
                f"{result['ratio']:.2f}x",
                "≥ 0.5x",
                result["ratio"] >= 0.5,
            )
        )
        work = result.get("postgresql_per_node") if "error" not in result else None
        if work:
            table.append(
                _row(
                    "2. PostgreSQL work per node in a throughput batch (pg_stat_database)",
                    f"{work['xact_commit']:g} commits, {work['tup_inserted']:g} rows inserted, "
                    f"{work['tup_updated']:g} updated",
                    target="reported",
                )
            )
    if "signals" in pg:
        result = pg["signals"]
        bad = _failed("3. Signals", result)
        if bad:
            table.append(bad)
        else:
            cancel, pause = result["cancel"]["after_return"], result["pause"]
            table.append(
                _row(
                    f"3. Cancel returned → CANCELLED, wait node running (of {cancel['n']})",
                    f"median {seconds(cancel['median'])}, max {seconds(cancel['max'])}",
                    target="median < 0.3 s",
                    met=cancel["median"] < 0.3,
                )
            )
            by_process = result["cancel_by_process"]
            if by_process["after_return"].get("n"):
                table.append(
                    _row(
                        "3. `orchestrator pr cancel` process: started → CANCELLED "
                        f"(of {by_process['after_return']['n']})",
                        f"median {seconds(by_process['after_ask']['median'])} (the process "
                        f"{seconds(by_process['call']['median'])}; after it returned "
                        f"{seconds(by_process['after_return']['median'])})",
                        target="reported",
                    )
                )
            latency = pause["latency"]
            table.append(
                _row(
                    f"3. Pause: nodes started after pause returned (of {pause['runs']} runs)",
                    f"{pause['nodes_started_after_pause']}; paused in median "
                    f"{seconds(latency.get('median'))}, max {seconds(latency.get('max'))}",
                    target="0",
                    met=pause["nodes_started_after_pause"] == 0 and pause["paused"] > 0,
                )
            )
    for db, name in names.items():
        result = results.get(db, {}).get("follow")
        if result is None:
            continue
        title = f"3. Run COMPLETED → `pr watch` printed it, {name}"
        if (bad := _failed(title, result)) is not None:
            table.append(bad)
            continue
        latency = result["completed_to_printed"]
        primary = db == "postgresql"
        how = "notified" if result["notified"] else "polling every 0.2 s"
        table.append(
            _row(
                f"{title} ({how}, of {latency['n']})",
                f"median {seconds(latency['median'])}, max {seconds(latency['max'])}",
                target="median ≤ 30 ms" if primary else "reported",
                met=latency["median"] <= 0.03 if primary else None,
            )
        )
    for db, name in names.items():
        result = results.get(db, {}).get("cli")
        if result is None:
            continue
        if (bad := _failed(f"4. CLI latency ({name})", result)) is not None:
            table.append(bad)
            continue
        floor = f"python -c pass {seconds(result['python']['median'])}"
        for verb, label, target in (
            ("status", "pr status <id>", True),
            ("pause", "pr pause <id>", True),
            ("help", "--help", False),
        ):
            median = result[verb]["median"]
            table.append(
                _row(
                    f"4. `orchestrator {label}` process, {name} (median of {result[verb]['n']})",
                    seconds(median),
                    floor,
                    target="≤ 0.3 s" if target and db == "postgresql" else "reported",
                    met=median <= 0.3 if target and db == "postgresql" else None,
                )
            )
        pair = result.get("pause_help")
        if pair:
            table.append(
                _row(
                    f"4. `orchestrator pr pause --help` vs `clarifai pr pause --help`, {name} "
                    f"(paired, median of {pair['ours']['n']})",
                    seconds(pair["ours"]["median"]),
                    f"clarifai {seconds(pair['clarifai']['median'])}",
                    f"{pair['ratio']:.2f}x",
                    "≤ 1.0x" if db == "postgresql" else "reported",
                    pair["ratio"] <= 1.0 if db == "postgresql" else None,
                )
            )
    for db, name in names.items():
        result = results.get(db, {}).get("scale")
        if result is None:
            continue
        if (bad := _failed(f"5. Records ({name})", result)) is not None:
            table.append(bad)
            continue
        if "list" in result:
            runs = f"{result['seed']['runs']:,} runs"
            for key, label, target in (
                ("list", "`pr list` first page", True),
                ("list_failed", "`pr list --status FAILED`", False),
                ("status", "`pr status <id>`", True),
                ("status_json", "`pr status <id> --json`", False),
            ):
                item = result[key]
                table.append(
                    _row(
                        f"5. {label}, {runs} (in-process, median)",
                        f"{seconds(item['median'])}, {plural(item['queries'], 'query')}",
                        target="< 0.3 s" if target else "reported",
                        met=item["median"] < 0.3 if target else None,
                    )
                )
            table.append(
                _row(
                    f"5. `orchestrator pr list` process, {runs}",
                    seconds(result["list_process"]["median"]),
                    target="reported",
                )
            )
        boundary = result["boundary"]
        primary = db == "postgresql"
        table.append(
            _row(
                f"5. Queries per node boundary, {name}",
                f"{boundary['per_node_boundary']:g} ({boundary['per_node_statements']:g} "
                "besides BEGIN/COMMIT)",
                target="≤ 4" if primary else "reported",
                met=boundary["per_node_boundary"] <= 4 if primary else None,
            )
        )
    for db in names:
        if "error" in results.get(db, {}):
            table.append({**_row(f"{names[db]} phases", results[db]["error"]), "met": "ERROR"})
    return table


def markdown(table: list[dict[str, str]]) -> str:
    headers = ["Measurement", "Ours", "Baseline", "Ratio", "Target", "Met?"]
    keys = ["measurement", "ours", "baseline", "ratio", "target", "met"]
    widths = [
        max([len(h)] + [len(r[k]) for r in table]) for h, k in zip(headers, keys, strict=True)
    ]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for row in table:
        cells = [row[k].ljust(w) for k, w in zip(keys, widths, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def describe(info: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"- CPU: {info['cpus']} cores, {info['cpu_model']}",
            f"- Memory: {info['memory_gb']} GB",
            f"- OS: {info['os']}",
            f"- Python {info['python']}, Django {info['django']}, Celery {info['celery']}, "
            f"kombu {info['kombu']}, redis-py {info['redis_py']}, psycopg {info['psycopg']}",
            f"- PostgreSQL {info.get('postgresql', '?')}, Redis {info.get('redis', '?')}",
            f"- Load average (1, 5, 15 min): before {info.get('load_before')}, "
            f"after {info.get('load_after')}",
        ]
    )


# --- the command --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Terminated like interrupted: the finally below still stops everything started here.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="orchestrator-bench-"))
    redis = RedisServer(workdir)
    postgres = PostgresDatabase(args.postgres, args.postgres_db)
    info = machine()
    results: dict[str, Any] = {}
    created = False
    try:
        redis.start()
        info["redis"] = redis.version()
        info["postgresql"] = postgres.version()
        info["load_before"] = load()
        print(describe(info), flush=True)
        postgres.create()
        created = True
        results["postgresql"] = run_phases(
            "postgresql", postgres.url, redis.url, args.phases, args, workdir, args.counts
        )
        sqlite_phases = [p for p in args.phases if p in SQLITE_PHASES]
        if sqlite_phases and not args.no_sqlite:
            # The SQLite figures need no seeding: the 10,000-run scale is PostgreSQL's.
            counts = {**args.counts, "scale_runs": 0}
            url = f"sqlite:///{workdir / 'bench.sqlite3'}"
            results["sqlite"] = run_phases(
                "sqlite", url, redis.url, sqlite_phases, args, workdir, counts
            )
        info["load_after"] = load()
    finally:
        redis.stop()
        leftovers = stop_leftover_processes(workdir)
        if leftovers:
            print(f"stopped leftover processes: {leftovers}", file=sys.stderr)
        if created:
            postgres.drop()
        if args.keep:
            print(f"scratch directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    try:
        table = rows(results, args.counts)
    except Exception as exc:  # a figure missing from a result: keep the raw results anyway
        table = [{**_row("building the table", f"{type(exc).__name__}: {exc}"), "met": "ERROR"}]
    text = markdown(table)
    print()
    print(describe(info))
    print()
    print(text)
    report = {
        "generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "quick": args.quick,
        "counts": args.counts,
        "phases": args.phases,
        "elapsed_s": round(time.monotonic() - started, 1),
        "machine": info,
        "table": table,
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nResults written to {args.json} ({report['elapsed_s']:.0f} s)")
    return 1 if any(row["met"] == "ERROR" for row in table) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        sys.exit(f"bench: {exc}")
