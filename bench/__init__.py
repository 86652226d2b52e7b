"""Benchmarks of the orchestrator side by side with raw Celery (not part of the test run).

Run them with ``python -m bench.run`` (``--quick`` for a short pass); see docs/benchmarks.md.
"""
