"""Standalone Django settings, read from the environment (12-factor).

``DATABASE_URL``      database; default a SQLite file ``orchestrator.sqlite3`` in the user's data
                      directory (``ORCHESTRATOR_HOME`` if set), created and migrated on first use.
``CELERY_BROKER_URL`` broker; unset means the embedded default: runs execute inline, in-process.
``CLARIFAI_PAT``, ``CLARIFAI_API_BASE`` the Clarifai mirror.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "orchestrator-insecure-development-key")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")

INSTALLED_APPS = [
    "django.contrib.admin.apps.SimpleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "orchestrator",
    "commands",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "orchestrator.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]


def home() -> Path:
    """The per-user directory holding the embedded database: ``ORCHESTRATOR_HOME`` if set, else
    the user data directory (``~/.local/share/orchestrator`` on Linux), so that every terminal
    of one user, in any working directory, sees the same runs."""
    if override := os.environ.get("ORCHESTRATOR_HOME"):
        return Path(override).expanduser()
    from platformdirs import user_data_path

    return user_data_path("orchestrator", appauthor=False)


DEFAULT_SQLITE = home() / "orchestrator.sqlite3"


SUPPORTED_ENGINES = ("django.db.backends.sqlite3", "django.db.backends.postgresql")


def database_from_url(url: str) -> dict:
    """Django DATABASES entry for a URL; SQLite gets a lock timeout that suits several writers."""
    try:
        # A kept connection is checked before reuse, so one the server dropped while idle (a
        # restart, a failover) is replaced instead of failing the next node.
        config = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    except (ValueError, KeyError) as exc:
        config = {"ENGINE": "", "error": exc}
    if not config["ENGINE"].startswith(SUPPORTED_ENGINES):
        scheme = url.split("://", 1)[0] if "://" in url else "none"
        raise ImproperlyConfigured(
            f"DATABASE_URL is not usable (scheme {scheme[:20]!r}): use "
            "sqlite:////path/to/file.sqlite3 or postgres://user:password@host:5432/name"
        )
    if config["ENGINE"] == "django.db.backends.sqlite3":
        config["CONN_MAX_AGE"] = 0
        # Several processes (CLI, workers) write one file: wait for locks, take them up front,
        # and let readers go on while a writer works.
        config["OPTIONS"] = {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    elif config["ENGINE"].startswith("django.db.backends.postgresql"):
        # A server that drops connection attempts must not hold a command for minutes.
        config.setdefault("OPTIONS", {}).setdefault("connect_timeout", 10)
    return config


if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": database_from_url(os.environ["DATABASE_URL"])}
else:
    with contextlib.suppress(OSError):  # an unwritable home is reported when the file is opened
        DEFAULT_SQLITE.parent.mkdir(parents=True, exist_ok=True)
    DATABASES = {"default": database_from_url(f"sqlite:///{DEFAULT_SQLITE}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
# Timestamps to the second in the admin (orchestrator/formats/en/formats.py).
FORMAT_MODULE_PATH = ["orchestrator.formats"]
STATIC_URL = "static/"

# --- Web console and HTTP API (orchestrator serve) ----------------------------------------------
# Static files (the console's, the admin's, the API docs') are served by the same process through
# WhiteNoise, straight from the installed packages: no collectstatic step, and DEBUG stays off.
# django-ninja's bundled Swagger UI is found by path rather than by listing "ninja" as an app,
# which would import it (and pydantic) at every CLI start.
_NINJA = Path(importlib.util.find_spec("ninja").origin).parent  # type: ignore[union-attr, arg-type]
INSTALLED_APPS += ["orchestrator.web"]
TEMPLATES[0]["DIRS"] = [_NINJA / "templates"]
STATICFILES_DIRS = [_NINJA / "static"]
MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")
STATIC_URL = "/static/"
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = False
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
CSRF_TRUSTED_ORIGINS = [
    origin for origin in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if origin
]

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = os.environ.get("EMAIL_USE_TLS", "") == "1"
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "orchestrator@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {
        "orchestrator": {
            "handlers": ["stderr"],
            "level": os.environ.get("ORCHESTRATOR_LOG_LEVEL", "WARNING"),
        },
    },
}
