"""CLI start-up: a command loads only what it needs; ``--help`` sets no Django up at all."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, subprocess_env

#: Run the console script, then report which of these modules the process had loaded.
PROBE = """
import json, sys
from commands.cli import main
try:
    main(["orchestrator", *sys.argv[1:]])
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = ("orchestrator.models", "django.contrib.admin", "django.db.models", "psycopg")
print(json.dumps({"code": code, "loaded": [name for name in heavy if name in sys.modules]}))
"""


def probe(*args: str) -> tuple[str, dict]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    *shown, report = done.stdout.rstrip("\n").split("\n")
    return "\n".join(shown), json.loads(report)


@pytest.mark.parametrize(
    "args",
    [
        ("pr", "pause", "--help"),
        ("pipelinerun", "status", "-h"),
        ("run_pipeline", "--help"),
        ("pipeline", "save", "--help"),
        ("recover", "--help"),
    ],
)
def test_help_of_a_command_loads_no_models_database_driver_or_admin(args: tuple[str, ...]):
    shown, report = probe(*args)
    assert report == {"code": 0, "loaded": []}
    assert shown.startswith(f"usage: orchestrator {args[0]} ")


def test_help_without_django_is_the_help_django_prints():
    fast, _ = probe("pr", "pause", "--help")
    # Through Django's own command line, set up as usual.
    django_path = (
        "import os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'orchestrator.settings')\n"
        "from django.core.management import execute_from_command_line\n"
        "execute_from_command_line(['orchestrator', 'pr', 'pause', '--help'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", django_path],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert fast == done.stdout.rstrip("\n")
    assert "Pause a pipeline run." in fast


def test_a_bad_verb_with_help_still_fails_as_a_usage_error():
    _, report = probe("pr", "bogus", "--help")
    assert report["code"] == 2
