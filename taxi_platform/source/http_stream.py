"""One attempt at reading a release file's bytes: an HTTP GET streamed chunk by chunk (or a
file:// URL read from disk), each answer sorted into "retry later" (`RetryableError`: 429, 5xx,
connection errors, timeouts, a body cut short) or a failure that retrying cannot fix."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import unquote, urlsplit

import requests
import urllib3

from taxi_platform.redact import mask_url
from taxi_platform.source.download_errors import PermanentDownloadError, ReleaseFileNotFound

CHUNK = 1 << 20
RETRY_STATUSES = {429, 500, 502, 503, 504}
MAX_BACKOFF_SECONDS = 60.0


# What a 403 means: "fail" (permanent: access denied), "missing" (like a 404), "retry" (like a 429).
Forbidden = Literal["fail", "missing", "retry"]


class RetryableError(Exception):
    """A failure that may pass: wait (`retry_after` seconds, if the server said) and try again."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def retry_after_seconds(response: requests.Response) -> float | None:
    """Retry-After in seconds, if it is a sane number (an HTTP date or garbage: None)."""
    value = response.headers.get("Retry-After")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    if seconds is None or seconds != seconds:  # NaN
        return None
    return min(max(0.0, seconds), MAX_BACKOFF_SECONDS)


def _cut_short(url: str, received: int, total: int) -> str:
    name = PurePosixPath(unquote(urlsplit(url).path)).name or mask_url(url)
    return f"{name}: cut short: {received:,} of {total:,} bytes (Content-Length)"


def stream_file(url: str, what: str, timeout: float, on_forbidden: Forbidden = "fail"):
    """(chunk, Content-Length or 0) pairs of the file at `url`, as they arrive."""
    scheme = urlsplit(url).scheme
    if scheme == "file":
        path = Path(unquote(urlsplit(url).path))
        if not path.is_file():
            raise ReleaseFileNotFound(url, what)
        total = path.stat().st_size
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk, total
        return
    shown = mask_url(url)
    try:
        # identity: the file's own bytes, never a transport encoding on top of them.
        response = requests.get(url, stream=True, timeout=timeout, headers={"Accept-Encoding": "identity"})
    except requests.TooManyRedirects:
        raise PermanentDownloadError(f"{what}: {shown} redirects in a loop") from None
    except (
        requests.exceptions.InvalidURL,
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidSchema,
    ) as exc:
        raise PermanentDownloadError(
            f"{what}: {shown} is not a URL that can be downloaded "
            f"({type(exc).__name__}); check TAXI_SOURCE_URL"
        ) from None
    except requests.Timeout:
        raise RetryableError(f"timed out after {timeout:.0f} s waiting for the server") from None
    except requests.RequestException as exc:
        raise RetryableError(f"connection error: {type(exc).__name__}") from None
    with response:
        if response.status_code == 404 or (response.status_code == 403 and on_forbidden == "missing"):
            raise ReleaseFileNotFound(url, what, response.status_code)
        if response.status_code == 403 and on_forbidden == "retry":
            raise RetryableError(
                "HTTP 403 (the server answers it when throttling, or for a file it does not hold)",
                retry_after_seconds(response),
            )
        if response.status_code in RETRY_STATUSES:
            raise RetryableError(f"HTTP {response.status_code}", retry_after_seconds(response))
        if response.status_code != 200:
            raise PermanentDownloadError(
                f"{what}: {shown} answered HTTP {response.status_code}"
                + (" (access denied: is the URL right?)" if response.status_code in (401, 403) else "")
            )
        total = int(response.headers.get("Content-Length") or 0)
        raw = response.raw
        received = 0
        try:
            # read1: whatever has arrived (up to CHUNK), so the deadline is checked between reads
            # even when a server sends a byte at a time.
            while chunk := raw.read1(CHUNK, decode_content=False):
                received += len(chunk)
                yield chunk, total
        except urllib3.exceptions.ReadTimeoutError:
            raise RetryableError(f"timed out: no data for {timeout:.0f} s mid-download") from None
        except (urllib3.exceptions.HTTPError, requests.RequestException, ConnectionError) as exc:
            short = f"{_cut_short(url, received, total)}; " if received < total else ""
            raise RetryableError(f"{short}connection lost mid-download: {type(exc).__name__}") from None
        # urllib3 already refuses a short body; this holds should a transport not enforce it.
        if total and received < total:
            raise RetryableError(_cut_short(url, received, total))
