"""The TLC's Parquet releases: URL layout, every real file verified with its true row count and the
fingerprint of its schema era, damaged files and wrong bodies refused naming the file, and
CloudFront's 403 taken as "not published" outside the published range and retried inside it.

Expectations come from pyarrow reading the real files directly, not from the inspector."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import replace
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from support.paths import REAL_SAMPLES, ZONES_CSV

from taxi_platform.datasets import ALL_DATASETS, GREEN, ZONES
from taxi_platform.source.download_errors import DownloadFailed, PermanentDownloadError, ReleaseFileNotFound
from taxi_platform.source.resource import ReleaseSource
from taxi_platform.source.tlc import TlcSource, tlc_file_url, tlc_zones_url
from taxi_platform.source.verify import InvalidReleaseFile

REAL_PARQUET = REAL_SAMPLES.parent / "real_parquet"
REAL_FILES = sorted(REAL_PARQUET.glob("green_tripdata_*.parquet"))
# Green as the TLC publishes it (the module spec describes the course's CSV months).
TLC_GREEN = replace(
    GREEN, file_extension="parquet", first_published=date(2014, 1, 1), last_published=date(2025, 2, 1)
)
APRIL = date(2023, 4, 1)
APRIL_FILE = "green_tripdata_2023-04.parquet"
RUN = "run1"


def month_of(path: Path) -> date:
    year, month = path.stem.rsplit("_", 1)[1].split("-")
    return date(int(year), int(month), 1)


def mirror(tmp_path: Path, name: str, data: bytes | None = None, real: Path | None = None) -> str:
    """A file:// mirror of the TLC layout holding one trip file: a link to a real file, or bytes."""
    target = tmp_path / "mirror" / "trip-data" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if real is not None:
        target.symlink_to(real)  # the real files are read where they are, never copied
    else:
        assert data is not None
        target.write_bytes(data)
    return (tmp_path / "mirror").as_uri()


def source(base_url: str, tmp_path: Path, **kw) -> TlcSource:
    options: dict[str, Any] = dict(attempts=3, timeout_seconds=5, backoff_base_seconds=0.0)
    options.update(kw)
    return TlcSource(base_url=base_url, scratch_dir=str(tmp_path / "scratch"), **options)


def fetch(base_url: str, tmp_path: Path, spec=TLC_GREEN, month=APRIL, **kw):
    logs: list[str] = []
    return source(base_url, tmp_path, **kw).fetch(spec, month, RUN, logs.append), logs


def scratch_files(tmp_path: Path) -> list[str]:
    folder = tmp_path / "scratch"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture(scope="module")
def april() -> bytes:
    return (REAL_PARQUET / APRIL_FILE).read_bytes()


# --- URLs ------------------------------------------------------------------------------------------


def test_urls_follow_the_tlc_layout_named_after_the_dataset():
    base = "https://d37ci6vzurychx.cloudfront.net/"
    for name, spec in ALL_DATASETS.items():
        # The dataset's name, never the course's release tag nor the spec's file extension.
        spec = replace(spec, release_tag=f"course-{name}", file_extension="csv.gz")
        assert tlc_file_url(base, spec, date(2019, 3, 1)) == (
            f"https://d37ci6vzurychx.cloudfront.net/trip-data/{name}_tripdata_2019-03.parquet"
        )
    assert tlc_zones_url(base) == "https://d37ci6vzurychx.cloudfront.net/misc/taxi_zone_lookup.csv"
    tlc = TlcSource(base_url="https://example.test/tlc", scratch_dir="/unused")
    assert tlc.url_for(GREEN, APRIL) == "https://example.test/tlc/trip-data/green_tripdata_2023-04.parquet"
    assert tlc.file_format == "parquet" and isinstance(tlc, ReleaseSource)


