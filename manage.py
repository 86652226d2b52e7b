#!/usr/bin/env python
"""Django's command-line utility: ``python manage.py run_pipeline ...``."""

from __future__ import annotations

import sys


def main() -> None:
    from commands.cli import execute

    execute(sys.argv)


if __name__ == "__main__":
    main()
