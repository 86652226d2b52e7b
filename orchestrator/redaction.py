"""Hide secrets (keys, tokens, passwords, webhook URLs) before anything is displayed."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

REDACTED = "***redacted***"

#: Key names whose values are secrets wherever they appear.
SECRET_KEY_PATTERN = re.compile(
    r"(^|_)(api_?key|apikey|key|token|secret|password|passwd|pat|authorization|auth|"
    r"webhook_url|webhook|url_secret|credentials?)$",
    re.IGNORECASE,
)
#: The same in camelCase or hyphenated names (accessToken, X-Api-Key), once split into words;
#: a bare "key" there is too common a word (groupKey, sortKey) to mean a secret.
SECRET_WORDS_PATTERN = re.compile(
    r"(^|_)(api_?key|(access|private|secret|signing|routing|integration)_key|token|secret|"
    r"password|passwd|authorization|webhook_url|credentials?)$",
    re.IGNORECASE,
)
CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
#: Values that look like secrets whatever their key (bearer tokens, Slack hooks, URL passwords).
SECRET_VALUE_PATTERNS = (
    re.compile(r"https://hooks\.slack\.com/\S+"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)\bkey\s+[A-Za-z0-9]{16,}"),
    re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),  # user:password@ in URLs
    re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"),
    # Credentials in a URL's query string: ?api-key=..., &token=..., &sig=...
    re.compile(
        r"(?i)(?<=[?&])(?:(?:[a-z]+[_-])?(?:api[_-]?)?(?:key|token|secret|password)|sig|signature)"
        r"=[^&#\s\"']+"
    ),
)


def is_secret_key(key: str, extra: Iterable[str] = ()) -> bool:
    if key in extra or SECRET_KEY_PATTERN.search(key):
        return True
    words = CAMEL_BOUNDARY.sub("_", key).replace("-", "_")
    return bool(SECRET_WORDS_PATTERN.search(words))


def redact_text(text: str) -> str:
    for pattern in SECRET_VALUE_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def redact(value: Any, extra_keys: Iterable[str] = ()) -> Any:
    """A copy of ``value`` with secret-named keys and secret-looking strings replaced."""
    extra = frozenset(extra_keys)
    if isinstance(value, dict):
        return {
            k: (
                REDACTED
                if is_secret_key(str(k), extra) and v not in (None, "")
                else redact(v, extra)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, extra) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
