"""The engine's hot-path SQL: claiming a node and recording a completed one.

On PostgreSQL each is one statement (data-modifying CTEs), so a node costs two round trips;
elsewhere (SQLite) each is two statements, the second pair inside the caller's transaction.
Every statement is a compare-and-set: it changes a row only from the states the engine allows.

On PostgreSQL a node costs one durable commit: the completion's. The claim commits without
waiting for the WAL flush (see :data:`UNFLUSHED`) and announces the run's change to followers
(:mod:`orchestrator.changes`) in the same statement. Both are prepared statements.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cache
from types import SimpleNamespace
from typing import Any

from django.db import connection, transaction

from orchestrator.changes import ANNOUNCE
from orchestrator.models import NodeRun, PipelineRun
from orchestrator.state import Action, RunStatus, sources_for

RUN = PipelineRun._meta.db_table
NODE = NodeRun._meta.db_table
STARTABLE = ", ".join(f"'{s.value}'" for s in sources_for(Action.START))

# Claiming a stale RUNNING node counts one more lost worker; a retry starts counting afresh.
_UPSERT_NODE = f"""
INSERT INTO {NODE}
    (run_id, node_id, node_type, position, status, attempt, task_id, worker, holder, losses,
     heartbeat, started_at, error)
{{source}}
ON CONFLICT (run_id, node_id) DO UPDATE SET
    status = 'RUNNING', attempt = {NODE}.attempt + 1, task_id = excluded.task_id,
    worker = excluded.worker, holder = excluded.holder, heartbeat = excluded.heartbeat,
    started_at = excluded.started_at, finished_at = NULL, error = '',
    losses = CASE {NODE}.status WHEN 'RUNNING' THEN {NODE}.losses + 1
                                WHEN 'RETRYING' THEN 0 ELSE {NODE}.losses END
WHERE {NODE}.status IN ('QUEUED', 'RETRYING')
   OR ({NODE}.status = 'RUNNING' AND {NODE}.heartbeat < %(stale)s)
RETURNING id, attempt, losses
"""
_NODE_VALUES = (
    "%(run)s, %(node)s, %(type)s, %(position)s, 'RUNNING', 1, %(task)s, %(worker)s, "
    "%(holder)s, 0, %(now)s, %(now)s, ''"
)
_CLAIM_RUN = f"""
UPDATE {RUN} SET status = 'RUNNING', started_at = COALESCE(started_at, %(now)s)
WHERE id = %(run)s AND status IN ({STARTABLE}) AND current_node = %(node)s
"""
_CLAIM_PG = f"""
WITH claimed_run AS ({_CLAIM_RUN} RETURNING id),
claimed_node AS ({_UPSERT_NODE.format(source=f"SELECT {_NODE_VALUES} FROM claimed_run")})
SELECT (SELECT count(*) FROM claimed_run), claimed_node.id, claimed_node.attempt,
    claimed_node.losses
FROM (SELECT 1) AS one LEFT JOIN claimed_node ON true
"""
_COMPLETE_NODE = f"""
UPDATE {NODE} SET status = 'COMPLETED', output = %(output)s{{cast}}, finished_at = %(now)s,
    duration_ms = %(duration)s
WHERE id = %(id)s AND status = 'RUNNING' AND attempt = %(attempt)s
"""
_ADVANCE_RUN = f"""
UPDATE {RUN} SET current_node = %(next)s, dispatched_at = %(now)s
WHERE id = %(run)s AND status = '{RunStatus.RUNNING.value}'
"""
_COMPLETE_PG = f"""
WITH node AS ({_COMPLETE_NODE.format(cast="::jsonb")} RETURNING id),
moved AS ({_ADVANCE_RUN} AND EXISTS (SELECT 1 FROM node) RETURNING id)
SELECT (SELECT count(*) FROM node), (SELECT count(*) FROM moved)
"""

#: Why the claim need not wait for the disk. PostgreSQL writes and flushes its WAL in order, so
#: the completion's synchronous commit, which comes after the claim and before the next node's
#: message is published, makes the claim durable too. Until then a database crash may forget
#: the claim, and only the claim: the run still awaits this node, the message is still unacked
#: (or recovery re-dispatches it), and the node runs again, which the at-least-once rule
#: already allows. Nothing outside the database acts on the claim alone except the node itself.
#: Any other session's synchronous commit made after the claim (a pause, say) flushes it too.
#: Set inside the claim's own statement (which is its own transaction), it costs no round trip;
#: ``true`` makes it local to that transaction, and PostgreSQL applies the setting in force
#: when a transaction commits.
UNFLUSHED = "set_config('synchronous_commit', 'off', true)"


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def one_statement_completion() -> bool:
    """Whether :func:`complete_and_advance` is atomic without a surrounding transaction."""
    return _postgres()


@contextmanager
def unflushed() -> Iterator[None]:
    """A transaction whose commit does not wait for the WAL flush on PostgreSQL, for writes
    whose loss in a database crash the at-least-once rules cover (see :data:`UNFLUSHED`)."""
    with transaction.atomic():
        if _postgres():
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT {UNFLUSHED}")
        yield


def _fetch(sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _one_statement(sql: str, *, flush: bool) -> str:
    """``sql`` (``WITH ... SELECT ...``) as one statement that also announces a change to run
    ``%(run)s`` to its followers, and, without ``flush``, commits without waiting for the WAL
    flush. The final SELECT's rows are kept: each added CTE yields exactly one row."""
    ctes, select = sql.strip().removeprefix("WITH").rsplit("\nSELECT ", 1)
    added = {"announced": ANNOUNCE} if flush else {"relaxed": UNFLUSHED, "announced": ANNOUNCE}
    heads = "".join(f"{name} AS (SELECT {expr} AS done), " for name, expr in added.items())
    return f"WITH {heads}{ctes.strip()}\nSELECT result.* FROM (SELECT {select}) AS result, " + (
        ", ".join(added)
    )


