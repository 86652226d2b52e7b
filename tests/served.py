"""``orchestrator serve`` as a subprocess on a free loopback port, and a small HTTP client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.contrib.auth.hashers import PBKDF2PasswordHasher


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


class Server:
    """A served instance: start() waits until it answers; stop() ends it by its process id."""

    def __init__(self, repo: Path, env: dict[str, str], log: Path, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self._args = [sys.executable, "-c", "from commands.cli import main; main()", "serve"]
        self._args += ["--port", str(port)]
        self._repo, self._env = repo, env
        self.process: subprocess.Popen | None = None

    def start(self) -> Server:
        handle = self.log.open("w")
        self.process = subprocess.Popen(
            self._args,
            cwd=str(self._repo),
            env=self._env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited:\n{self.output()}")
            try:
                urllib.request.urlopen(f"{self.url}/login/", timeout=2).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"serve did not answer:\n{self.output()}")

    @property
    def worker_pids(self) -> set[str]:
        """The serving (gunicorn worker) processes; with no broker, the one that executes runs."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return set(children.read_text().split())

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Answer:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                raw, status, got = answer.read(), answer.status, dict(answer.headers)
        except urllib.error.HTTPError as exc:
            raw, status, got = exc.read(), exc.code, dict(exc.headers)
        text = raw.decode(errors="replace")
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = text
        return Answer(status, parsed, got)


def password_hash(password: str) -> str:
    """A hash the served instance (default hashers) can check; the tests' own use MD5."""
    return PBKDF2PasswordHasher().encode(password, "orchestratorsalt", iterations=1000)
