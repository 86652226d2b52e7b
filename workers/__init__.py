"""The Celery app and its thin tasks; all rules live in :mod:`orchestrator`."""
