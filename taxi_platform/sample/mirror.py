"""A local mirror of the release downloads: generated files in the release URL layout, over HTTP.

`write_mirror` fills `<root>/<release_tag>/<release_tag>_tripdata_<YYYY-MM>.csv.gz`, so that
`MirrorServer(root).base_url + "/<tag>/<file>"` answers like
`https://github.com/DataTalksClub/nyc-tlc-data/releases/download/<tag>/<file>`.

The server dispatches through a route table (first match wins, static files last), so further
endpoints, such as a GitHub-compatible releases API, can be added with `MirrorServer.add_route`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from taxi_platform.datasets import DatasetSpec
from taxi_platform.sample.generator import GeneratedFile, generate_month

# Bump when the generator's output changes, so existing mirrors are regenerated.
MANIFEST_VERSION = 1
MANIFEST_SUFFIX = ".json"
CONTENT_TYPES = {".gz": "application/gzip", ".csv": "text/csv", ".json": "application/json"}


def mirror_path(root: Path, spec: DatasetSpec, month: date) -> Path:
    """Where a month's file lives in a mirror: `<root>/<tag>/<tag>_tripdata_<YYYY-MM>.csv.gz`."""
    return Path(root) / spec.release_tag / spec.file_name(month)


def write_mirror(
    root: Path,
    specs: Iterable[DatasetSpec],
    months: Iterable[date],
    *,
    rows: int | Callable[[DatasetSpec, date], int],
    seed: int = 0,
    line_ending: str = "\n",
) -> list[GeneratedFile]:
    """Generate every (spec, month) file under root, reusing files whose manifest matches."""
    months = list(months)
    written = []
    for spec in specs:
        for month in months:
            n = rows(spec, month) if callable(rows) else rows
            path = mirror_path(root, spec, month)
            generated = _reusable(path, rows=n, seed=seed, line_ending=line_ending)
            if generated is None:
                generated = generate_month(spec, month, path, rows=n, seed=seed, line_ending=line_ending)
                _write_manifest(generated, seed)
            written.append(generated)
    return written


def _manifest_path(path: Path) -> Path:
    return path.with_name(path.name + MANIFEST_SUFFIX)


def _write_manifest(generated: GeneratedFile, seed: int) -> None:
    # Written after the data file, so a manifest always describes a complete file.
    fields = dataclasses.asdict(generated)
    fields.update(path=generated.path.name, month=generated.month.isoformat())
    manifest = {"version": MANIFEST_VERSION, "seed": seed, "size": generated.path.stat().st_size, **fields}
    target = _manifest_path(generated.path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, target)


def _reusable(path: Path, *, rows: int, seed: int, line_ending: str) -> GeneratedFile | None:
    """The manifest's description of an existing file generated with these settings, if any."""
    try:
        manifest = json.loads(_manifest_path(path).read_text())
        size = path.stat().st_size
    except (OSError, ValueError):
        return None
    wanted = {
        "version": MANIFEST_VERSION,
        "seed": seed,
        "rows": rows,
        "line_ending": line_ending,
        "size": size,
    }
    if any(manifest.get(k) != v for k, v in wanted.items()):
        return None
    names = {f.name for f in dataclasses.fields(GeneratedFile)}
    fields = {k: v for k, v in manifest.items() if k in names}
    fields.update(path=path, month=date.fromisoformat(manifest["month"]))
    return GeneratedFile(**fields)


# A route handler answers one request; `match` is the route pattern matched against the URL path.
RouteHandler = Callable[["MirrorRequestHandler", "re.Match[str]"], None]


@dataclass(frozen=True)
class Route:
    """Requests with one of `methods` whose URL path fully matches `pattern` go to `handler`."""

    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: RouteHandler


class MirrorRequestHandler(BaseHTTPRequestHandler):
    """Dispatches each request to the first matching route of its server's `MirrorServer`."""

    protocol_version = "HTTP/1.1"
    server_version = "taxi-platform-mirror"
    server: _MirrorHTTPServer

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._dispatch()

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch()

    @property
    def url_path(self) -> str:
        """The decoded path of the request URL, without query string."""
        return unquote(urlsplit(self.path).path)

    def _dispatch(self) -> None:
        path = self.url_path
        for route in self.server.mirror.routes:
            match = route.pattern.fullmatch(path)
            if match and self.command in route.methods:
                route.handler(self, match)
                return
        self.send_error(HTTPStatus.NOT_FOUND)

    def send_body(
        self,
        body: bytes,
        content_type: str,
        status: int = HTTPStatus.OK,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer with a complete in-memory body (no body on HEAD)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_file(self, path: Path) -> None:
        """Answer with a file's bytes, streamed (headers only on HEAD)."""
        with open(path, "rb") as f:
            stat = os.fstat(f.fileno())
            self.send_response(HTTPStatus.OK)
            content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(stat.st_size))
            self.send_header("Last-Modified", self.date_time_string(int(stat.st_mtime)))
            self.end_headers()
            if self.command != "HEAD":
                try:
                    shutil.copyfileobj(f, self.wfile, 1 << 20)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client hung up: nothing to answer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        if self.server.mirror.verbose:
            super().log_message(format, *args)


def serve_static(request: MirrorRequestHandler, match: re.Match[str]) -> None:
    """Serve a file below the mirror root; 404 for folders, hidden or missing files."""
    root = request.server.mirror.root
    parts = [p for p in match.group("path").split("/") if p]
    if any(p in ("..", ".") or "\\" in p or "\0" in p for p in parts):
        request.send_error(HTTPStatus.FORBIDDEN, "path outside the mirror")
        return
    # Dot-files are the generator's temp files and never part of the layout.
    if not parts or any(p.startswith(".") for p in parts):
        request.send_error(HTTPStatus.NOT_FOUND)
        return
    path = root.joinpath(*parts).resolve()
    if not path.is_relative_to(root):  # a symlink pointing out of the root
        request.send_error(HTTPStatus.FORBIDDEN, "path outside the mirror")
        return
    if not path.is_file():  # missing, or a folder: no directory listings
        request.send_error(HTTPStatus.NOT_FOUND)
        return
    request.send_file(path)


class _MirrorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a hung client must not keep the process alive

    def __init__(self, address: tuple[str, int], mirror: MirrorServer) -> None:
        self.mirror = mirror
        super().__init__(address, MirrorRequestHandler)


class MirrorServer:
    """Serves a mirror folder over HTTP on 127.0.0.1 from a daemon thread."""

    STATIC_ROUTE = Route(frozenset({"GET", "HEAD"}), re.compile(r"/(?P<path>.*)"), serve_static)

    def __init__(self, root: Path, *, port: int = 0, verbose: bool = False) -> None:
        self.root = Path(root).resolve()
        self.port = port
        self.verbose = verbose
        self.routes: list[Route] = [self.STATIC_ROUTE]
        self._httpd: _MirrorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def add_route(
        self, pattern: str, handler: RouteHandler, methods: Iterable[str] = ("GET", "HEAD")
    ) -> None:
        """Route URL paths fully matching the regex `pattern` to handler, ahead of static files."""
        route = Route(frozenset(m.upper() for m in methods), re.compile(pattern), handler)
        self.routes.insert(len(self.routes) - 1, route)

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>` of the running server."""
        if self._httpd is None:
            raise RuntimeError("the mirror server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> MirrorServer:
        """Bind and start serving in a background thread."""
        if self._httpd is not None:
            raise RuntimeError("the mirror server is already running")
        self._httpd = _MirrorHTTPServer(("127.0.0.1", self.port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"mirror-server:{self._httpd.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (no-op when not running)."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> MirrorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
