"""Downloads and verification against hostile servers and files: permanent errors fail at once
naming the URL or path, slow servers time out, valid formats are accepted, sizes are bounded."""

from __future__ import annotations

import gzip
import os
import threading
import time
import tracemalloc
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
from support.paths import REAL_SAMPLES

from taxi_platform.datasets import YELLOW
from taxi_platform.source.download import STALE_PART_SECONDS, download_release_file
from taxi_platform.source.download_errors import DownloadFailed, PermanentDownloadError
from taxi_platform.source.verify import InvalidReleaseFile

MONTH = date(2021, 1, 1)
SAMPLE = REAL_SAMPLES / "yellow_tripdata_2021-01.head22791.csv"
FILE = "yellow_tripdata_2021-01.csv.gz"


class Server:
    """A local HTTP server whose GET is `handler(request_handler)`; counts requests."""

    def __init__(self, handle):
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                handle(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.base}/yellow/{FILE}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(handle):
        servers.append(Server(handle))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _answer(status, body=b"", headers=None):
    def handle(h):
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return handle


def _download(url, dest, **kw):
    logs: list[str] = []
    sleeps: list[float] = []
    options = dict(attempts=4, timeout=5, log=logs.append, sleep=sleeps.append)
    options.update(kw)
    result = download_release_file(url, dest, YELLOW, MONTH, **options)
    return result, logs, sleeps


@pytest.fixture(scope="module")
def csv_bytes() -> bytes:
    return SAMPLE.read_bytes()


# --- permanent errors: at once, naming the URL or the path ---------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 410])
def test_a_client_error_fails_at_once_naming_the_url(serve, tmp_path, status):
    server = serve(_answer(status, b"denied"))
    started = time.monotonic()
    with pytest.raises(PermanentDownloadError) as err:
        _download(server.url, tmp_path / FILE)
    assert server.requests == 1 and time.monotonic() - started < 5
    assert f"yellow 2021-01: {server.url} answered HTTP {status}" in str(err.value)
    assert not list(tmp_path.iterdir())


def test_a_redirect_loop_fails_at_once(serve, tmp_path):
    server = serve(_answer(302, headers={"Location": "/yellow/" + FILE}))
    with pytest.raises(PermanentDownloadError, match=r"redirects in a loop"):
        _download(server.url, tmp_path / FILE)
    assert server.requests <= 31  # requests' own limit of 30 redirects, one attempt


def test_a_full_disk_fails_at_once_naming_the_path(serve, tmp_path, csv_bytes):
    server = serve(_answer(200, gzip.compress(csv_bytes)))
    dest = tmp_path / FILE
    # Writing the .part file hits ENOSPC, as on a full disk.
    (tmp_path / (FILE + ".part")).symlink_to("/dev/full")
    with pytest.raises(PermanentDownloadError) as err:
        _download(server.url, dest)
    assert server.requests == 1
    assert f"cannot write {tmp_path / (FILE + '.part')}: No space left on device" in str(err.value)


def test_a_home_that_is_a_file_fails_at_once_naming_the_path(serve, tmp_path, csv_bytes):
    server = serve(_answer(200, gzip.compress(csv_bytes)))
    home = tmp_path / "home"
    home.write_text("not a folder")
    with pytest.raises(PermanentDownloadError) as err:
        _download(server.url, home / "downloads" / FILE)
    assert server.requests == 0
    assert f"cannot write {home / 'downloads'}" in str(err.value)


def test_the_raw_step_does_not_retry_a_permanent_error(serve, env):
    import dataclasses

    from support.run_results import failure_message

    server = serve(_answer(403, b"denied"))
    env.settings = dataclasses.replace(env.settings, source_url=server.base)
    started = time.monotonic()
    result = env.materialize(YELLOW, date(2019, 1, 1))
    assert not result.success and time.monotonic() - started < 25  # the step retry waits 30 s
    assert server.requests == 1
    assert "yellow 2019-01: " in failure_message(result) and "answered HTTP 403" in failure_message(result)


# --- slow servers: "timed out", and an overall deadline ------------------------------------------


def test_a_stalled_server_is_reported_as_timed_out(serve, tmp_path):
    def stall(h):
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        h.wfile.write(b"\x1f")
        h.wfile.flush()
        time.sleep(3)

    server = serve(stall)
    with pytest.raises(DownloadFailed) as err:
        _download(server.url, tmp_path / FILE, attempts=2, timeout=1)
    assert "timed out: no data for 1 s mid-download" in str(err.value)


