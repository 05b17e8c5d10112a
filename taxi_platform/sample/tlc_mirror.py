"""A local imitation of the TLC's CloudFront distribution (d37ci6vzurychx.cloudfront.net).

Serves the files of a folder laid out like the distribution (`write_tlc_tree`) at `/trip-data/...`
and `/misc/...`, answering as CloudFront does: HEAD and GET with Content-Length, Last-Modified and a
quoted ETag (the md5 of the bytes); ranged GETs (206, or 416 past the end); conditional requests
(If-None-Match, If-Modified-Since: 304); and **403** with S3's AccessDenied XML for an object that
does not exist. Tests script failures ahead of the real answer (`TlcMirror.inject`, `fault_hook`)
and move Last-Modified (`TlcMirror.last_modified`) or the ETag (`TlcMirror.etags`), e.g. to imitate
a re-upload.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

CLOUDFRONT_URL = "https://d37ci6vzurychx.cloudfront.net"
PREFIXES = ("trip-data", "misc")
CONTENT_TYPES = {".parquet": "binary/octet-stream", ".csv": "text/csv"}
# S3's error codes and messages, as CloudFront relays them.
_ERRORS = {
    403: ("AccessDenied", "Access Denied"),
    404: ("NoSuchKey", "The specified key does not exist."),
    429: ("SlowDown", "Please reduce your request rate."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    503: ("ServiceUnavailable", "Please reduce your request rate."),
}


@dataclass(frozen=True)
class Fault:
    """An answer given instead of the file: a status (with S3's XML error body) and headers, or,
    with `truncate_after`, the real 200 answer cut off after that many body bytes."""

    status: int = 403
    headers: tuple[tuple[str, str], ...] = ()
    truncate_after: int | None = None


@dataclass(frozen=True)
class Request:
    """A request the mirror received (for tests to assert on)."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)


FaultHook = Callable[[Request], "Fault | int | None"]


def error_body(status: int) -> bytes:
    """S3's XML error document, as CloudFront relays it."""
    phrase = HTTPStatus(status).phrase
    code, message = _ERRORS.get(status, (phrase.replace(" ", ""), phrase))
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}'
        "</Message><RequestId>TLCMIRROR</RequestId><HostId>local</HostId></Error>"
    ).encode()


class TlcMirror:
    """The running server: `.url` (no trailing slash), `.close()`; usable as a context manager."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.root = Path(root).resolve()
        # Paths ("/trip-data/x.parquet") -> faults answered first, one per request, in order.
        self.faults: dict[str, deque[Fault | int]] = defaultdict(deque)
        self.fault_hook: FaultHook | None = None  # asked before the queues; None: no fault
        self.last_modified: dict[str, datetime] = {}  # path -> Last-Modified instead of the mtime
        # path -> ETag instead of the md5: S3 gives a multipart upload of the same bytes another one.
        self.etags: dict[str, str] = {}
        self.requests: list[Request] = []
        self._etags: dict[tuple[Path, int, int], str] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.mirror = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1})
        self._thread.daemon = True
        self._thread.start()

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`: the stand-in for CLOUDFRONT_URL."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def inject(self, path: str, *faults: Fault | int) -> None:
        """Answer the next requests of `path` with these faults (statuses or `Fault`s), in order."""
        with self._lock:
            self.faults["/" + path.lstrip("/")].extend(faults)

    def close(self) -> None:
        """Stop serving and release the port."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> TlcMirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_fault(self, request: Request) -> Fault | None:
        """The fault to answer `request` with, if any (the hook first, then the path's queue)."""
        found = self.fault_hook(request) if self.fault_hook else None
        if found is None:
            with self._lock:
                queue = self.faults.get(request.path)
                found = queue.popleft() if queue else None
        return Fault(found) if isinstance(found, int) else found

    def etag(self, path: Path, size: int, mtime_ns: int) -> str:
        """The quoted md5 of the file, computed once per (size, mtime)."""
        key = (path, size, mtime_ns)
        with self._lock:
            cached = self._etags.get(key)
        if cached is None:
            digest = hashlib.md5()
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            cached = f'"{digest.hexdigest()}"'
            with self._lock:
                self._etags[key] = cached
        return cached


