"""One conditional HEAD request of a TLC file (or a stat of a file:// mirror), and what its answer
means to the TLC sensor (`Probe`): a version, unchanged (304), missing (403/404) or a failure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import requests

from taxi_platform.automation.tlc_cursor import FileVersion
from taxi_platform.redact import mask_url


@dataclass(frozen=True)
class Probe:
    """The answer for one file: `version` when it is there (None with `unchanged`: a 304),
    `missing` for 403/404, `failure` (a reason) for what calls for backing off."""

    version: FileVersion | None = None
    unchanged: bool = False
    missing: int | None = None
    failure: str | None = None


def head_file(url: str, known: FileVersion | None, session: requests.Session, timeout: float) -> Probe:
    """A conditional HEAD of `url` (or a stat of a file:// URL, whose version is its mtime and size)."""
    if url.startswith("file://"):
        path = Path(unquote(urlsplit(url).path))
        try:
            stat = path.stat()
        except FileNotFoundError:
            return Probe(missing=404)
        except OSError as exc:
            return Probe(failure=f"{path}: {exc.strerror}")
        modified = format_datetime(datetime.fromtimestamp(stat.st_mtime, UTC), usegmt=True)
        return Probe(version=FileVersion(None, modified, stat.st_size))
    headers = {}
    if known is not None and known.etag:
        headers["If-None-Match"] = known.etag
    if known is not None and known.last_modified:
        headers["If-Modified-Since"] = known.last_modified
    try:
        answer = session.head(url, headers=headers, timeout=timeout, allow_redirects=True)
    except requests.RequestException as exc:
        return Probe(failure=f"{mask_url(url)}: {type(exc).__name__}")
    if answer.status_code == 304:
        return Probe(unchanged=True)
    if answer.status_code in (403, 404):
        return Probe(missing=answer.status_code)
    if answer.status_code != 200:
        return Probe(failure=f"{mask_url(url)} answered {answer.status_code}")
    try:
        size = int(answer.headers.get("Content-Length", ""))
    except ValueError:
        return Probe(failure=f"{mask_url(url)} answered without a Content-Length")
    return Probe(version=FileVersion(answer.headers.get("ETag"), answer.headers.get("Last-Modified"), size))
