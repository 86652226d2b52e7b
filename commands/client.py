"""A small client for the orchestrator's HTTP API (ORCHESTRATOR_URL, ORCHESTRATOR_TOKEN).

Standard library only: an operator's host needs nothing beyond this package to reach a server.
Every failure becomes a RemoteError carrying the server's own sentence where it gave one.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from orchestrator.errors import RemoteError

URL_VARIABLE = "ORCHESTRATOR_URL"
TOKEN_VARIABLE = "ORCHESTRATOR_TOKEN"


class ApiClient:
    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    @classmethod
    def from_environment(cls) -> ApiClient:
        url = os.environ.get(URL_VARIABLE, "").strip()
        token = os.environ.get(TOKEN_VARIABLE, "").strip()
        if not token:
            raise RemoteError(
                f"{URL_VARIABLE} is set but {TOKEN_VARIABLE} is not: create a token on the "
                "server's host with: orchestrator token create --user NAME"
            )
        if not url.startswith(("http://", "https://")):
            raise RemoteError(f"{URL_VARIABLE} must start with http:// or https://, not {url!r}")
        return cls(url, token)

    def get(self, path: str, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        suffix = f"?{urllib.parse.urlencode(query)}" if query else ""
        return self._call("GET", path + suffix, None)

    def post(self, path: str, body: Any = None) -> Any:
        return self._call("POST", path, {} if body is None else body)

    def _call(self, method: str, path: str, body: Any) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Accept": "application/json",
                **({"Content-Type": "application/json"} if data is not None else {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise self._refusal(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RemoteError(
                f"Cannot reach the orchestrator API at {self.base_url}: {reason}"
            ) from exc

    def _refusal(self, exc: urllib.error.HTTPError) -> RemoteError:
        try:
            detail = json.loads(exc.read()).get("detail")
        except (ValueError, AttributeError):
            detail = None
        if exc.code == 401:
            return RemoteError(
                f"The orchestrator API at {self.base_url} did not accept the token in "
                f"{TOKEN_VARIABLE} (401): it is wrong or was revoked",
                401,
            )
        if isinstance(detail, str):
            return RemoteError(detail, exc.code)
        return RemoteError(
            f"The orchestrator API at {self.base_url} answered {exc.code}: "
            f"{detail if detail is not None else exc.reason}",
            exc.code,
        )


def quote(ref: str) -> str:
    return urllib.parse.quote(str(ref).strip(), safe="")
