"""Django settings for tests: the standalone settings, a throwaway SQLite file, locmem mail."""

from __future__ import annotations

import tempfile
from pathlib import Path

from orchestrator.settings import *  # noqa: F403
from orchestrator.settings import database_from_url

_DATABASE_FILE = Path(tempfile.mkdtemp(prefix="orchestrator-tests-")) / "db.sqlite3"
DATABASES = {"default": database_from_url(f"sqlite:///{_DATABASE_FILE}")}
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
