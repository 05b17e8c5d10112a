"""A small client of the GitHub Releases API (`GET <repo api>/releases`), for the release sensor.

- Conditional requests: every page is requested with the ETag it had last time (`If-None-Match`);
  a 304 costs no rate limit and means the page's releases are unchanged.
- Pagination: `per_page`/`page` with the `Link: <...>; rel="next"` header, at most `max_pages`
  pages (HTTP calls) per listing, and an overall time budget well under the sensor timeout.
- Rate limits: 429, or 403 with `x-ratelimit-remaining: 0` or `retry-after`, raise `RateLimited`
  with the time at which asking again makes sense.
- A token (from `TAXI_GITHUB_TOKEN` / `GITHUB_TOKEN`, via Settings) is sent as a header only; it is
  never part of a message, a log line or `repr`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

import requests

from taxi_platform.redact import mask_url

USER_AGENT = "taxi-platform-release-sensor"
DEFAULT_PER_PAGE = 100  # GitHub's maximum
DEFAULT_RATE_LIMIT_WAIT = timedelta(minutes=5)  # when a 403/429 says nothing about when to retry


@dataclass(frozen=True)
class ReleaseAsset:
    """One file of a release, as the API describes it."""

    tag: str
    name: str
    size: int
    updated_at: str  # ISO-8601 as the API gives it, e.g. 2022-03-01T12:00:00Z
    download_url: str
    id: int | None = None

    @property
    def version(self) -> str:
        """What makes a re-publication: a different upload time or size under the same name."""
        return f"{self.updated_at}|{self.size}"


@dataclass(frozen=True)
class PageState:
    """What a listing remembers of one page, to ask it conditionally next time."""

    url: str
    etag: str | None
    next_url: str | None


@dataclass
class Listing:
    pages: list[PageState] = field(default_factory=list)
    # The assets of the pages that answered 200; pages that answered 304 are unchanged.
    assets: list[ReleaseAsset] = field(default_factory=list)
    changed_pages: int = 0
    calls: int = 0
    truncated: bool = False  # more pages than max_pages (or the time budget) allowed
    rate_remaining: str | None = None

    @property
    def unchanged(self) -> bool:
        return self.changed_pages == 0


class ReleasesApiError(RuntimeError):
    """The API answered something unusable (HTTP error, bad JSON, connection error)."""


class RateLimited(ReleasesApiError):
    def __init__(self, message: str, retry_at: datetime) -> None:
        super().__init__(message)
        self.retry_at = retry_at


_LINK = re.compile(r'<(?P<url>[^>]+)>\s*;\s*rel="?(?P<rel>[^";]+)"?')


def next_link(header: str | None) -> str | None:
    """The `rel="next"` URL of a GitHub `Link` header."""
    for match in _LINK.finditer(header or ""):
        if "next" in match.group("rel").split():
            return match.group("url")
    return None


def _rate_limited(response: requests.Response, now: datetime) -> datetime | None:
    """When a 403/429 is a rate limit: the time to ask again; else None."""
    if response.status_code not in (403, 429):
        return None
    headers = response.headers
    retry_after = headers.get("retry-after")
    remaining = headers.get("x-ratelimit-remaining")
    if retry_after is not None:
        try:
            return now + timedelta(seconds=max(0.0, float(retry_after)))
        except ValueError:
            pass
    if remaining == "0" or response.status_code == 429:
        reset = headers.get("x-ratelimit-reset")
        try:
            return datetime.fromtimestamp(int(reset), tz=timezone.utc) if reset else now + DEFAULT_RATE_LIMIT_WAIT
        except ValueError:
            return now + DEFAULT_RATE_LIMIT_WAIT
    return None


def _message(response: requests.Response) -> str:
    try:
        return str(response.json().get("message", ""))[:200]
    except ValueError:
        return response.text[:200]


class ReleasesApiClient:
    def __init__(self, api_url: str, *, token: str | None = None, per_page: int = DEFAULT_PER_PAGE,
                 max_pages: int = 3, timeout_seconds: float = 10.0, budget_seconds: float = 30.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.api_url = api_url.rstrip("/")
        self._token = token
        self.per_page = per_page
        self.max_pages = max_pages
        self.timeout_seconds = timeout_seconds
        self.budget_seconds = budget_seconds
        self.clock = clock

    def __repr__(self) -> str:  # never the token
        return f"ReleasesApiClient({mask_url(self.api_url)!r}, token={'set' if self._token else 'none'})"

    @property
    def first_page_url(self) -> str:
        return f"{self.api_url}/releases?per_page={self.per_page}"

    def _headers(self, etag: str | None) -> dict[str, str]:
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
                   "User-Agent": USER_AGENT}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if etag:
            headers["If-None-Match"] = etag
        return headers

    def list_releases(self, known: list[PageState] | None = None) -> Listing:
        """Every page of the release list (up to max_pages), asked conditionally with `known` ETags.

        A page answering 304 keeps its remembered ETag and next-page URL; the listing then holds
        only the assets of the pages that changed.
        """
        remembered = {p.url: p for p in known or []}
        listing = Listing()
        url: str | None = self.first_page_url
        started = time.monotonic()
        with requests.Session() as session:
            while url is not None:
                if len(listing.pages) >= self.max_pages:
                    listing.truncated = True
                    break
                left = self.budget_seconds - (time.monotonic() - started)
                if left <= 1:
                    listing.truncated = True
                    break
                before = remembered.get(url)
                response = self._get(session, url, before.etag if before else None,
                                     min(self.timeout_seconds, left))
                listing.calls += 1
                listing.rate_remaining = response.headers.get("x-ratelimit-remaining",
                                                              listing.rate_remaining)
                if response.status_code == 304 and before is not None:
                    listing.pages.append(before)
                    url = before.next_url
                    continue
                if response.status_code != 200:
                    raise ReleasesApiError(
                        f"GitHub releases API: {mask_url(url)} answered HTTP {response.status_code}"
                        f"{': ' + _message(response) if _message(response) else ''}")
                next_url = next_link(response.headers.get("Link"))
                listing.pages.append(PageState(url, response.headers.get("ETag"), next_url))
                listing.changed_pages += 1
                listing.assets += self._assets(response, url)
                url = next_url
        return listing

    def _get(self, session: requests.Session, url: str, etag: str | None,
             timeout: float) -> requests.Response:
        try:
            response = session.get(url, headers=self._headers(etag), timeout=timeout,
                                   allow_redirects=True)
        except requests.RequestException as exc:
            raise ReleasesApiError(
                f"GitHub releases API: {mask_url(url)}: {type(exc).__name__}") from None
        retry_at = _rate_limited(response, self.clock())
        if retry_at is not None:
            raise RateLimited(
                f"GitHub releases API rate limit reached (HTTP {response.status_code}, "
                f"x-ratelimit-remaining={response.headers.get('x-ratelimit-remaining', '?')}); "
                f"asking again after {retry_at:%Y-%m-%d %H:%M:%S} UTC"
                + ("" if self._token else "; set TAXI_GITHUB_TOKEN for a higher limit"), retry_at)
        return response

    @staticmethod
    def _assets(response: requests.Response, url: str) -> list[ReleaseAsset]:
        try:
            releases = response.json()
            if not isinstance(releases, list):
                raise ValueError("not a list")
            return [
                ReleaseAsset(tag=str(release["tag_name"]), name=str(asset["name"]),
                             size=int(asset["size"]), updated_at=str(asset["updated_at"]),
                             download_url=str(asset.get("browser_download_url", "")),
                             id=asset.get("id"))
                for release in releases for asset in release.get("assets") or []
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ReleasesApiError(
                f"GitHub releases API: {mask_url(url)} answered an unexpected body ({exc})") from None
