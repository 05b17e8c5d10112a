"""Streaming download: retries with backoff, clear 404s, verification of the gzip stream."""

from __future__ import annotations

import gzip
import threading
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support.paths import REAL_SAMPLES

from taxi_platform.datasets import YELLOW
from taxi_platform.source.download import download_release_file
from taxi_platform.source.download_errors import DownloadFailed, ReleaseFileNotFound
from taxi_platform.source.verify import InvalidReleaseFile

MONTH = date(2021, 1, 1)
SAMPLE = REAL_SAMPLES / "yellow_tripdata_2021-01.head22791.csv"


class ScriptedServer:
    """Answers the n-th request with the n-th scripted (status, body, headers); then the last one."""

    def __init__(self, script):
        self.script = script
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                step = outer.script[min(outer.requests, len(outer.script) - 1)]
                outer.requests += 1
                status, body, headers = step
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(headers.get("X-Claimed-Length", len(body))))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/yellow/yellow_tripdata_2021-01.csv.gz"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def good_gz() -> bytes:
    return gzip.compress(SAMPLE.read_bytes())


def _download(url, tmp_path, **kw):
    sleeps: list[float] = []
    logs: list[str] = []
    result = download_release_file(
        url,
        tmp_path / "out.csv.gz",
        YELLOW,
        MONTH,
        attempts=kw.pop("attempts", 4),
        timeout=5,
        log=logs.append,
        sleep=sleeps.append,
        **kw,
    )
    return result, sleeps, logs


def test_retries_on_503_and_429_then_succeeds(tmp_path: Path, good_gz: bytes):
    script = [(503, b"busy", {}), (429, b"slow down", {"Retry-After": "2"}), (200, good_gz, {})]
    with ScriptedServer(script) as url:
        result, sleeps, logs = _download(url, tmp_path)
    assert result.attempts == 3 and result.rows == 22_791 and result.bytes == len(good_gz)
    assert sleeps[1] == 2.0  # Retry-After honoured
    assert 0.5 <= sleeps[0] <= 1.0  # backoff base 1s with jitter
    assert "HTTP 503" in logs[0] and "HTTP 429" in logs[1]
    import hashlib

    assert result.sha256 == hashlib.sha256(good_gz).hexdigest()
    assert (tmp_path / "out.csv.gz").read_bytes() == good_gz


def test_gives_up_with_a_clear_message(tmp_path: Path):
    with ScriptedServer([(502, b"bad gateway", {})]) as url:
        with pytest.raises(DownloadFailed) as err:
            _download(url, tmp_path, attempts=3)
    assert "yellow 2021-01: gave up on http://127.0.0.1" in str(err.value)
    assert "after 3 attempts; last error: HTTP 502" in str(err.value)
    assert not (tmp_path / "out.csv.gz").exists()


def test_404_fails_at_once_naming_url_and_month(tmp_path: Path):
    server = ScriptedServer([(404, b"Not Found", {})])
    with server as url:
        with pytest.raises(ReleaseFileNotFound) as err:
            _download(url, tmp_path)
    assert server.requests == 1
    assert str(err.value).startswith("yellow 2021-01: http://127.0.0.1:")
    assert "/yellow/yellow_tripdata_2021-01.csv.gz was not found (404)" in str(err.value)


def test_connection_cut_mid_body_is_retried(tmp_path: Path, good_gz: bytes):
    # The server claims more bytes than it sends: the client sees the connection end early.
    script = [(200, good_gz[:1000], {"X-Claimed-Length": len(good_gz)}), (200, good_gz, {})]
    with ScriptedServer(script) as url:
        result, _, logs = _download(url, tmp_path)
    assert result.attempts == 2 and result.rows == 22_791
    assert "connection" in logs[0]


def test_truncated_gzip_is_refused(tmp_path: Path, good_gz: bytes):
    with ScriptedServer([(200, good_gz[: len(good_gz) // 2], {})]) as url:
        with pytest.raises(InvalidReleaseFile) as err:
            _download(url, tmp_path)
    assert "yellow_tripdata_2021-01.csv.gz: the gzip stream ends early" in str(err.value)
    assert not list(tmp_path.iterdir())  # no partial file left behind


def test_file_url(tmp_path: Path, good_gz: bytes):
    src = tmp_path / "mirror" / "yellow" / "yellow_tripdata_2021-01.csv.gz"
    src.parent.mkdir(parents=True)
    src.write_bytes(good_gz)
    result, _, _ = _download(src.as_uri(), tmp_path)
    assert result.rows == 22_791 and result.line_ending == "\n"
    with pytest.raises(ReleaseFileNotFound):
        _download((tmp_path / "missing.csv.gz").as_uri(), tmp_path)


def test_password_in_source_url_is_masked(tmp_path: Path):
    with ScriptedServer([(502, b"bad gateway", {})]) as url:
        secret_url = url.replace("http://", "http://reader:hunter2-secret@")
        with pytest.raises(DownloadFailed) as err:
            _download(secret_url, tmp_path, attempts=2)
    assert "hunter2-secret" not in str(err.value)
    assert "http://reader:***@127.0.0.1" in str(err.value)


def test_multi_member_gzip_and_missing_final_newline(tmp_path: Path):
    data = SAMPLE.read_bytes().rstrip(b"\n")
    half = data.index(b"\n", len(data) // 2) + 1
    src = tmp_path / "m.csv.gz"
    src.write_bytes(gzip.compress(data[:half]) + gzip.compress(data[half:]))
    result, _, _ = _download(src.as_uri(), tmp_path)
    assert result.rows == 22_791
