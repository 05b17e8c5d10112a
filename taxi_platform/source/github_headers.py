"""Reading the GitHub API's answers: the next page of a `Link` header, an URL's origin (where
requests and the token may go), when a rate limit allows asking again, an error answer's message."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

DEFAULT_RATE_LIMIT_WAIT = timedelta(minutes=5)  # when a 403/429 says nothing usable about when to retry
# A longer wait (a far-future reset) would silence the sensor until someone reset its cursor.
MAX_RATE_LIMIT_WAIT = timedelta(hours=1)
_DEFAULT_PORTS = {"http": 80, "https": 443}
# ASCII digits only (`\d` and float() take any script's); no sign, nan or inf.
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?")

_LINK = re.compile(r'<(?P<url>[^>]+)>\s*;\s*rel="?(?P<rel>[^";]+)"?')


def next_link(header: str | None) -> str | None:
    """The `rel="next"` URL of a GitHub `Link` header."""
    for match in _LINK.finditer(header or ""):
        if "next" in match.group("rel").split():
            return match.group("url")
    return None


def origin(url: str | None) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of an http(s) URL; None for anything else or a malformed URL."""
    try:
        parts = urlsplit(url or "")
        scheme, host = parts.scheme.lower(), parts.hostname
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    return (scheme, host, port) if scheme in _DEFAULT_PORTS and host else None


def origin_text(url: str | None) -> str:
    parts = origin(url)
    return f"{parts[0]}://{parts[1]}:{parts[2]}"[:200] if parts else "a malformed URL"


def resolve_link(base: str, link: str | None) -> str | None:
    try:
        return urljoin(base, link.strip()) if link else None
    except ValueError:
        return link  # malformed: no origin, so never followed


def _seconds_until(value: str | None, now: datetime, *, epoch: bool) -> float | None:
    """Seconds from `now` to a header's time: an epoch (`x-ratelimit-reset`), else seconds or an
    HTTP date (`retry-after`); None when unreadable."""
    value = (value or "").strip()
    if _NUMBER.fullmatch(value):
        return float(value) - now.timestamp() if epoch else float(value)
    if epoch or not value.isascii():
        return None
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return (when - now).total_seconds()
    except (TypeError, ValueError, OverflowError, IndexError, AttributeError):
        return None


def rate_limit_retry_at(status: int, headers: Mapping[str, str], now: datetime) -> datetime | None:
    """When a 403/429 is a rate limit: the time to ask again, at most MAX_RATE_LIMIT_WAIT from
    `now`; else None."""
    if status not in (403, 429):
        return None
    retry_after = headers.get("retry-after")
    remaining = (headers.get("x-ratelimit-remaining") or "").strip()
    if retry_after is None and remaining != "0" and status != 429:
        return None  # a 403 that is no rate limit (no access)
    wait = _seconds_until(retry_after, now, epoch=False)
    if wait is None:
        wait = _seconds_until(headers.get("x-ratelimit-reset"), now, epoch=True)
    if wait is None:
        wait = DEFAULT_RATE_LIMIT_WAIT.total_seconds()
    return now + timedelta(seconds=min(max(wait, 0.0), MAX_RATE_LIMIT_WAIT.total_seconds()))


def error_message(body: bytes) -> str:
    """What an error answer says, in at most 200 characters."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        payload = None
    if isinstance(payload, dict):
        return str(payload.get("message", ""))[:200]
    return body[:800].decode("utf-8", "replace")[:200]