def test_a_dribbling_server_meets_the_deadline(serve, tmp_path, csv_bytes):
    body = gzip.compress(csv_bytes)

    def dribble(h):
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        for i in range(len(body)):
            h.wfile.write(body[i : i + 1])
            h.wfile.flush()
            time.sleep(0.2)

    server = serve(dribble)
    started = time.monotonic()
    with pytest.raises(PermanentDownloadError) as err:
        _download(server.url, tmp_path / FILE, timeout=5, deadline=2)
    assert time.monotonic() - started < 6
    assert "timed out" in str(err.value) and "(TAXI_DOWNLOAD_DEADLINE)" in str(err.value)
    assert not list(tmp_path.iterdir())


# --- valid formats are accepted -------------------------------------------------------------------


def test_content_encoding_gzip_keeps_the_file_as_sent(serve, tmp_path, csv_bytes):
    body = gzip.compress(csv_bytes)
    server = serve(_answer(200, body, {"Content-Encoding": "gzip", "Content-Type": "text/csv"}))
    result, _, _ = _download(server.url, tmp_path / FILE)
    assert result.rows == 22_791 and (tmp_path / FILE).read_bytes() == body


def test_bytes_after_a_complete_gzip_are_ignored(serve, tmp_path, csv_bytes):
    server = serve(_answer(200, gzip.compress(csv_bytes) + b"\0" * 512 + b"trailing garbage"))
    result, _, _ = _download(server.url, tmp_path / FILE)
    assert result.rows == 22_791


def _with_lines(csv_bytes: bytes, replace: dict[int, bytes]) -> bytes:
    lines = csv_bytes.split(b"\n")
    for number, line in replace.items():  # 1-based file line numbers
        lines[number - 1] = line
    return b"\n".join(lines)


def test_quoted_fields_blank_lines_and_a_trailing_blank_line_are_read_as_csv(serve, tmp_path, csv_bytes):
    line5 = csv_bytes.split(b"\n")[4].split(b",")
    line5[6] = b'"N"'  # store_and_fwd_flag quoted
    quoted = b",".join(line5)
    data = _with_lines(csv_bytes, {5: quoted, 9: b'"x,y"' + b"," * 17}) + b"\n\n"
    data = data.replace(
        b"\n" + csv_bytes.split(b"\n")[20] + b"\n", b"\n\n" + csv_bytes.split(b"\n")[20] + b"\n"
    )
    server = serve(_answer(200, gzip.compress(data)))
    result, _, _ = _download(server.url, tmp_path / FILE)
    assert result.rows == 22_791  # one blank line inside, one at the end: not rows


def test_an_unterminated_quote_is_named_at_its_line(serve, tmp_path, csv_bytes):
    line72 = csv_bytes.split(b"\n")[71].replace(b",N,", b',"N,', 1)
    server = serve(_answer(200, gzip.compress(_with_lines(csv_bytes, {72: line72}))))
    with pytest.raises(InvalidReleaseFile, match=rf"{FILE} line 72: a quoted field is not closed"):
        _download(server.url, tmp_path / FILE)


def test_a_header_only_file_is_refused_clearly(serve, tmp_path, csv_bytes):
    header = csv_bytes.split(b"\n")[0]
    for body in (header + b"\n", header, header + b"\n\n"):
        server = serve(_answer(200, gzip.compress(body)))
        with pytest.raises(InvalidReleaseFile, match=rf"{FILE}: the file holds a header and no rows"):
            _download(server.url, tmp_path / FILE)


def test_a_bom_before_the_header_is_accepted(serve, tmp_path, csv_bytes):
    server = serve(_answer(200, gzip.compress(b"\xef\xbb\xbf" + csv_bytes)))
    result, _, _ = _download(server.url, tmp_path / FILE)
    assert result.rows == 22_791


# --- hostile sizes --------------------------------------------------------------------------------


def test_a_gzip_bomb_is_refused_in_bounded_memory(serve, tmp_path, csv_bytes):
    header = csv_bytes.split(b"\n", 1)[0] + b"\n"
    bombs = {
        "no line end": gzip.compress(b"\0" * (200 << 20), 9),
        "one endless row": gzip.compress(header + b"1" * (200 << 20), 9),
    }
    for what, bomb in bombs.items():
        assert len(bomb) < 400_000, what
        server = serve(_answer(200, bomb))
        tracemalloc.start()
        try:
            with pytest.raises(
                InvalidReleaseFile, match=r"line [12]: (no line end in the first|a line longer than) 1 MB"
            ):
                _download(server.url, tmp_path / FILE)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 40 << 20, (what, peak)