#: psycopg's count of executions before it prepares a statement on its own: never, in effect.
ONLY_WHEN_ASKED = 2**31 - 1
_CLAIM_PG_UNFLUSHED = _one_statement(_CLAIM_PG, flush=False)
_CLAIM_PG_FLUSHED = _one_statement(_CLAIM_PG, flush=True)


def _fetch_prepared(sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """PostgreSQL: run ``sql`` as a prepared statement, so that a connection parses and plans
    it once rather than on every node (planning the claim costs more than running it)."""
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:  # Django's default turns preparing off altogether;
        raw.prepare_threshold = ONLY_WHEN_ASKED  # Django's own cursors never prepare anyway
    with connection._prepare_cursor(_preparing_cursor()(raw)) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


@cache
def _preparing_cursor() -> type:
    from django.db.backends.postgresql.base import ServerBindingCursor

    class PreparingCursor(ServerBindingCursor):
        """Binds parameters on the server and prepares every statement it executes."""

        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            done = super().execute(query, params, prepare=True)
            # psycopg notes the query it sent only when it does not prepare it, and Django's
            # query log (and the tests that count statements) reads it from there.
            self._query = SimpleNamespace(query=str(query).encode())
            return done

    return PreparingCursor


def _rowcount(sql: str, params: dict[str, Any]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


_PLAN = f"""
SELECT config, pipeline_name, payload, source, environment, trace_id FROM {RUN}
WHERE id = %(run)s
"""
_PLAN_FIELDS = ("config", "pipeline_name", "payload", "source", "environment", "trace_id")


def plan_row(run_id: int) -> dict[str, Any] | None:
    """What executing the run's nodes needs from its row (a worker reads it once per run): as
    a prepared statement on PostgreSQL, since building the ORM query cost more than the read."""
    params = {"run": run_id}
    row = _fetch_prepared(_PLAN, params) if _postgres() else _fetch(_PLAN, params)
    if row is None:
        return None
    fields = dict(zip(_PLAN_FIELDS, row, strict=True))
    for name in ("config", "payload"):  # JSON arrives as text from either database
        if isinstance(fields[name], str):
            fields[name] = json.loads(fields[name])
    fields["trace_id"] = str(uuid.UUID(str(fields["trace_id"])))
    return fields


def claim(
    run_id: int,
    node_id: str,
    node_type: str,
    position: int,
    task_id: str,
    worker: str,
    holder: str,
    now: datetime,
    stale: datetime,
) -> tuple[bool, tuple[int, int, int] | None]:
    """Claim the run (it must await this node) and then the node; returns whether the run was
    claimed, and the node run's (id, attempt, losses) when the node was too."""
    adapt = connection.ops.adapt_datetimefield_value
    params = {
        "run": run_id,
        "node": node_id,
        "type": node_type,
        "position": position,
        "task": task_id,
        "worker": worker,
        "holder": holder,
        "now": adapt(now),
        "stale": adapt(stale),
    }
    if _postgres():
        # Inside a caller's transaction the caller's commit decides: nothing is relaxed.
        flush = connection.in_atomic_block
        row = _fetch_prepared(_CLAIM_PG_FLUSHED if flush else _CLAIM_PG_UNFLUSHED, params)
        assert row is not None
        return bool(row[0]), (row[1], row[2], row[3]) if row[1] is not None else None
    if not _rowcount(_CLAIM_RUN, params):
        return False, None
    node = _fetch(_UPSERT_NODE.format(source=f"VALUES ({_NODE_VALUES})"), params)
    return True, (node[0], node[1], node[2]) if node else None


def complete_and_advance(
    node_run_id: int,
    attempt: int,
    output: Any,
    duration_ms: float | None,
    run_id: int,
    next_id: str,
    now: datetime,
) -> tuple[bool, bool]:
    """Record the node COMPLETED and point the RUNNING run at ``next_id``; returns (recorded,
    advanced). Outside PostgreSQL the caller must hold a transaction."""
    params = {
        "id": node_run_id,
        "attempt": attempt,
        "output": json.dumps(output),
        "duration": duration_ms,
        "now": connection.ops.adapt_datetimefield_value(now),
        "run": run_id,
        "next": next_id,
    }
    if _postgres():
        # Announced by the next node's claim, right after: a NOTIFY here would hold
        # PostgreSQL's cluster-wide notification lock across this commit's WAL flush, one
        # completion at a time. A run that does not advance is announced by its run event.
        row = _fetch_prepared(_COMPLETE_PG, params)
        assert row is not None
        return bool(row[0]), bool(row[1])
    if not _rowcount(_COMPLETE_NODE.format(cast=""), params):
        return False, False
    return True, bool(_rowcount(_ADVANCE_RUN, params))
