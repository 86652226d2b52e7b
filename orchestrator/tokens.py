"""API bearer tokens: created once and shown once, stored as a SHA-256 hash, revocable.

A token is 32 random bytes (URL-safe base64) behind the ``orc_`` prefix. Its entropy makes a
salted slow hash unnecessary: the hash only has to keep a stolen table from being usable.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from orchestrator.errors import TokenError
from orchestrator.models import ApiToken

PREFIX = "orc_"
#: Characters of a token kept in clear, so that ``token list`` can tell tokens apart.
SHOWN = 10


@dataclass(frozen=True)
class NewToken:
    """A token just created: the only time its secret exists outside the caller's hands."""

    record: ApiToken
    secret: str


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(username: str, label: str = "") -> NewToken:
    """A new token for the user ``username``; only its hash and first characters are stored."""
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise TokenError(f"No such user: {username}. Create one with: orchestrator createsuperuser")
    if not user.is_active:
        raise TokenError(f"User {username} is inactive; activate the user first")
    secret = PREFIX + secrets.token_urlsafe(32)
    record = ApiToken.objects.create(
        user=user, label=label, prefix=secret[:SHOWN], key_hash=digest(secret)
    )
    return NewToken(record, secret)


def authenticate(secret: str) -> AbstractBaseUser | None:
    """The active user a live token belongs to, else None; notes when the token was used."""
    if not secret.startswith(PREFIX):
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=digest(secret), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    # At most one write a minute per token: a polling client must not write on every request.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


def revoke(ref: str) -> tuple[ApiToken, bool]:
    """Revoke the token with id ``ref``, or whose shown prefix is ``ref``; returns it and
    whether this call revoked it (False: it was revoked already)."""
    ref = ref.strip()
    if not ref.isdigit() and len(ref) < 6:
        raise TokenError(f"Give a token's id, or at least 6 characters of its prefix: {ref!r}")
    tokens = ApiToken.objects.select_related("user")
    matches = list(
        tokens.filter(pk=int(ref)) if ref.isdigit() else tokens.filter(prefix__startswith=ref)
    )
    if not matches:
        raise TokenError(f"No token matches {ref!r}: give its id or prefix from `token list`")
    if len(matches) > 1:
        raise TokenError(f"{len(matches)} tokens match {ref!r}: give the token's id instead")
    token = matches[0]
    changed = bool(
        ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
    )
    token.refresh_from_db()
    return token, changed


def listing() -> list[ApiToken]:
    return list(ApiToken.objects.select_related("user").order_by("id"))