# --- the real files --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: p.stem)
def test_each_real_file_verifies_with_its_true_row_count(tmp_path, path):
    table = pq.read_table(path)
    result, _ = fetch(mirror(tmp_path, path.name, real=path), tmp_path, month=month_of(path))
    assert result.rows == table.num_rows > 40_000
    assert result.file_format == "parquet"
    assert result.columns == tuple((f.name, str(f.type)) for f in table.schema)
    assert result.row_groups == pq.ParquetFile(path).metadata.num_row_groups
    assert result.bytes == path.stat().st_size
    assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert result.path == tmp_path / "scratch" / f"{RUN}-{path.name}"
    assert result.path.read_bytes() == path.read_bytes()
    # The engine's definition (engine/parquet_select.py): names and pyarrow types, in file order.
    text = ";".join(f"{f.name}:{f.type}" for f in table.schema)
    assert result.schema_fingerprint == hashlib.sha256(text.encode()).hexdigest()[:12]


def test_green_2023_01_has_the_published_row_count(tmp_path):
    path = REAL_PARQUET / "green_tripdata_2023-01.parquet"
    result, _ = fetch(mirror(tmp_path, path.name, real=path), tmp_path, month=date(2023, 1, 1))
    assert result.rows == 68_211


def test_fingerprints_tell_the_schema_eras_apart(tmp_path):
    prints = {}
    for path in REAL_FILES:
        result, _ = fetch(mirror(tmp_path / path.stem, path.name, real=path), tmp_path, month=month_of(path))
        prints[path.stem[-7:]] = result.schema_fingerprint
    era_a, era_b, era_c = ("2020-12", "2022-01", "2023-01"), ("2023-04", "2024-03", "2024-12"), ("2025-02",)
    assert len({prints[m] for m in era_a}) == len({prints[m] for m in era_b}) == 1
    assert len({prints[era_a[0]], prints[era_b[0]], prints[era_c[0]]}) == 3


def test_the_fingerprint_does_not_depend_on_the_writer(tmp_path):
    # Era A was written by Arrow 7; the same columns and types written by today's pyarrow.
    original = REAL_PARQUET / "green_tripdata_2022-01.parquet"
    rewritten = tmp_path / "rewritten.parquet"
    pq.write_table(pq.read_table(original), rewritten, compression="snappy", row_group_size=20_000)
    month = date(2022, 1, 1)
    first, _ = fetch(mirror(tmp_path / "a", original.name, real=original), tmp_path, month=month)
    second, _ = fetch(mirror(tmp_path / "b", original.name, real=rewritten), tmp_path, month=month)
    assert second.row_groups == 4 and second.rows == first.rows == 62_495
    assert second.schema_fingerprint == first.schema_fingerprint


# --- damaged files ---------------------------------------------------------------------------------


def refused(tmp_path: Path, data: bytes) -> str:
    with pytest.raises(InvalidReleaseFile) as err:
        fetch(mirror(tmp_path, APRIL_FILE, data), tmp_path)
    assert scratch_files(tmp_path) == []  # nothing half-verified is left behind
    return str(err.value)


def test_a_file_cut_short_is_refused_naming_the_file(tmp_path, april):
    assert refused(tmp_path, april[:1_000_000]) == (
        f"{APRIL_FILE}: does not end with 'PAR1' (1,000,000 bytes): cut short, or not a whole Parquet file"
    )
    assert refused(tmp_path, april[:-1]).startswith(
        f"{APRIL_FILE}: does not end with 'PAR1' (1,570,466 bytes)"
    )


def test_a_corrupt_footer_is_refused(tmp_path, april):
    footer_length = int.from_bytes(april[-8:-4], "little")
    footer_start = len(april) - 8 - footer_length
    damaged = april[:footer_start] + b"\xff" * 64 + april[footer_start + 64 :]
    assert refused(tmp_path, damaged).startswith(
        f"{APRIL_FILE}: the footer cannot be read: Couldn't deserialize thrift"
    )
    lying_length = april[:-8] + (10**9).to_bytes(4, "little") + b"PAR1"
    assert refused(tmp_path, lying_length) == (
        f"{APRIL_FILE}: the footer cannot be read: it claims 1,000,000,000 bytes, the file holds "
        "1,570,467 (not a whole Parquet file)"
    )


