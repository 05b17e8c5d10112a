"""Keep secrets out of logs, metadata and exceptions."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit, unquote

MASK = "***"


def mask_url(url: str) -> str:
    """`postgresql://u:pw@h/db` -> `postgresql://u:***@h/db`; URLs without a password unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{netloc}"))


def url_password(url: str | None) -> str | None:
    if not url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


class Redactor:
    """Replaces every known secret (raw and URL-encoded forms) in a text."""

    def __init__(self, secrets: list[str | None] | None = None) -> None:
        self._secrets: list[str] = []
        for s in secrets or []:
            self.add(s)

    def add(self, secret: str | None) -> None:
        if not secret:
            return
        from urllib.parse import quote

        for form in {secret, quote(secret, safe=""), quote(secret)}:
            if form and form not in self._secrets:
                self._secrets.append(form)
        # Longest first so a secret that contains another is masked whole.
        self._secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, MASK)
        # A connection URL with any password, known or not, never leaves unmasked.
        return re.sub(r"(\w+://[^:/@\s]*:)[^@\s]+@", rf"\1{MASK}@", text)