def test_a_header_error_quotes_a_bounded_part_of_the_line(serve, tmp_path):
    header = ",".join(f"column_{i}_" + "x" * 60 for i in range(1200)).encode()  # ~80 KB
    server = serve(_answer(200, gzip.compress(header + b"\n1,2\n")))
    with pytest.raises(InvalidReleaseFile) as err:
        _download(server.url, tmp_path / FILE)
    message = str(err.value)
    assert message.startswith(f"{FILE} line 1: the header does not match the yellow spec")
    assert "unexpected column_0_x" in message and "more" in message and len(message) < 2000


def test_huge_retry_after_is_clamped(serve, tmp_path, csv_bytes):
    answers = iter(
        [
            _answer(503, b"busy", {"Retry-After": "1e12"}),
            _answer(429, b"slow", {"Retry-After": "nan"}),
            _answer(200, gzip.compress(csv_bytes)),
        ]
    )
    server = serve(lambda h: next(answers)(h))
    result, _, sleeps = _download(server.url, tmp_path / FILE)
    assert result.attempts == 3 and sleeps[0] == 60.0 and sleeps[1] < 60.0


# --- leftovers ------------------------------------------------------------------------------------


def test_a_stale_part_file_is_removed_and_a_live_one_kept(serve, tmp_path, csv_bytes):
    stale = tmp_path / "killed-run-yellow_tripdata_2019-05.csv.gz.part"
    live = tmp_path / "other-run-yellow_tripdata_2019-06.csv.gz.part"
    stale.write_bytes(b"x" * 100)
    live.write_bytes(b"y" * 100)
    old = time.time() - STALE_PART_SECONDS - 60
    os.utime(stale, (old, old))
    server = serve(_answer(200, gzip.compress(csv_bytes)))
    _, logs, _ = _download(server.url, tmp_path / FILE)
    assert not stale.exists() and live.exists()
    assert any(stale.name in line for line in logs)


# --- what verification accepts, the engine loads ---------------------------------------------------


def test_a_file_with_bom_quotes_blank_lines_and_trailing_bytes_loads_whole(env, csv_bytes):
    from support.run_results import materialization_metadata

    lines = csv_bytes.split(b"\n")
    fields = lines[4].split(b",")
    fields[6] = b'"N"'
    lines[4] = b",".join(fields)
    lines.insert(30, b"")
    data = b"\xef\xbb\xbf" + b"\r\n".join(lines) + b"\r\n"
    month = date(2021, 1, 1)
    path = env.mirror_path(YELLOW, month)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) + b"\0" * 64)
    result = env.materialize(YELLOW, month, raise_on_error=True)
    raw = materialization_metadata(result, dg.AssetKey(["lake", "yellow_tripdata_file"]))
    staged = materialization_metadata(result, dg.AssetKey(["staging", "yellow_tripdata_staging"]))
    assert raw["rows"] == 22_791 and staged["rows_read"] == 22_791
    distinct = env.query(f"SELECT count(*), count(DISTINCT unique_row_id) FROM {env.final(YELLOW)}")[0]
    assert distinct[0] == distinct[1] == 22_791 - staged["duplicates_dropped"]
    assert env.query(f"SELECT count(*) FROM {env.final(YELLOW)} WHERE store_and_fwd_flag = 'N'")[0][0] > 0


def test_a_leftover_part_that_cannot_be_removed_does_not_stop_downloads(serve, tmp_path, csv_bytes):
    stuck = tmp_path / "killed-run-yellow_tripdata_2019-05.csv.gz.part"
    stuck.mkdir()  # unlink() fails on it, as on a file of another owner
    (stuck / "x").write_text("x")
    old = time.time() - STALE_PART_SECONDS - 60
    os.utime(stuck, (old, old))
    server = serve(_answer(200, gzip.compress(csv_bytes)))
    result, logs, _ = _download(server.url, tmp_path / FILE)
    assert result.rows == 22_791 and stuck.exists()
    assert any(line.startswith(f"could not remove {stuck.name}") for line in logs)
