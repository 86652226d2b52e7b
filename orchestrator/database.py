"""The embedded default: a SQLite database created and migrated on first use."""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, connections


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
