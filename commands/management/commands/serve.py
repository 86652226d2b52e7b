"""``serve``: the web console and the HTTP API through gunicorn, static files included."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError
from django.db import connections

from commands.base import OrchestratorCommand
from orchestrator import conf
from orchestrator.database import ensure_current

LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEFAULT_KEY = "orchestrator-insecure-development-key"


class Command(OrchestratorCommand):
    help = (
        "Serve the web console (/), the HTTP API (/api/, schema at /api/schema) and the admin\n"
        "(/admin/) through gunicorn; static files are served by the same process.\n"
        "With no broker (CELERY_BROKER_URL unset), runs started or resumed from the browser or\n"
        "the API execute in the server's background thread, one at a time, and the server runs\n"
        "one worker process; with a broker they are queued to workers.\n"
        "examples:\n"
        "  orchestrator serve\n"
        "  orchestrator serve --host 0.0.0.0 --port 8080 --workers 4"
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
        parser.add_argument("--port", type=int, default=8000, help="Port (default: 8000).")
        parser.add_argument(
            "--workers",
            type=int,
            default=2,
            help="Server processes (default: 2; always 1 with no broker).",
        )
        parser.add_argument(
            "--threads", type=int, default=8, help="Threads per process (default: 8)."
        )
        parser.add_argument(
            "--access-log", action="store_true", help="Log every request to stderr."
        )

    def run(self, **opts: Any) -> None:
        from gunicorn.app.base import BaseApplication

        if opts["workers"] < 1 or opts["threads"] < 1 or not 0 < opts["port"] < 65536:
            raise CommandError("--workers and --threads must be at least 1, --port 1-65535")
        ensure_current()
        host = opts["host"]
        workers = opts["workers"]
        queued = bool(conf.broker_url())
        if not queued and workers > 1:
            # Each process would run its own background thread: runs would no longer go one
            # at a time, and a resume could land in a process other than the one executing.
            workers = 1
        if host not in ("0.0.0.0", "::", *settings.ALLOWED_HOSTS):
            settings.ALLOWED_HOSTS.append(host)
        if host not in LOOPBACK and settings.SECRET_KEY == DEFAULT_KEY:
            sys.stderr.write(
                "Warning: DJANGO_SECRET_KEY is not set; set it to a long random value before "
                "serving beyond this host.\n"
            )
        bind = f"[{host}]:{opts['port']}" if ":" in host else f"{host}:{opts['port']}"
        mode = (
            "runs are queued to workers"
            if queued
            else "no broker: runs execute in this server, one at a time"
        )
        sys.stderr.write(
            f"Serving the console and API at http://{bind}/ ({workers} process"
            f"{'es' if workers != 1 else ''}, {opts['threads']} threads each; {mode}).\n"
        )
        sys.stderr.flush()
        connections.close_all()  # no connection may be shared with the forked processes
        config = {
            "bind": bind,
            "workers": workers,
            "threads": opts["threads"],
            "worker_class": "gthread",
            "timeout": 60,
            "graceful_timeout": 10,
            "accesslog": "-" if opts["access_log"] else None,
            "errorlog": "-",
            "loglevel": "warning",
            "proc_name": "orchestrator-serve",
        }

        class Server(BaseApplication):
            def load_config(self) -> None:
                for key, value in config.items():
                    if value is not None:
                        self.cfg.set(key, value)

            def load(self) -> Any:
                from orchestrator.wsgi import application

                return application

        Server().run()
