"""Streaming download of a release file to disk, with retries and verification in the same pass.

Retries with exponential backoff (honouring Retry-After) on 429, 5xx and connection errors; a 404
fails at once with a message naming the URL and the month. The bytes are hashed, decompressed and
checked (gzip completeness, header, field counts) while they are written, so a bad file is caught
before anything downstream runs, without a second read.
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlsplit

import requests

from taxi_platform.datasets import DatasetSpec
from taxi_platform.redact import mask_url
from taxi_platform.source.verify import CsvInspector, Inspector, InvalidReleaseFile

CHUNK = 1 << 20
PROGRESS_EVERY_SECONDS = 10.0
RETRY_STATUSES = {429, 500, 502, 503, 504}
MAX_BACKOFF_SECONDS = 60.0


class ReleaseFileNotFound(FileNotFoundError):
    """The release has no such file (HTTP 404 / missing local file)."""

    def __init__(self, url: str, what: str) -> None:
        self.url = url
        super().__init__(f"{what}: {mask_url(url)} was not found (404): no release file for it")


class DownloadFailed(RuntimeError):
    """Gave up after retries; the message names the URL, the month and the last error."""


@dataclass(frozen=True)
class DownloadResult:
    url: str
    path: Path
    bytes: int
    sha256: str
    rows: int
    decompressed_bytes: int
    line_ending: str
    attempts: int
    seconds: float


class _RetryableError(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def download_release_file(url: str, dest: Path, spec: DatasetSpec, month: date,
                          **options) -> DownloadResult:
    """A monthly trip file: gzip, header and field counts verified while it streams."""
    return download_file(url, dest, what=f"{spec.name} {month:%Y-%m}",
                         new_inspector=lambda: CsvInspector(spec, spec.file_name(month)), **options)


def download_file(
    url: str,
    dest: Path,
    *,
    what: str,
    new_inspector: Callable[[], Inspector],
    attempts: int = 5,
    timeout: float = 60.0,
    backoff_base: float = 1.0,
    log: Callable[[str], None] = lambda _m: None,
    sleep: Callable[[float], None] = time.sleep,
) -> DownloadResult:
    """Stream `url` into `dest`, verifying it on the way; `dest` only exists if it is valid.

    `what` names the file in messages (`yellow 2019-01`); `new_inspector` verifies one attempt.
    """
    shown = mask_url(url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    started = time.monotonic()
    last_error = ""
    for attempt in range(1, attempts + 1):
        try:
            result = _attempt(url, part, what, new_inspector(), timeout, log)
        except _RetryableError as exc:
            last_error = str(exc)
            part.unlink(missing_ok=True)
            if attempt == attempts:
                break
            delay = exc.retry_after
            if delay is None:
                delay = backoff_base * 2 ** (attempt - 1) * (0.5 + random.random() / 2)
            delay = min(delay, MAX_BACKOFF_SECONDS)
            log(f"{shown}: {exc}; retry {attempt}/{attempts - 1} in {delay:.1f}s")
            sleep(delay)
            continue
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        part.replace(dest)
        return DownloadResult(url=url, path=dest, attempts=attempt,
                              seconds=time.monotonic() - started, **result)
    raise DownloadFailed(
        f"{what}: gave up on {shown} after {attempts} attempts; last error: {last_error}"
    )


def _attempt(url: str, part: Path, what: str, inspector: Inspector, timeout: float,
             log: Callable[[str], None]) -> dict:
    sha = hashlib.sha256()
    written = 0
    last_report = time.monotonic()
    with open(part, "wb") as out:
        for chunk, total in _stream(url, what, timeout):
            out.write(chunk)
            sha.update(chunk)
            inspector.feed(chunk)
            written += len(chunk)
            now = time.monotonic()
            if now - last_report >= PROGRESS_EVERY_SECONDS:
                of = f" of {total:,}" if total else ""
                log(f"{what}: {written:,}{of} bytes downloaded")
                last_report = now
    inspection = inspector.finish(local_copy=part)
    return dict(bytes=written, sha256=sha.hexdigest(), rows=inspection.rows,
                decompressed_bytes=inspection.decompressed_bytes,
                line_ending=inspection.line_ending)


def _stream(url: str, what: str, timeout: float):
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
    try:
        response = requests.get(url, stream=True, timeout=timeout)
    except requests.RequestException as exc:
        raise _RetryableError(f"connection error: {type(exc).__name__}") from None
    with response:
        if response.status_code == 404:
            raise ReleaseFileNotFound(url, what)
        if response.status_code in RETRY_STATUSES:
            raise _RetryableError(f"HTTP {response.status_code}", _retry_after(response))
        if response.status_code != 200:
            raise DownloadFailed(f"{what}: {mask_url(url)} answered HTTP {response.status_code}")
        total = int(response.headers.get("Content-Length") or 0)
        try:
            for chunk in response.iter_content(CHUNK):
                yield chunk, total
        except InvalidReleaseFile:
            raise
        except requests.RequestException as exc:
            raise _RetryableError(f"connection lost mid-download: {type(exc).__name__}") from None
