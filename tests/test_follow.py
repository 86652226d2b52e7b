"""Following a run: on PostgreSQL followers are woken by the changes committed to their run
(LISTEN/NOTIFY), with no polling; elsewhere they poll."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from commands.progress import Progress, follow
from orchestrator import changes, engine, events
from orchestrator.models import RunEvent
from orchestrator.state import RunStatus
from tests.conftest import wait_for
from tests.test_engine import chain, waits

pytestmark = pytest.mark.django_db(transaction=True)
postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="LISTEN/NOTIFY is PostgreSQL's"
)


def queued(nodes: int = 1, seconds: float = 0) -> Any:
    return engine.create_run(chain(*waits(nodes, seconds)), payload={})


@postgres_only
def test_a_follower_is_woken_by_a_committed_change_to_its_run_only():
    run, other = queued(), queued()
    with changes.Follower(run.pk) as follower:
        assert follower.listening
        events.record(other.pk, RunEvent.PAUSE_REQUESTED)
        assert follower.wait(0.2) is False
        with pytest.raises(RuntimeError), transaction.atomic():
            events.record(run.pk, RunEvent.PAUSE_REQUESTED)
            raise RuntimeError("rolled back: announces nothing")
        assert follower.wait(0.2) is False
        events.record(run.pk, RunEvent.PAUSE_REQUESTED)
        assert follower.wait(30) is True


@postgres_only
def test_following_a_run_on_postgresql_needs_no_polling(monkeypatch: pytest.MonkeyPatch):
    # Were the follower not woken by the run's changes, it would sit out this interval at
    # every step and the join below would give up first.
    monkeypatch.setattr(changes, "SAFETY_INTERVAL", 120)
    run = queued(3, seconds=0.3)
    out = io.StringIO()
    followed: dict[str, Any] = {}

    def follow_it() -> None:
        try:
            with CaptureQueriesContext(connection) as reads:
                followed["run"] = follow(run.pk, Progress(out))
            followed["reads"] = sum('FROM "orchestrator_pipelinerun"' in q["sql"] for q in reads)
        finally:
            connection.close()

    def listening() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query = %s",
                [f'LISTEN "{changes.channel(run.pk)}"'],
            )
            return cursor.fetchone()[0] == 1

    thread = threading.Thread(target=follow_it)
    thread.start()
    wait_for(listening)
    engine.dispatch_run(run)  # inline, in this thread: the follower sees it from its own
    thread.join(60)
    assert not thread.is_alive(), out.getvalue()
    assert followed["run"].status == RunStatus.COMPLETED
    # Woken as each node started (and more), not only when the run ended.
    assert followed["reads"] >= 1 + 3
    finished = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert [line.split(" in ")[0] for line in finished if "completed" in line] == [
        "✓ w0 completed",
        "✓ w1 completed",
        "✓ w2 completed",
    ]


@postgres_only
def test_a_follower_whose_listening_connection_dies_polls_then_listens_again(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(changes, "SAFETY_INTERVAL", 0.2)  # how soon it tries listening again
    run = queued()
    with changes.Follower(run.pk, interval=0.01) as follower:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [follower._listener.info.backend_pid])
        assert follower.wait(30) is False  # the broken connection is not an error
        assert not follower.listening
        wait_for(lambda: follower.wait(0.05) is not None and follower.listening)
        events.record(run.pk, RunEvent.PAUSE_REQUESTED)
        assert follower.wait(30) is True


def test_without_postgresql_a_follower_polls():
    if changes.supported():
        pytest.skip("PostgreSQL announces changes")
    with changes.Follower(queued().pk, interval=0.01) as follower:
        assert not follower.listening
        assert follower.wait() is False
