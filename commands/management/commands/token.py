"""``token``: create, list and revoke the bearer tokens of the HTTP API."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from commands import display
from commands.base import OrchestratorCommand, RawHelpFormatter
from orchestrator import tokens
from orchestrator.database import ensure_current


class Command(OrchestratorCommand):
    help = (
        "Bearer tokens for the HTTP API (orchestrator serve). A token acts as its user: staff\n"
        "users may read; starting and controlling runs needs orchestrator.change_pipelinerun.\n"
        "Only a hash is stored: the token is printed once, when it is created.\n"
        "examples:\n"
        "  orchestrator token create --user alice --label laptop\n"
        "  orchestrator token list\n"
        "  orchestrator token revoke 3"
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        verbs = parser.add_subparsers(dest="verb", metavar="{create,list,revoke}")
        verbs.required = True
        create = verbs.add_parser(
            "create",
            help="Create a token for a user and print it (once).",
            description="Print a new token on stdout (a note goes to stderr), e.g.\n"
            "  export ORCHESTRATOR_TOKEN=$(orchestrator token create --user alice)",
            formatter_class=RawHelpFormatter,
        )
        create.add_argument("--user", required=True, metavar="NAME", help="The token's user.")
        create.add_argument("--label", default="", help="What the token is for.")
        create.add_argument("--json", action="store_true", help="Print the token as JSON.")
        ls = verbs.add_parser("list", help="List tokens (never their secrets).")
        ls.add_argument("--json", action="store_true")
        revoke = verbs.add_parser("revoke", help="Revoke a token: it stops working at once.")
        revoke.add_argument("token", metavar="ID|PREFIX", help="The id or prefix from `list`.")

    def run(self, **opts: Any) -> None:
        ensure_current()
        getattr(self, f"_{opts['verb']}")(opts)

    def _create(self, opts: dict[str, Any]) -> None:
        new = tokens.create(opts["user"], opts["label"])
        record = new.record
        if opts["json"]:
            self.line(
                display.dumps(
                    {
                        "id": record.pk,
                        "user": record.user.get_username(),
                        "label": record.label,
                        "prefix": record.prefix,
                        "token": new.secret,
                    }
                )
            )
            return
        self.line(new.secret)
        sys.stderr.write(
            f"Created token {record.pk} ({record.prefix}…) for {record.user.get_username()}. "
            "It is shown only this once: store it now.\n"
        )

    def _list(self, opts: dict[str, Any]) -> None:
        rows = [
            {
                "id": t.pk,
                "user": t.user.get_username(),
                "label": t.label,
                "prefix": t.prefix,
                "created_at": t.created_at,
                "last_used_at": t.last_used_at,
                "revoked_at": t.revoked_at,
            }
            for t in tokens.listing()
        ]
        if opts["json"]:
            self.line(display.dumps(rows))
            return
        if not rows:
            self.line("No tokens. Create one with: orchestrator token create --user NAME")
            return
        self.line(f"{'ID':>4}  {'USER':<16} {'PREFIX':<12} {'CREATED':<16} {'LAST USED':<16} LABEL")
        for row in rows:
            used = f"{row['last_used_at']:%Y-%m-%d %H:%M}" if row["last_used_at"] else "never"
            state = "  (revoked)" if row["revoked_at"] else ""
            self.line(
                f"{row['id']:>4}  {row['user'][:16]:<16} {row['prefix']:<12} "
                f"{row['created_at']:%Y-%m-%d %H:%M} {used:<16} {row['label']}{state}"
            )

    def _revoke(self, opts: dict[str, Any]) -> None:
        token, changed = tokens.revoke(opts["token"])
        who = f"token {token.pk} ({token.prefix}…) of {token.user.get_username()}"
        if changed:
            self.line(f"Revoked {who}: it no longer works.")
        else:
            self.line(f"Already revoked: {who}, on {token.revoked_at:%Y-%m-%d %H:%M}.")
