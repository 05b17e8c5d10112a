"""The local CloudFront imitation: headers, 403 for missing objects, ranges, 304s and faults."""

from __future__ import annotations

import hashlib
import http.client
from datetime import UTC, date, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import pytest

from taxi_platform.datasets import FHVHV, GREEN
from taxi_platform.sample.parquet_generator import write_tlc_tree
from taxi_platform.sample.tlc_mirror import Fault, TlcMirror, serve_tlc_mirror

FILE = "/trip-data/fhvhv_tripdata_2023-03.parquet"
FOOTER = 64 * 1024


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tlc")
    # fhvhv rows are wide: 5,000 of them make a file larger than the 64 KiB footer read.
    write_tlc_tree(root, [FHVHV], [date(2023, 3, 1)], rows=5_000, seed=2)
    write_tlc_tree(root, [GREEN], [date(2023, 3, 1)], rows=100, seed=2)
    return root


@pytest.fixture
def mirror(tree: Path):
    with serve_tlc_mirror(tree) as running:
        yield running


def request(mirror: TlcMirror, method: str, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    host, port = mirror.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_head_and_get_headers(mirror: TlcMirror, tree: Path) -> None:
    data = (tree / FILE.lstrip("/")).read_bytes()
    assert len(data) > FOOTER
    status, head, body = request(mirror, "HEAD", FILE)
    assert status == 200 and body == b""
    assert int(head["Content-Length"]) == len(data)
    assert head["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    mtime = datetime.fromtimestamp(int((tree / FILE.lstrip("/")).stat().st_mtime), UTC)
    assert parsedate_to_datetime(head["Last-Modified"]) == mtime
    status, got, body = request(mirror, "GET", FILE)
    assert status == 200 and body == data
    assert got["ETag"] == head["ETag"] and got["Last-Modified"] == head["Last-Modified"]
    assert request(mirror, "GET", "/misc/taxi_zone_lookup.csv")[2].startswith(b'"LocationID"')


def test_missing_object_is_403(mirror: TlcMirror) -> None:
    for path in (
        "/trip-data/fhvhv_tripdata_2099-01.parquet",
        "/other/x",
        "/trip-data/../misc/taxi_zone_lookup.csv",
    ):
        status, headers, body = request(mirror, "GET", path)
        assert status == 403, path
        assert b"<Code>AccessDenied</Code>" in body and headers["Content-Type"] == "application/xml"
    status, _, body = request(mirror, "HEAD", "/trip-data/fhvhv_tripdata_2099-01.parquet")
    assert status == 403 and body == b""


def test_range_reads_the_footer(mirror: TlcMirror, tree: Path) -> None:
    data = (tree / FILE.lstrip("/")).read_bytes()
    status, headers, tail = request(mirror, "GET", FILE, Range=f"bytes=-{FOOTER}")
    assert status == 206 and tail == data[-FOOTER:]
    assert headers["Content-Range"] == f"bytes {len(data) - FOOTER}-{len(data) - 1}/{len(data)}"
    # The footer (schema and row counts) fits in the tail: its length, then the magic bytes.
    assert tail.endswith(b"PAR1") and int.from_bytes(tail[-8:-4], "little") + 8 <= FOOTER
    status, headers, head = request(mirror, "GET", FILE, Range="bytes=0-99")
    assert status == 206 and head == data[:100] and headers["Content-Length"] == "100"
    status, headers, _ = request(mirror, "GET", FILE, Range=f"bytes={len(data)}-")
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(data)}"


def test_conditional_requests(mirror: TlcMirror) -> None:
    _, head, _ = request(mirror, "HEAD", FILE)
    status, headers, body = request(mirror, "GET", FILE, **{"If-None-Match": head["ETag"]})
    assert status == 304 and body == b"" and headers["ETag"] == head["ETag"]
    assert request(mirror, "GET", FILE, **{"If-None-Match": '"other"'})[0] == 200
    assert request(mirror, "HEAD", FILE, **{"If-Modified-Since": head["Last-Modified"]})[0] == 304
    before = format_datetime(datetime(2020, 1, 1, tzinfo=UTC), usegmt=True)
    assert request(mirror, "HEAD", FILE, **{"If-Modified-Since": before})[0] == 200


def test_injected_faults_come_first(mirror: TlcMirror) -> None:
    mirror.inject(FILE, 429, 500, Fault(403))
    assert [request(mirror, "HEAD", FILE)[0] for _ in range(4)] == [429, 500, 403, 200]
    status, _, body = request(mirror, "GET", "/misc/taxi_zone_lookup.csv")
    assert status == 200 and body  # other paths are unaffected

    mirror.fault_hook = lambda r: 503 if r.method == "GET" and "green" in r.path else None
    assert request(mirror, "GET", "/trip-data/green_tripdata_2023-03.parquet")[0] == 503
    assert request(mirror, "HEAD", "/trip-data/green_tripdata_2023-03.parquet")[0] == 200
    assert [r.method for r in mirror.requests[-2:]] == ["GET", "HEAD"]


def test_truncated_answer(mirror: TlcMirror) -> None:
    mirror.inject(FILE, Fault(200, truncate_after=1_000))
    with pytest.raises(http.client.IncompleteRead) as raised:
        request(mirror, "GET", FILE)
    assert len(raised.value.partial) == 1_000
    assert request(mirror, "GET", FILE)[0] == 200  # the next one is whole


def test_last_modified_override_keeps_the_etag(mirror: TlcMirror) -> None:
    _, before, _ = request(mirror, "HEAD", FILE)
    reupload = datetime(2024, 7, 18, 19, 25, 14, tzinfo=UTC)
    mirror.last_modified[FILE] = reupload  # a re-upload with the same bytes
    _, after, _ = request(mirror, "HEAD", FILE)
    assert parsedate_to_datetime(after["Last-Modified"]) == reupload
    assert after["ETag"] == before["ETag"]