def test_bytes_missing_before_the_footer_are_found_by_the_chunk_ranges(tmp_path, april):
    footer_start = len(april) - 8 - int.from_bytes(april[-8:-4], "little")
    damaged = april[:100_000] + april[200_000:]  # the footer intact, the data 100,000 bytes short
    message = refused(tmp_path, damaged)
    assert message.startswith(f"{APRIL_FILE}: row group 0, column ")
    assert f"lie outside the data (bytes 4..{footer_start - 100_000:,} before the footer)" in message


def test_a_damaged_page_is_found_by_decoding(tmp_path, april):
    chunk = pq.ParquetFile(REAL_PARQUET / APRIL_FILE).metadata.row_group(0).column(1)
    assert chunk.path_in_schema == "lpep_pickup_datetime"
    at = chunk.data_page_offset
    damaged = april[:at] + b"\xee" * 16 + april[at + 16 :]  # its first page header
    assert refused(tmp_path, damaged).startswith(
        f"{APRIL_FILE}: row group 0, column lpep_pickup_datetime cannot be decoded: "
    )


@pytest.mark.parametrize(
    "body, named",
    [
        (
            b"<html><head><title>403 Forbidden</title></head></html>",
            "starts with '<html><head><tit'; an HTML",
        ),
        (b'<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>', "an HTML or XML page"),
        (b"VendorID,lpep_pickup_datetime\n2,2023-04-01 00:00:00\n", "starts with 'VendorID,lpep_pi'; a CSV"),
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "; a gzip file"),
    ],
)
def test_a_body_that_is_not_parquet_is_named(tmp_path, body, named):
    message = refused(tmp_path, body)
    assert message.startswith(f"{APRIL_FILE}: not a Parquet file (starts with ") and named in message


def test_empty_and_tiny_files_are_refused(tmp_path):
    assert refused(tmp_path / "a", b"") == f"{APRIL_FILE}: the file is empty (0 bytes)"
    assert refused(tmp_path / "b", b"PAR1PAR1").startswith(f"{APRIL_FILE}: 8 bytes: too short")


# --- HTTP: early failure, Content-Length, 403 ------------------------------------------------------