def serve_tlc_mirror(root: Path, host: str = "127.0.0.1", port: int = 0) -> TlcMirror:
    """Start serving `root` (a `write_tlc_tree` layout) in a background thread."""
    return TlcMirror(root, host, port)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like CloudFront

    def version_string(self) -> str:
        return "AmazonS3"

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._answer()

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        pass  # tests read `TlcMirror.requests` instead

    @property
    def mirror(self) -> TlcMirror:
        return self.server.mirror  # type: ignore[attr-defined]

    def _answer(self) -> None:
        request = Request(self.command, unquote(urlsplit(self.path).path), dict(self.headers.items()))
        self.mirror.requests.append(request)
        fault = self.mirror.next_fault(request)
        if fault is not None and fault.truncate_after is None:
            self._error(fault.status, dict(fault.headers))
            return
        path = self._file(request.path)
        if path is None:  # CloudFront (S3 without list permission) says 403, not 404
            self._error(HTTPStatus.FORBIDDEN)
            return
        stat = path.stat()
        modified = self.mirror.last_modified.get(request.path)
        modified = _utc(modified) if modified else datetime.fromtimestamp(int(stat.st_mtime), UTC)
        etag = self.mirror.etags.get(request.path) or self.mirror.etag(path, stat.st_size, stat.st_mtime_ns)
        headers = {"ETag": etag, "Last-Modified": format_datetime(modified, usegmt=True)}
        headers["Accept-Ranges"] = "bytes"
        if self._not_modified(etag, modified):
            self._head(HTTPStatus.NOT_MODIFIED, headers)
            return
        start, end, status = 0, stat.st_size, HTTPStatus.OK
        wanted = self.headers.get("Range")
        if wanted and self._if_range(etag, modified):
            try:
                span = _byte_range(wanted, stat.st_size)
            except _NotSatisfiable:
                self._error(
                    HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, {"Content-Range": f"bytes */{stat.st_size}"}
                )
                return
            if span is not None:
                start, end, status = *span, HTTPStatus.PARTIAL_CONTENT
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{stat.st_size}"
        headers["Content-Type"] = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        headers["Content-Length"] = str(end - start)
        self._head(status, headers)
        if self.command == "GET":
            limit = end - start if fault is None else min(end - start, fault.truncate_after or 0)
            self._send_bytes(path, start, limit)
            if fault is not None:
                self.close_connection = True  # the promised length was not sent: hang up

    def _file(self, url_path: str) -> Path | None:
        parts = url_path.split("/")[1:]
        if len(parts) < 2 or parts[0] not in PREFIXES:
            return None
        if any(p in ("", ".", "..") or p.startswith(".") or "\\" in p for p in parts):
            return None  # no folders, no escapes, no generator temp files
        path = self.mirror.root.joinpath(*parts).resolve()
        return path if path.is_relative_to(self.mirror.root) and path.is_file() else None

    def _not_modified(self, etag: str, modified: datetime) -> bool:
        match = self.headers.get("If-None-Match")
        if match is not None:  # takes precedence over If-Modified-Since (RFC 9110)
            return match.strip() == "*" or etag in [m.strip() for m in match.split(",")]
        since = _http_date(self.headers.get("If-Modified-Since"))
        return since is not None and modified.replace(microsecond=0) <= since

    def _if_range(self, etag: str, modified: datetime) -> bool:
        """Whether to honour Range: no If-Range, or one naming the current version."""
        validator = self.headers.get("If-Range")
        if validator is None:
            return True
        if validator.strip().startswith('"'):
            return validator.strip() == etag
        since = _http_date(validator)
        return since is not None and modified.replace(microsecond=0) <= since

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _error(self, status: int, headers: dict[str, str] | None = None) -> None:
        body = error_body(status)
        self._head(
            status,
            {"Content-Type": "application/xml", "Content-Length": str(len(body)), **(headers or {})},
        )
        if self.command == "GET":
            self.wfile.write(body)

    def _send_bytes(self, path: Path, start: int, length: int) -> None:
        try:
            with open(path, "rb") as fh:
                fh.seek(start)
                shutil.copyfileobj(_Limited(fh, length), self.wfile, 1 << 20)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client hung up


class _Limited:
    """A file object reading at most `left` bytes."""

    def __init__(self, fh: BinaryIO, left: int) -> None:
        self.fh, self.left = fh, left

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.fh.read(size)
        self.left -= len(data)
        return data


class _NotSatisfiable(Exception):
    """The range lies past the end of the file (416)."""


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """[start, end) of a single `bytes=` range; None when not understood or several ranges (the
    whole file is served, as S3 does)."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if not first:  # the last N bytes: a footer read
            n = int(last)
            if n <= 0 or not size:
                raise _NotSatisfiable
            return max(size - n, 0), size
        start = int(first)
        end = min(int(last) + 1, size) if last else size
    except ValueError:
        return None
    if start >= size or start >= end:
        raise _NotSatisfiable
    return start, end


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
