"""Keep secrets out of logs, metadata and exceptions.

Masking never depends on the text being well formed: a password in a URL, in a URL without a
scheme or with a typo, in a libpq keyword string (`password=…`), a token written as a URL's user
name and the values of a query string are all masked.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"

# `password=…`, `DB_PASSWORD=…`, `"password": "…"`, `token: …` (keyword strings, environment
# lines, JSON, YAML), quoted or not.
_KEYWORD_SECRET = re.compile(
    r"(?i)((?<![A-Za-z0-9])[A-Za-z0-9_]*?(?:password|passwd|pwd|token|secret|api_key|apikey|sig|signature)"
    r"[\"']?)(\s*[=:]\s*)('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,'\"}]+)"
)
# User info: what lies between the start of a word (after an optional `scheme:/` or `scheme://`,
# kept) and the last `@` of the word followed by a host; bounded, so a long text is scanned in
# linear time.
_USERINFO = re.compile(
    r"((?:^|(?<=[\s'\"(<]))(?:[A-Za-z][A-Za-z0-9+.-]*:/{0,2})?)([^\s'\"<>()]{1,256})@(?=[\w\[])"
)
_PLAIN_USER = re.compile(r"[A-Za-z0-9._~%+-]+")


def mask_text(text: str) -> str:
    """Mask every secret-shaped part of a free text: keyword passwords and URL user info."""
    text = _KEYWORD_SECRET.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)

    def userinfo(m: re.Match[str]) -> str:
        user, sep, _secret = m[2].partition(":")
        # `user:password@` keeps a plain user name (harmless, useful); anything else is masked whole.
        if sep and _PLAIN_USER.fullmatch(user):
            return f"{m[1]}{user}:{MASK}@"
        return f"{m[1]}{MASK}@"

    return _USERINFO.sub(userinfo, text)


def mask_url(url: str) -> str:
    """A URL safe to show: `postgresql://u:pw@h/db` -> `postgresql://u:***@h/db`, `http://TOKEN@h/x`
    -> `http://***@h/x`, `?token=abc&page=2` -> `?token=***&page=***`; other text masked by shape."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return mask_text(url)
    if not parts.scheme or not parts.netloc:
        return mask_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        host = netloc.rsplit("@", 1)[1]
        user = parts.username if parts.password is not None else None
        netloc = f"{user}:{MASK}@{host}" if user else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK) for k, _ in pairs], safe="*") if pairs else MASK
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def url_password(url: str | None) -> str | None:
    if not url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


class Redactor:
    """Replaces every known secret (raw and URL-encoded forms) in a text, then masks anything
    secret-shaped (`mask_text`)."""

    def __init__(self, secrets: list[str | None] | None = None) -> None:
        self._secrets: list[str] = []
        for s in secrets or []:
            self.add(s)

    def add(self, secret: str | None) -> None:
        if not secret:
            return
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            if form and form not in self._secrets:
                self._secrets.append(form)
        # Longest first so a secret that contains another is masked whole.
        self._secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, MASK)
        return mask_text(text)
