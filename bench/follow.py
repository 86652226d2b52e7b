"""How soon a follower shows a run's end: from the commit of COMPLETED to ``orchestrator pr watch``
printing it. On PostgreSQL the follower is woken by the run's notification; on SQLite it polls."""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any

from django.db import connection

from bench.measure import Context, line, orchestrator_command, summary, wait_until
from bench.services import BenchError
from orchestrator import changes, engine
from orchestrator.models import RunEvent
from orchestrator.state import RunStatus

#: What ``pr watch`` prints when the run has completed.
COMPLETED_LINE = "✓ Pipeline completed successfully"


class Lines:
    """Read a process's stdout in a thread, each line with the wall-clock time it arrived."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.seen: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for text in process.stdout:
            self.seen.append((time.time(), text.rstrip("\n")))

    def arrived(self, starting: str) -> float | None:
        return next((at for at, text in self.seen if text.startswith(starting)), None)


class Notifications:
    """Listen on a run's channel in a thread (PostgreSQL), noting when each notification came."""

    def __init__(self, run_id: int) -> None:
        self.arrivals: list[float] = []
        self._stop = threading.Event()
        self._listener = changes._listen(changes.channel(run_id))
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            for _ in self._listener.notifies(timeout=0.05):
                self.arrivals.append(time.time())

    def close(self) -> float | None:
        """Stop; the arrival of the last notification (the run's end), if any came."""
        self._stop.set()
        self._thread.join(5)
        self._listener.close()
        return self.arrivals[-1] if self.arrivals else None


def _listening(run_id: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query = %s",
            [f'LISTEN "{changes.channel(run_id)}"'],
        )
        return bool(cursor.fetchone()[0])


def _once(ctx: Context, nodes: int) -> dict[str, float]:
    run = engine.create_run(line(nodes), payload={}, source="bench")  # QUEUED: not yet sent
    notifications = Notifications(run.pk) if changes.supported() else None
    watcher = subprocess.Popen(
        [*orchestrator_command(), "pr", "watch", str(run.pk)],
        env=ctx.env(),
        cwd=ctx.workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        lines = Lines(watcher)
        wait_until(lambda: lines.arrived("["), what="pr watch to start")
        if changes.supported():
            wait_until(lambda: _listening(run.pk), what="pr watch to listen")
        else:
            time.sleep(0.3)  # past its first read
        engine.dispatch_run(run)
        printed = wait_until(lambda: lines.arrived(COMPLETED_LINE), what="pr watch to end")
        watcher.wait(30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(10)
        notified = notifications.close() if notifications else None
    completed = RunEvent.objects.get(run_id=run.pk, kind=RunEvent.COMPLETED)
    if completed.run.status != RunStatus.COMPLETED:
        raise BenchError(f"run {run.pk} ended {completed.run.status}")
    # The event's time is taken just before its transaction commits: a slight overestimate.
    at = completed.at.timestamp()
    sample = {"completed_to_printed": printed - at}
    if notified is not None:  # where the time goes: the commit and its delivery, then the follower
        sample.update(completed_to_notified=notified - at, notified_to_printed=printed - notified)
    return sample


def follow_latency(ctx: Context) -> dict[str, Any]:
    """Runs of 3 noop nodes on the serial worker (started by the caller), each followed by its
    own ``pr watch`` process."""
    runs = ctx.counts["signal_runs"]
    samples = [_once(ctx, 3) for _ in range(ctx.counts["warmup"] + runs)][ctx.counts["warmup"] :]
    result: dict[str, Any] = {"notified": changes.supported()}
    for key in samples[0]:
        result[key] = summary(sample[key] for sample in samples)
    ctx.say(
        "follow: "
        + ", ".join(f"{key} median {result[key]['median'] * 1000:.1f} ms" for key in samples[0])
    )
    return result
