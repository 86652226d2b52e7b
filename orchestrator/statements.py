"""The engine's hot-path SQL: claiming a node, and recording a node's end together with its
successors' arrivals.

On PostgreSQL each is one statement (data-modifying CTEs), so a node costs two round trips;
elsewhere (SQLite) each is two statements, the second pair inside the caller's transaction.
Every statement is a compare-and-set: it changes a row only from the states the engine allows.
Joins are counted in the successor's own row (:func:`orchestrator.graph.arrive`, in SQL): the
statement that records a predecessor's end decrements the join's ``awaiting``, and the one that
takes it to zero makes it QUEUED; row locks (PostgreSQL) or the write lock (SQLite) order two
predecessors ending at once, so exactly one of them readies the join.

On PostgreSQL a node costs one durable commit: the completion's. The claim commits without
waiting for the WAL flush (see :data:`UNFLUSHED`) and announces the run's change to followers
(:mod:`orchestrator.changes`) in the same statement. Both are prepared statements.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from types import SimpleNamespace
from typing import Any

from django.db import connection, transaction

from orchestrator.changes import ANNOUNCE
from orchestrator.models import NodeRun, PipelineRun
from orchestrator.state import Action, NodeStatus, RunStatus, advancing, sources_for, transition

RUN = PipelineRun._meta.db_table
NODE = NodeRun._meta.db_table


def _statuses(statuses: list[RunStatus]) -> str:
    return ", ".join(f"'{s.value}'" for s in statuses) or "NULL"


_CLAIM_RUN = f"""
UPDATE {RUN} SET status = '{{target}}', started_at = COALESCE(started_at, %(now)s)
WHERE id = %(run)s AND status IN ({{sources}})
"""
#: Claiming a stale RUNNING node counts one more lost worker; a retry starts counting afresh.
_CLAIM_NODE = f"""
UPDATE {NODE} SET
    status = 'RUNNING', attempt = attempt + 1, task_id = %(task)s, worker = %(worker)s,
    holder = %(holder)s, heartbeat = %(now)s, started_at = %(now)s, finished_at = NULL,
    error = '',
    losses = CASE status WHEN 'RUNNING' THEN losses + 1 WHEN 'RETRYING' THEN 0 ELSE losses END
WHERE run_id = %(run)s AND node_id = %(node)s
  AND (status IN ('QUEUED', 'RETRYING') OR (status = 'RUNNING' AND heartbeat < %(stale)s))
  {{also}}
RETURNING id, attempt, reached, losses
"""
#: On PostgreSQL a queued run is started with an UPDATE, and a running one is only share-locked:
#: claims of parallel branches do not wait on each other, while a pause or cancel (an UPDATE)
#: still waits for a claim in flight, or is seen by it.
_CLAIM_PG = f"""
WITH started AS (
    UPDATE {RUN} SET status = '{{target}}', started_at = COALESCE(started_at, %(now)s)
    WHERE id = %(run)s AND status IN ({{starting}}) RETURNING id
),
held AS (SELECT id FROM {RUN} WHERE id = %(run)s AND status IN ({{holding}}) FOR SHARE),
claimed_run AS (SELECT id FROM started UNION ALL SELECT id FROM held),
claimed_node AS ({{node}})
SELECT (SELECT count(*) FROM claimed_run), claimed_node.id, claimed_node.attempt,
       claimed_node.reached, claimed_node.losses
FROM (SELECT 1) AS one LEFT JOIN claimed_node ON true
"""

_END_NODE = f"""
UPDATE {NODE} SET status = %(status)s, output = %(output)s{{cast}}, error = %(error)s,
    reason = %(reason)s, finished_at = %(now)s, duration_ms = %(duration)s
WHERE id = %(id)s AND status = 'RUNNING' AND attempt = %(attempt)s
"""
#: A successor's arrival, as :func:`orchestrator.graph.arrive` says: inserted WAITING (QUEUED if
#: this was its only predecessor), else one fewer awaited; QUEUED once none is left. Handed out
#: at once (``dispatched_at`` set) only when the run lets nodes start now.
_ARRIVE = f"""
INSERT INTO {NODE} (run_id, node_id, node_type, position, status, attempt, task_id, worker,
                    holder, losses, error, reason, awaiting, reached, dispatched_at)
SELECT %(run)s, s.node_id, s.node_type, s.position,
       CASE WHEN s.awaiting <= 1 THEN 'QUEUED' ELSE 'WAITING' END, 0, '', '', '', 0, '', '',
       s.awaiting - 1, %(live)s,
       CASE WHEN {{run_status}} IN ({{dispatching}}) THEN %(now)s END
