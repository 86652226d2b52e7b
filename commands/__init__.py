"""The command-line surface: Django management commands and the ``orchestrator`` script."""
