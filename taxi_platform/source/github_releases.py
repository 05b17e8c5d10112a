"""A small client of the GitHub Releases API (`GET <repo api>/releases`), for the release sensor.

- Conditional requests: every page is requested with the ETag it had last time (`If-None-Match`);
  a 304 costs no rate limit and means the page's releases are unchanged.
- Pagination: `per_page`/`page` with the `Link: <...>; rel="next"` header, at most `max_pages`
  pages (HTTP calls) per listing.
- One origin: requests (and so the token) go only to the scheme, host and port of `api_url`. A
  next link or a redirect elsewhere is not followed: the listing ends there, truncated with the
  reason (a redirect fails the call); remembered pages pointing elsewhere are forgotten.
- Bounded calls: the whole listing has one time budget (`budget_seconds`, well under the sensor
  timeout) and each call ends by it, whatever the server does (slow DNS, headers or body dribbled
  byte by byte); a page's body is read in chunks up to `MAX_PAGE_BYTES`. Both fail the call with
  a message saying so ("timed out", "more than 10 MB").
- Rate limits: 429, or 403 with `x-ratelimit-remaining: 0` or `retry-after`, raise `RateLimited`
  with the time at which asking again makes sense, never more than `MAX_RATE_LIMIT_WAIT` ahead
  (whatever the headers say: huge, negative, `nan` or garbage values; `retry-after` as seconds or
  an HTTP date).
- A token (from `TAXI_GITHUB_TOKEN` / `GITHUB_TOKEN`, via Settings) is sent as a header only; it is
  never part of a message, a log line or `repr`.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import requests
import urllib3

from taxi_platform.redact import mask_url
from taxi_platform.source.github_headers import (
    error_message,
    next_link,
    origin,
    origin_text,
    rate_limit_retry_at,
    resolve_link,
)
from taxi_platform.source.release_listing import Listing, PageState, ReleaseAsset

USER_AGENT = "taxi-platform-release-sensor"
DEFAULT_PER_PAGE = 100  # GitHub's maximum
# Far above a real page of 100 releases: a bigger answer is not a release list.
MAX_PAGE_BYTES = 10 << 20
MAX_REDIRECTS = 5
_CHUNK_BYTES = 64 << 10


class ReleasesApiError(RuntimeError):
    """The API answered something unusable (HTTP error, bad JSON, connection error, timeout,
    an oversized page, a redirect to another host)."""


class RateLimited(ReleasesApiError):
    def __init__(self, message: str, retry_at: datetime) -> None:
        super().__init__(message)
        self.retry_at = retry_at


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


class ReleasesApiClient:
    def __init__(
        self,
        api_url: str,
        *,
        token: str | None = None,
        per_page: int = DEFAULT_PER_PAGE,
        max_pages: int = 3,
        timeout_seconds: float = 10.0,
        budget_seconds: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
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

    def same_origin(self, url: str | None) -> bool:
        """Whether `url` has the scheme, host and port of `api_url`: the only place requests (and
        so the token) go."""
        own = origin(self.api_url)
        return own is not None and origin(url) == own

    def own_pages(self, pages: list[PageState]) -> list[PageState]:
        """The remembered pages whose URL and next link are both of the API's origin (a cursor of
        an older version may hold a next link to another host)."""
        return [
            p
            for p in pages
            if self.same_origin(p.url) and (p.next_url is None or self.same_origin(p.next_url))
        ]

    def _headers(self, etag: str | None) -> dict[str, str]:
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": USER_AGENT,
        }
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if etag and etag.isascii() and etag.isprintable():  # else requests refuses the header
            headers["If-None-Match"] = etag
        return headers

    def list_releases(self, known: list[PageState] | None = None) -> Listing:
        """Every page of the release list (up to max_pages, within budget_seconds), asked
        conditionally with `known` ETags.

        A page answering 304 keeps its remembered ETag and next-page URL; the listing then holds
        only the assets of the pages that changed.
        """
        remembered = {p.url: p for p in self.own_pages(known or [])}
        listing = Listing()
        url: str | None = self.first_page_url
        deadline = time.monotonic() + self.budget_seconds
        with requests.Session() as session:
            while url is not None:
                if len(listing.pages) >= self.max_pages:
                    listing.truncate(f"more than {self.max_pages} page(s); raise TAXI_RELEASES_API_MAX_PAGES")
                    break
                if deadline - time.monotonic() <= 1:
                    listing.truncate(
                        f"the {self.budget_seconds:g} s budget of API calls was spent "
                        f"after {len(listing.pages)} page(s)"
                    )
                    break
                before = remembered.get(url)
                answer = self._call(session, url, before.etag if before else None, deadline)
                listing.calls += 1
                listing.rate_remaining = answer.headers.get("x-ratelimit-remaining", listing.rate_remaining)
                self._raise_if_rate_limited(answer)
                if answer.status == 304 and before is not None:
                    listing.pages.append(before)
                    url = before.next_url
                    continue
                if answer.status != 200:
                    message = error_message(answer.body)
                    raise ReleasesApiError(
                        f"GitHub releases API: {mask_url(url)} answered HTTP {answer.status}"
                        f"{': ' + message if message else ''}"
                    )
                assets = self._assets(answer.body, url)
                next_url = resolve_link(url, next_link(answer.headers.get("Link")))
                listing.changed_pages += 1
                listing.assets += assets
                if next_url is not None and not self.same_origin(next_url):
                    listing.truncate(
                        f"page {len(listing.pages) + 1} ({mask_url(url)}) links its next page to "
                        f"another host ({origin_text(next_url)}), not followed: requests and the "
                        f"token go only to {origin_text(self.api_url)}"
                    )
                    # Kept without ETag (and link): the next tick reads it again and warns again.
                    listing.pages.append(PageState(url, None, None))
                    break
                listing.pages.append(PageState(url, answer.headers.get("ETag"), next_url))
                url = next_url
        return listing

    def _raise_if_rate_limited(self, answer: _Answer) -> None:
        retry_at = rate_limit_retry_at(answer.status, answer.headers, self.clock())
        if retry_at is None:
            return
        remaining = answer.headers.get("x-ratelimit-remaining", "?")[:20]
        raise RateLimited(
            f"GitHub releases API rate limit reached (HTTP {answer.status}, "
            f"x-ratelimit-remaining={remaining}); asking again after {retry_at:%Y-%m-%d %H:%M:%S} UTC"
            + ("" if self._token else "; set TAXI_GITHUB_TOKEN for a higher limit"),
            retry_at,
        )

    def _timed_out(self, url: str, why: str) -> ReleasesApiError:
        return ReleasesApiError(f"GitHub releases API: {mask_url(url)} timed out ({why})")

    def _call(self, session: requests.Session, url: str, etag: str | None, deadline: float) -> _Answer:
        """One GET of `url`, over by `deadline` whatever the server does."""
        outcome: list[_Answer | BaseException] = []

        def work() -> None:
            try:
                outcome.append(self._fetch(session, url, etag, deadline))
            except BaseException as exc:  # handed over to the caller's thread
                outcome.append(exc)

        # In a thread, because requests' timeouts bound each socket read, not a call: a slow DNS
        # answer or headers dribbled byte by byte would hold the tick. A call given up here ends
        # by itself: at its next body chunk (the loop checks the deadline) or read timeout.
        worker = threading.Thread(target=work, name="releases-api-call", daemon=True)
        worker.start()
        worker.join(max(0.0, deadline - time.monotonic()))
        if not outcome:
            raise self._timed_out(
                url, f"no complete answer within the {self.budget_seconds:g} s budget of a tick"
            )
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    def _fetch(self, session: requests.Session, url: str, etag: str | None, deadline: float) -> _Answer:
        target = url
        for _ in range(MAX_REDIRECTS + 1):
            timeout = min(self.timeout_seconds, max(0.1, deadline - time.monotonic()))
            try:
                # Redirects by hand: only within the API's origin, where the token may go.
                response = session.get(
                    target, headers=self._headers(etag), timeout=timeout, allow_redirects=False, stream=True
                )
            except requests.Timeout:
                raise self._timed_out(url, f"no answer within {timeout:g} s") from None
            except requests.RequestException as exc:
                raise ReleasesApiError(
                    f"GitHub releases API: {mask_url(url)}: {type(exc).__name__}"
                ) from None
            with response:
                if response.is_redirect:
                    target = resolve_link(target, response.headers.get("Location")) or ""
                    if not self.same_origin(target):
                        raise ReleasesApiError(
                            f"GitHub releases API: {mask_url(url)} redirects to another host "
                            f"({origin_text(target)}), not followed: requests and the token go "
                            f"only to {origin_text(self.api_url)}"
                        )
                    continue
                body = self._read_body(response, url, timeout, deadline)
            return _Answer(response.status_code, response.headers, body)
        raise ReleasesApiError(f"GitHub releases API: {mask_url(url)}: more than {MAX_REDIRECTS} redirects")

    def _read_body(self, response: requests.Response, url: str, timeout: float, deadline: float) -> bytes:
        """The (decoded) body, read chunk by chunk: at most MAX_PAGE_BYTES, by `deadline`."""
        too_big = ReleasesApiError(
            f"GitHub releases API: {mask_url(url)} answered more than {MAX_PAGE_BYTES >> 20} MB "
            "(the limit of one page), not read further"
        )
        declared = response.headers.get("Content-Length", "").strip()
        if re.fullmatch(r"[0-9]+", declared) and int(declared) > MAX_PAGE_BYTES:
            raise too_big
        body = bytearray()
        try:
            # read1: at most one socket read per chunk, so the deadline is checked while a slow
            # server dribbles; decoded size is bounded per chunk too (no gzip bomb).
            while chunk := response.raw.read1(_CHUNK_BYTES, decode_content=True):
                body += chunk
                if len(body) > MAX_PAGE_BYTES:
                    raise too_big
                if time.monotonic() > deadline:
                    raise self._timed_out(
                        url, f"the body did not arrive within the {self.budget_seconds:g} s budget of a tick"
                    )
        except (TimeoutError, urllib3.exceptions.TimeoutError):
            raise self._timed_out(url, f"no data for {timeout:g} s") from None
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            raise ReleasesApiError(
                f"GitHub releases API: {mask_url(url)}: the answer broke off ({type(exc).__name__})"
            ) from None
        return bytes(body)

    @staticmethod
    def _assets(body: bytes, url: str) -> list[ReleaseAsset]:
        try:
            releases = json.loads(body)
            if not isinstance(releases, list):
                raise ValueError("not a list")
            return [
                ReleaseAsset(
                    tag=str(release["tag_name"]),
                    name=str(asset["name"]),
                    size=int(asset["size"]),
                    updated_at=str(asset["updated_at"]),
                    download_url=str(asset.get("browser_download_url", "")),
                    id=asset.get("id"),
                )
                for release in releases
                for asset in release.get("assets") or []
            ]
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError) as exc:
            raise ReleasesApiError(
                f"GitHub releases API: {mask_url(url)} answered an unexpected body "
                f"({type(exc).__name__}: {str(exc)[:100]})"
            ) from None
