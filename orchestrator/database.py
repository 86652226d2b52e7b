"""The database: the embedded default created on first use, and database errors in one line."""

from __future__ import annotations

from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

MIGRATE = "Run 'orchestrator migrate' first."

#: Fragments of driver messages, and what each means for the operator (the first match wins).
_REASONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("connection refused",), "connection refused"),
    (
        ("could not translate host name", "name or service not known", "nodename nor servname"),
        "unknown host",
    ),
    (("timeout expired", "timed out"), "no answer (timeout)"),
    (
        ("password authentication failed", "no password supplied", "authentication failed"),
        "the credentials were refused; check the user and password in DATABASE_URL",
    ),
    (("no pg_hba.conf entry",), "the server refuses this host or user (pg_hba.conf)"),
    (
        (
            "server closed the connection",
            "terminating connection",
            "connection is closed",
            "the connection is lost",
            "consuming input failed",
        ),
        "the connection was lost; try again",
    ),
    (("too many connections", "remaining connection slots"), "the server has too many clients"),
)
_NOT_MIGRATED = ("no such table", "no such column", "relation ", "column ")


def ensure_schema(alias: str = DEFAULT_DB_ALIAS) -> bool:
    """Migrate a SQLite database that has no orchestrator tables yet; True if it did."""
    connection = connections[alias]
    if connection.vendor != "sqlite":
        return False
    if "orchestrator_pipelinerun" in connection.introspection.table_names():
        return False
    from django.core.management import call_command

    call_command("migrate", database=alias, verbosity=0, interactive=False)
    return True


def ensure_current(alias: str = DEFAULT_DB_ALIAS) -> None:
    """Bring a SQLite database up to the newest migration; refuse to go on with another database
    that is behind (its owner migrates it: ``orchestrator migrate``)."""
    from django.db.migrations.executor import MigrationExecutor

    connection = connections[alias]
    executor = MigrationExecutor(connection)
    if not executor.migration_plan(executor.loader.graph.leaf_nodes()):
        return
    if connection.vendor != "sqlite":
        from orchestrator.errors import OrchestratorError

        raise OrchestratorError(
            "The database is not up to date with this version: run orchestrator migrate"
        )
    from django.core.management import call_command

    call_command("migrate", database=alias, verbosity=0, interactive=False)


def location(settings_dict: dict[str, Any]) -> str:
    """Where the database is, as an operator may see it: the password is never shown."""
    engine = str(settings_dict.get("ENGINE", ""))
    if engine.endswith("sqlite3"):
        return str(settings_dict.get("NAME", ""))
    user = settings_dict.get("USER") or ""
    host = settings_dict.get("HOST") or "localhost"
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    url = f"postgres://{user + '@' if user else ''}{host}{port}/{settings_dict.get('NAME', '')}"
    return f"{url} (password hidden)" if settings_dict.get("PASSWORD") else url


def describe_error(exc: BaseException, alias: str = DEFAULT_DB_ALIAS) -> str:
    """One line naming a database problem and its fix, for an error raised by the driver."""
    settings_dict = connections[alias].settings_dict
    where = location(settings_dict)
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    lowered = text.lower()
    name = settings_dict.get("NAME", "")
    if "does not exist" in lowered and f'database "{name}"' in text:
        return (
            f"The database '{name}' does not exist on the server of {where}: create it "
            f"(createdb {name}) or fix DATABASE_URL."
        )
    if any(part in lowered for part in _NOT_MIGRATED) and (
        "does not exist" in lowered or "no such" in lowered
    ):
        return f"The database at {where} has no orchestrator tables (or older ones). {MIGRATE}"
    if "unable to open database file" in lowered:
        return (
            f"Cannot open the database file {where}: its directory must exist and be writable "
            "(or set DATABASE_URL)."
        )
    if "database is locked" in lowered:
        return f"The database file {where} is locked by another process; try again."
    for fragments, reason in _REASONS:
        if any(fragment in lowered for fragment in fragments):
            return f"Cannot reach the database at {where}: {reason}."
    return f"Database error at {where}: {first}"
