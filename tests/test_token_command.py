"""``orchestrator token``: created once and printed once, stored hashed, listed, revoked."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User

from orchestrator import tokens
from orchestrator.models import ApiToken
from tests.conftest import CLI

pytestmark = pytest.mark.django_db(transaction=True)


def test_token_is_printed_once_stored_as_a_hash_listed_and_revoked(cli: CLI):
    alice = User.objects.create_user("alice", is_staff=True)

    created = cli("token", "create", "--user", "alice", "--label", "laptop", check=True)
    secret = created.stdout.strip()
    assert secret.startswith("orc_") and len(secret) > 40
    assert "shown only this once" in created.stderr
    record = ApiToken.objects.get()
    assert record.key_hash == tokens.digest(secret) and record.label == "laptop"
    assert secret not in json.dumps(list(ApiToken.objects.values()), default=str)

    listed = cli("token", "list", check=True)
    assert record.prefix in listed.stdout and secret not in listed.stdout
    assert "laptop" in listed.stdout and "never" in listed.stdout
    assert tokens.authenticate(secret) == alice
    assert "never" not in cli("token", "list", check=True).stdout  # last use noted
    as_json = json.loads(cli("token", "list", "--json", check=True).stdout)
    assert [(t["id"], t["user"], t["revoked_at"]) for t in as_json] == [(record.pk, "alice", None)]

    revoked = cli("token", "revoke", str(record.pk), check=True)
    assert revoked.stdout.startswith(f"Revoked token {record.pk} ")
    assert tokens.authenticate(secret) is None
    again = cli("token", "revoke", record.prefix, check=True)
    assert again.stdout.startswith("Already revoked: ")
    assert "(revoked)" in cli("token", "list", check=True).stdout


def test_token_command_refuses_bad_input_in_one_line(cli: CLI):
    for args, message in (
        (("create", "--user", "ghost"), "No such user: ghost"),
        (("revoke", "abc"), "at least 6 characters"),
        (("revoke", "999"), "No token matches '999'"),
    ):
        result = cli("token", *args)
        assert result.returncode == 1, args
        assert message in result.stderr and "Traceback" not in result.stderr
    assert not ApiToken.objects.exists()
