"""A Celery-backed pipeline orchestrator: definitions, run records, engine and run control."""

__version__ = "0.1.0"