FROM {{successors}}
WHERE {{ended}} {{run_status}} IN ({{advancing}})
ON CONFLICT (run_id, node_id) DO UPDATE SET
    awaiting = {NODE}.awaiting - 1,
    reached = {NODE}.reached + excluded.reached,
    status = CASE WHEN {NODE}.awaiting <= 1 THEN 'QUEUED' ELSE 'WAITING' END,
    dispatched_at = excluded.dispatched_at
WHERE {NODE}.status = 'WAITING'
RETURNING node_id, status, dispatched_at IS NOT NULL{{returning}}
"""
_END_PG = """
WITH ended AS ({end} RETURNING id),
r AS (SELECT status FROM {run} WHERE id = %(run)s),
arrived AS ({arrive})
SELECT (SELECT count(*) FROM ended), (SELECT status FROM r), arrived.*
FROM (SELECT 1) AS one LEFT JOIN arrived ON true
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


def one_statement_end() -> bool:
    """Whether :func:`end_node` is atomic without a surrounding transaction."""
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


def _fetchall(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


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


def _fetch_prepared(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """PostgreSQL: run ``sql`` as a prepared statement, so that a connection parses and plans
    it once rather than on every node (planning the claim costs more than running it)."""
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:  # Django's default turns preparing off altogether;
        raw.prepare_threshold = ONLY_WHEN_ASKED  # Django's own cursors never prepare anyway
    with connection._prepare_cursor(_preparing_cursor()(raw)) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


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


@cache
def _claim_sql(start: Action, postgres: bool) -> tuple[str, str]:
    sources = sources_for(start)
    target = transition(sources[-1], start)
    if postgres:
        # Statuses the claim changes (a queued run starts), and those it keeps (share-locked).
        starting = [s for s in sources if s != target]
        node = _CLAIM_NODE.format(also="AND EXISTS (SELECT 1 FROM claimed_run)")
        return _CLAIM_PG.format(
            target=target,
            starting=_statuses(starting),
            holding=_statuses([s for s in sources if s not in starting]),
            node=node,
        ), ""
    return _CLAIM_RUN.format(target=target, sources=_statuses(sources)), _CLAIM_NODE.format(also="")


@cache
def claim_statement(start: Action, flush: bool) -> str:
    """PostgreSQL's claim for ``start`` as one statement that announces the run's change and,
    without ``flush``, commits without waiting for the WAL flush (see :data:`UNFLUSHED`)."""
    return _one_statement(_claim_sql(start, True)[0], flush=flush)


@dataclass(frozen=True)
class Claimed:
    """A claimed node run: its id, this attempt, how many predecessors reached it, and how many
    workers were lost while running this attempt."""

    node_run_id: int
    attempt: int
    reached: int
    losses: int


_PLAN = f"""
SELECT config, pipeline_name, payload, source, environment, trace_id FROM {RUN}
WHERE id = %(run)s
"""
_PLAN_FIELDS = ("config", "pipeline_name", "payload", "source", "environment", "trace_id")


def plan_row(run_id: int) -> dict[str, Any] | None:
    """What executing the run's nodes needs from its row (a worker reads it once per run): as
    a prepared statement on PostgreSQL, since building the ORM query cost more than the read."""
    params = {"run": run_id}
    rows = _fetch_prepared(_PLAN, params) if _postgres() else _fetchall(_PLAN, params)
    if not rows:
        return None
    fields = dict(zip(_PLAN_FIELDS, rows[0], strict=True))
    for name in ("config", "payload"):  # JSON arrives as text from either database
        if isinstance(fields[name], str):
            fields[name] = json.loads(fields[name])
    fields["trace_id"] = str(uuid.UUID(str(fields["trace_id"])))
    return fields


def claim(
    run_id: int,
    node_id: str,
    start: Action,
    task_id: str,
    worker: str,
    holder: str,
    now: datetime,
    stale: datetime,
) -> tuple[bool, Claimed | None]:
    """Claim the run (its status must let a node start with ``start``) and then the node (it
    must be ready, or running with a stale heartbeat); returns whether the run was claimed, and
    the node when it was too."""
    adapt = connection.ops.adapt_datetimefield_value
    params = {
        "run": run_id,
        "node": node_id,
        "task": task_id,
        "worker": worker,
        "holder": holder,
        "now": adapt(now),
        "stale": adapt(stale),
    }
    first, second = _claim_sql(start, _postgres())
    if _postgres():
        # Inside a caller's transaction the caller's commit decides: nothing is relaxed.
        flush = connection.in_atomic_block
        row = _fetch_prepared(claim_statement(start, flush), params)[0]
        return bool(row[0]), Claimed(*row[1:5]) if row[1] is not None else None
    if not _rowcount(first, params):
        return False, None
    rows = _fetchall(second, params)
    return True, Claimed(*rows[0]) if rows else None


@dataclass(frozen=True)
class Ended:
    """What recording a node's end did: whether it was recorded (the claim still held), the
    run's status when it was read (None when not read), and each successor it reached: (node id,
    its status now, whether it was handed out)."""

    recorded: bool
    run_status: str | None
    arrivals: list[tuple[str, str, bool]]


@cache
def _end_sql(start: Action, postgres: bool, successors: int) -> tuple[str, str]:
    moving, dispatching = advancing(start)
    if postgres:
        arrive = _ARRIVE.format(
            run_status="r.status",
            dispatching=_statuses(dispatching),
            advancing=_statuses(moving),
            successors="unnest(%(ids)s::text[], %(types)s::text[], %(positions)s::int[], "
            "%(preds)s::int[]) AS s(node_id, node_type, position, awaiting), r",
            ended="EXISTS (SELECT 1 FROM ended) AND",
            returning="",
        )
        end = _END_NODE.format(cast="::jsonb")
        return _END_PG.format(end=end, run=RUN, arrive=arrive), ""
    status = f"(SELECT status FROM {RUN} WHERE id = %(run)s)"
    rows = ", ".join(
        f"(%(id{i})s, %(type{i})s, %(position{i})s, %(preds{i})s)" for i in range(successors)
    )
    arrive = _ARRIVE.format(
        run_status=status,
        dispatching=_statuses(dispatching),
        advancing=_statuses(moving),
        # SQLite names the columns of a VALUES list column1, column2, ...
        successors=f"(SELECT column1 AS node_id, column2 AS node_type, column3 AS position, "
        f"column4 AS awaiting FROM (VALUES {rows})) AS s",
        ended="",
        returning=f", {status}",
    )
    return _END_NODE.format(cast=""), arrive


def end_node(
    node_run_id: int,
    attempt: int,
    status: NodeStatus,
    *,
    run_id: int,
    start: Action,
    successors: list[tuple[str, str, int, int]],
    now: datetime,
    output: Any = None,
    error: str = "",
    reason: str = "",
    duration_ms: float | None = None,
) -> Ended:
    """Record the RUNNING node run as ended with ``status`` and, if the run still moves its graph
    on, each successor's arrival; ``successors`` are (id, type, position, predecessors).
    Outside PostgreSQL the caller must hold a transaction."""
    from orchestrator.graph import is_live

    params: dict[str, Any] = {
        "id": node_run_id,
        "attempt": attempt,
        "status": str(status),
        "output": json.dumps(output) if status == NodeStatus.COMPLETED else None,
        "error": error,
        "reason": reason,
        "duration": duration_ms,
        "now": connection.ops.adapt_datetimefield_value(now),
        "run": run_id,
        "live": 1 if is_live(status) else 0,
    }
    if _postgres():
        params.update(
            ids=[s[0] for s in successors],
            types=[s[1] for s in successors],
            positions=[s[2] for s in successors],
            preds=[s[3] for s in successors],
        )
        # Announced by the next node's claim, right after: a NOTIFY here would hold
        # PostgreSQL's cluster-wide notification lock across this commit's WAL flush, one
        # completion at a time. A run that does not advance is announced by its run event.
        sql, _ = _end_sql(start, True, 0)
        rows = _fetch_prepared(sql, params)
        arrivals = [(r[2], r[3], bool(r[4])) for r in rows if r[2] is not None]
        return Ended(bool(rows[0][0]), rows[0][1], arrivals)
    end, arrive = _end_sql(start, False, len(successors))
    if not _rowcount(end, params):
        return Ended(False, None, [])
    if not successors:
        return Ended(True, None, [])
    for i, (node_id, node_type, position, preds) in enumerate(successors):
        params.update(
            {f"id{i}": node_id, f"type{i}": node_type, f"position{i}": position, f"preds{i}": preds}
        )
    rows = _fetchall(arrive, params)
    return Ended(True, rows[0][3] if rows else None, [(r[0], r[1], bool(r[2])) for r in rows])