class Server:
    """A local HTTP server answering the n-th GET with answers[n] (then the last one)."""

    def __init__(self, answers):
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.paths.append(self.path)
                answers[min(len(outer.paths), len(answers)) - 1](self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(*answers):
        servers.append(Server(answers))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def answer(status, body=b"", claimed_length=None, then_wait=0.0):
    def handle(h):
        h.send_response(status)
        h.send_header("Content-Length", str(claimed_length if claimed_length is not None else len(body)))
        h.end_headers()
        h.wfile.write(body)
        h.wfile.flush()
        time.sleep(then_wait)

    return handle


def test_a_real_file_over_http(serve, tmp_path, april):
    server = serve(answer(200, april))
    result, _ = fetch(server.base, tmp_path)
    assert server.paths == [f"/trip-data/{APRIL_FILE}"]
    assert result.rows == pq.read_metadata(REAL_PARQUET / APRIL_FILE).num_rows == 65_392


def test_an_html_page_fails_on_its_first_bytes(serve, tmp_path):
    # The server promises a large file and stalls after its first bytes: no waiting for the rest.
    server = serve(answer(200, b"<html><body>Service unavailable", claimed_length=1 << 30, then_wait=10))
    started = time.monotonic()
    with pytest.raises(InvalidReleaseFile, match=rf"^{APRIL_FILE}: not a Parquet file \(starts with '<html"):
        fetch(server.base, tmp_path)
    assert time.monotonic() - started < 3 and len(server.paths) == 1


def test_a_body_shorter_than_its_content_length_is_retried_then_named(serve, tmp_path, april):
    server = serve(answer(200, april[:1_000_000], claimed_length=len(april)))
    with pytest.raises(DownloadFailed) as err:
        fetch(server.base, tmp_path, attempts=2)
    assert len(server.paths) == 2 and scratch_files(tmp_path) == []
    assert f"green 2023-04: gave up on {server.base}/trip-data/{APRIL_FILE} after 2 attempts" in str(
        err.value
    )
    assert f"last error: {APRIL_FILE}: cut short: 1,000,000 of 1,570,467 bytes (Content-Length)" in str(
        err.value
    )


def test_a_short_body_then_a_whole_one_succeeds(serve, tmp_path, april):
    server = serve(answer(200, april[:1_000_000], claimed_length=len(april)), answer(200, april))
    result, logs = fetch(server.base, tmp_path)
    assert result.attempts == 2 and result.rows == 65_392
    assert f"{APRIL_FILE}: cut short: 1,000,000 of 1,570,467 bytes" in logs[0]


@pytest.mark.parametrize("month", [date(2025, 3, 1), date(2013, 12, 1)], ids=["after", "before"])
def test_403_outside_the_published_range_means_not_published(serve, tmp_path, month):
    server = serve(answer(403, b"<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>"))
    with pytest.raises(ReleaseFileNotFound) as err:
        fetch(server.base, tmp_path, month=month)
    assert len(server.paths) == 1 and err.value.status == 403
    url = f"{server.base}/trip-data/green_tripdata_{month:%Y-%m}.parquet"
    assert str(err.value) == (
        f"green {month:%Y-%m}: {url} was not found (HTTP 403, which the server answers for a file "
        "it does not hold): not published yet"
    )


def test_403_inside_the_published_range_is_retried_then_given_up(serve, tmp_path):
    server = serve(answer(403, b"throttled"))
    with pytest.raises(DownloadFailed) as err:
        fetch(server.base, tmp_path, attempts=3)
    assert not isinstance(err.value, PermanentDownloadError) and len(server.paths) == 3
    assert str(err.value).startswith(
        f"green 2023-04: gave up on {server.base}/trip-data/{APRIL_FILE} after 3 attempts; "
        "last error: HTTP 403 (the server answers it when throttling, or for a file it does not hold)"
    )


def test_403_inside_the_range_then_the_file(serve, tmp_path, april):
    server = serve(answer(403, b"throttled"), answer(403, b"throttled"), answer(200, april))
    result, logs = fetch(server.base, tmp_path)
    assert result.attempts == 3 and result.rows == 65_392
    assert "HTTP 403" in logs[0] and "retry 1/2" in logs[0]


def test_the_course_source_still_takes_403_as_permanent(serve, tmp_path):
    server = serve(answer(403, b"denied"))
    course = ReleaseSource(base_url=server.base, scratch_dir=str(tmp_path), backoff_base_seconds=0)
    with pytest.raises(PermanentDownloadError, match=r"answered HTTP 403 \(access denied"):
        course.fetch(GREEN, date(2021, 8, 1), RUN, lambda _m: None)
    assert len(server.paths) == 1


# --- file:// ---------------------------------------------------------------------------------------


def test_a_missing_file_in_a_file_mirror_is_not_found(tmp_path):
    base = mirror(tmp_path, "green_tripdata_2023-03.parquet", b"unrelated")
    with pytest.raises(
        ReleaseFileNotFound, match=r"green 2023-04: file://.*/trip-data/green_tripdata_2023-04"
    ):
        fetch(base, tmp_path)


def test_the_zone_table_from_the_misc_folder(tmp_path):
    zones = tmp_path / "mirror" / "misc" / "taxi_zone_lookup.csv"
    zones.parent.mkdir(parents=True)
    zones.symlink_to(ZONES_CSV)
    result = source((tmp_path / "mirror").as_uri(), tmp_path).fetch_reference(ZONES, RUN, lambda _m: None)
    assert result.rows == 265 and result.file_format == "csv"
    assert result.path == tmp_path / "scratch" / f"{RUN}-taxi_zone_lookup.csv"
