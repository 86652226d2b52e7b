"""Bearer-token authentication and the permission checks of the API.

No header, a wrong token and a revoked one all answer 401; a valid token whose user may not
do what is asked answers 403, with the same rules as the console's pages.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.security import HttpBearer

from orchestrator import tokens
from orchestrator.web import access


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = tokens.authenticate(token)
        if user is None:
            return None
        request.user = user
        return user


def require_view(request: HttpRequest) -> None:
    if not access.may_view(request.user):
        raise HttpError(403, access.VIEW_DENIED)


def require_control(request: HttpRequest) -> None:
    if not access.may_control(request.user):
        raise HttpError(
            403, access.VIEW_DENIED if not access.may_view(request.user) else access.CONTROL_DENIED
        )


def require_save(request: HttpRequest) -> None:
    if not access.may_save(request.user):
        raise HttpError(
            403, access.VIEW_DENIED if not access.may_view(request.user) else access.SAVE_DENIED
        )
