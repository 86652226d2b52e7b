"""Durability per node on PostgreSQL: one synchronous commit per node boundary (the completion),
the claim and heartbeats committed without waiting for the WAL flush."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestrator import statements
from orchestrator.state import Action
from tests.test_engine import chain, run_inline, waits

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="synchronous_commit is PostgreSQL's"
    ),
]

#: Statements that give a transaction a commit record to flush (NOTIFY assigns one too).
WRITES = (
    "INSERT",
    "UPDATE",
    "DELETE",
    "WITH",
    "SELECT PG_NOTIFY",
    f"SELECT {statements.UNFLUSHED}".upper(),
)


def commits(sqls: list[str]) -> dict[str, int]:
    """Write transactions among statements sent in autocommit mode, by whether their commit
    waits for the WAL flush: a statement outside BEGIN/COMMIT is a transaction of its own, and
    setting ``synchronous_commit`` off for the transaction (:data:`statements.UNFLUSHED`)
    relaxes it."""
    counted = {"synchronous": 0, "unflushed": 0}
    open_tx: list[str] | None = None

    def close(transaction: list[str]) -> None:
        if any(sql.lstrip().upper().startswith(WRITES) for sql in transaction):
            relaxed = any(statements.UNFLUSHED in sql for sql in transaction)
            counted["unflushed" if relaxed else "synchronous"] += 1

    for sql in sqls:
        head = sql.split(None, 1)[0].upper()
        if head == "BEGIN":
            open_tx = []
        elif head == "COMMIT":
            assert open_tx is not None
            close(open_tx)
            open_tx = None
        elif head in ("SAVEPOINT", "RELEASE"):
            continue
        elif open_tx is not None:
            open_tx.append(sql)
        else:
            close([sql])
    assert open_tx is None, "a transaction was left open"
    return counted


def _commits_of_run(nodes: int) -> dict[str, int]:
    definition = chain(*waits(nodes))
    with CaptureQueriesContext(connection) as captured:
        run = run_inline(definition)
    assert run.status == "COMPLETED"
    return commits([q["sql"] for q in captured.captured_queries])


def test_a_node_boundary_costs_one_synchronous_commit_and_one_unflushed():
    run_inline(chain(*waits(1)))  # warm: plans, node registry
    ten, twenty = _commits_of_run(10), _commits_of_run(20)
    per_node = {kind: (twenty[kind] - ten[kind]) / 10 for kind in ten}
    assert per_node == {"synchronous": 1, "unflushed": 1}
    # The whole run: creating it, every node's end and, once the last has ended, the run's
    # completion are synchronous; every claim is not.
    assert ten == {"synchronous": 1 + 10 + 1, "unflushed": 10}


def _setting_in(cte: str, *, flush: bool) -> tuple:
    """synchronous_commit as seen inside a statement built like the hot path's, once ``cte``
    (one of those it adds) has been evaluated."""
    probe = f"WITH probe AS (SELECT 1)\nSELECT current_setting('synchronous_commit') FROM {cte}"
    return statements._fetch_prepared(statements._one_statement(probe, flush=flush), {"run": 1})[0]


def test_the_claim_commits_unflushed_and_the_completion_synchronously():
    # The hot-path statements are built the same way: their own transaction, relaxed or not.
    claim = _setting_in("relaxed", flush=False)
    completion = _setting_in("announced", flush=True)
    # The setting ends with the claim's transaction: the session stays synchronous.
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        session = cursor.fetchone()
    assert (claim, completion, session) == (("off",), ("on",), ("on",))
    assert statements.UNFLUSHED in statements.claim_statement(Action.START, False)
    assert statements.UNFLUSHED not in statements.claim_statement(Action.START, True)
    assert statements.UNFLUSHED not in statements._end_sql(Action.START, True, 0)[0]


def test_heartbeats_commit_unflushed_and_leave_the_session_synchronous():
    with statements.unflushed(), connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        inside = cursor.fetchone()
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        after = cursor.fetchone()
    assert (inside, after) == (("off",), ("on",))


def test_inside_a_callers_transaction_the_claim_relaxes_nothing():
    from django.db import transaction

    run = run_inline(chain(*waits(1)))
    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        statements.claim(
            run.pk, "w0", Action.START, "", "here", "holder", run.created_at, run.created_at
        )
    assert not any(statements.UNFLUSHED in q["sql"] for q in captured.captured_queries)


def test_the_claim_and_the_completion_are_parsed_and_planned_once_per_connection():
    run_inline(chain(*waits(10)))
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements")
        prepared = cursor.fetchall()
    executions = {
        kind: sum(count for statement, count in prepared if marker in statement)
        for kind, marker in (("claim", "claimed_node AS"), ("completion", "arrived AS"))
    }
    # Every node's end, the last one's included, is the one prepared statement.
    assert executions == {"claim": 10, "completion": 10}
