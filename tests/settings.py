"""Settings for the test suite: SQLite in a temporary file, or TEST_DATABASE_URL (PostgreSQL)."""

from __future__ import annotations

import os
import tempfile

_TEST_DIR = os.environ.setdefault(
    "ORCHESTRATOR_TEST_DIR", tempfile.mkdtemp(prefix="orchestrator-tests-")
)
# The embedded default lives in the user's data directory: never the real user's during tests
# (the suite and every process it starts use the test database through DATABASE_URL).
os.environ["ORCHESTRATOR_HOME"] = os.path.join(_TEST_DIR, "home")
# Nor the real user's Clarifai CLI config: no token from it may reach a test.
os.environ["ORCHESTRATOR_CLARIFAI_CONFIG"] = os.path.join(_TEST_DIR, "no-clarifai-config")

from orchestrator.settings import *  # noqa: E402, F403
from orchestrator.settings import database_from_url  # noqa: E402

if os.environ.get("TEST_DATABASE_URL"):
    DATABASES = {"default": database_from_url(os.environ["TEST_DATABASE_URL"])}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    # A file, not memory, so that worker processes and subprocesses share the test database.
    _db = os.path.join(_TEST_DIR, "db.sqlite3")
    DATABASES = {"default": database_from_url(f"sqlite:///{_db}")}
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(_TEST_DIR, "test-db.sqlite3")}

EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CELERY_BROKER_URL = ""
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

ORCHESTRATOR_HEARTBEAT_SECONDS = 0.5
ORCHESTRATOR_HEARTBEAT_TIMEOUT = 3.0
ORCHESTRATOR_REDISPATCH_AFTER = 3.0
ORCHESTRATOR_MIRROR_BACKOFF = 0.1
