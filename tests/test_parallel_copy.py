"""Large files load as line-aligned parts through parallel COPY streams (warehouse/copy_split.py):
the parts fit together exactly, file order (first occurrence wins) and error line numbers hold
across parts, and a failure of any stream leaves the previous rows and no half-loaded table."""

from __future__ import annotations

import gzip
import io
from datetime import date

import pytest

import taxi_platform.warehouse.postgres as postgres
from conftest import Env, failure_message, materialization_metadata, materialize_killing_copy
from expected import csv_lines, expected_from_file, read_gz, set_value, write_gz
from taxi_platform.assets.trips import final_key
from taxi_platform.datasets import YELLOW
from taxi_platform.sample.generator import generate_month
from taxi_platform.warehouse.copy_split import PartReader, gzip_uncompressed_size

JAN = date(2019, 1, 1)


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1)


def _parts(data: bytes, parts: int, total: int) -> list[PartReader]:
    readers = []
    for index in range(parts):
        reader = PartReader(io.BytesIO(_gz(data)), index, parts, total)
        readers.append(reader)
    return readers


def _read_all(reader: PartReader, size: int = 7) -> bytes:
    out = []
    while chunk := reader.read(size):
        out.append(chunk)
    return b"".join(out)


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"])
@pytest.mark.parametrize("parts", [1, 2, 3, 5])
@pytest.mark.parametrize("estimate", [1.0, 0.3, 3.0, 0.0])
@pytest.mark.parametrize("trailing_newline", [True, False])
def test_parts_fit_together_exactly(line_end, parts, estimate, trailing_newline):
    lines = [b"h1,h2"] + [f"{i},{'x' * (i % 13)}".encode() for i in range(997)]
    data = line_end.join(lines) + (line_end if trailing_newline else b"")
    readers = _parts(data, parts, int(len(data) * estimate))
    pieces = [_read_all(r) for r in readers]
    assert b"".join(pieces) == data
    # A part followed by data ends at a line end; each part knows how many lines precede it.
    seen = 0
    for i, (piece, reader) in enumerate(zip(pieces, readers)):
        assert reader.lines_before == seen
        if any(pieces[i + 1:]):
            assert piece == b"" or piece.endswith(b"\n")
        seen += piece.count(b"\n")


def test_parts_split_within_large_decompressed_chunks():
    # Chunks of the decompressor are ~MBs: the split points fall inside them.
    data = b"".join(f"{i:09d},{'y' * 50}\n".encode() for i in range(200_000))
    readers = _parts(data, 2, len(data))
    first, second = (_read_all(r, 1 << 20) for r in readers)
    assert first + second == data
    assert abs(len(first) - len(second)) <= 2 * 61  # at most a line apart from the halves
    assert readers[1].lines_before == first.count(b"\n")


def test_uncompressed_size_from_the_gzip_trailer(tmp_path):
    path = tmp_path / "f.csv.gz"
    path.write_bytes(_gz(b"a,b\n" * 1000))
    assert gzip_uncompressed_size(lambda: open(path, "rb")) == 4000

    class Stream(io.RawIOBase):  # not seekable: no estimate, the file loads as one part
        def readable(self):
            return True

    assert gzip_uncompressed_size(Stream) is None


@pytest.fixture
def split_every_file(monkeypatch):
    """Load even small files in parts (the threshold is meant for files of tens of MB)."""
    monkeypatch.setattr(postgres, "PARALLEL_COPY_MIN_BYTES", 0)


def _staging_tables(env: Env) -> list[str]:
    return [r[0] for r in env.query(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (env.settings.staging_schema,))]


def test_month_in_parts_keeps_file_order_across_parts(env: Env, split_every_file):
    path = env.mirror_path(YELLOW, JAN)
    generate_month(YELLOW, JAN, path, rows=20_000, seed=21)
    lines = csv_lines(read_gz(path))
    tip = YELLOW.column_names.index("tip_amount")
    # Row 5 again at the very end (the second part) with another tip: the same trip id. The first
    # occurrence (the first part) must win, as it does when the file loads in one stream.
    again = lines[5].rstrip(b"\n").split(b",")
    again[tip] = b"99.99"
    write_gz(path, b"".join(lines) + b",".join(again) + b"\n")
    expected = expected_from_file(YELLOW, path)

    result = env.materialize(YELLOW, JAN, raise_on_error=True)

    meta = materialization_metadata(result, final_key(YELLOW))
    assert meta["dagster/row_count"] == expected.distinct
    assert meta["duplicates_dropped"] == expected.duplicates
    ids = dict(env.query(f"SELECT unique_row_id, tip_amount::text FROM {env.final(YELLOW)}"))
    assert set(ids) == set(expected.ids)
    first_tip = lines[5].split(b",")[tip].decode()
    assert "99.99" not in ids.values()
    assert any(v == first_tip or float(v) == float(first_tip) for v in ids.values())
    # Both parts were loaded (rows from each stream), into one staging table.
    parts = env.query(f'SELECT source_part, count(*) FROM "{env.settings.staging_schema}".'
                      '"yellow_tripdata_2019_01" GROUP BY 1 ORDER BY 1')
    assert [p for p, _ in parts] == [0, 1] and sum(n for _, n in parts) == expected.rows
    assert _staging_tables(env) == ["yellow_tripdata_2019_01"]

    # The same file in one stream gives the same final table.
    before = env.fingerprint(YELLOW)
    postgres.PARALLEL_COPY_MIN_BYTES = 1 << 40
    env.materialize(YELLOW, JAN, raise_on_error=True)
    assert env.fingerprint(YELLOW) == before


def test_bad_value_in_the_second_part_names_its_file_line(env: Env, split_every_file):
    path = env.mirror_path(YELLOW, JAN)
    generate_month(YELLOW, JAN, path, rows=2_000, seed=11)
    env.materialize(YELLOW, JAN, raise_on_error=True)
    before = env.fingerprint(YELLOW)
    set_value(path, YELLOW, line=1801, column="tip_amount", value=b"abc")  # in the second half

    result = env.materialize(YELLOW, JAN)

    assert not result.success
    message = failure_message(result)
    assert "yellow_tripdata_2019-01.csv.gz line 1801, column tip_amount" in message
    assert env.fingerprint(YELLOW) == before
    assert _staging_tables(env) == ["yellow_tripdata_2019_01"]  # the previous staging table


def test_stream_killed_mid_copy_keeps_previous_rows_and_rerun_succeeds(env: Env, pg, split_every_file):
    path = env.mirror_path(YELLOW, JAN)
    generate_month(YELLOW, JAN, path, rows=2_000, seed=4)
    env.materialize(YELLOW, JAN, raise_on_error=True)
    before = env.fingerprint(YELLOW)

    big = generate_month(YELLOW, JAN, path, rows=400_000, seed=5)
    # Only the second part's connection: the main one must notice and give up cleanly.
    result, killed = materialize_killing_copy(env, pg, YELLOW, JAN, "taxi_platform:staging % (part 2/%")
    assert killed == 1
    assert not result.success
    assert ("lost the connection to PostgreSQL during staging yellow_tripdata_2019-01.csv.gz"
            in failure_message(result))
    assert env.fingerprint(YELLOW) == before
    assert _staging_tables(env) == ["yellow_tripdata_2019_01"]

    env.materialize(YELLOW, JAN, raise_on_error=True)
    assert env.query(f"SELECT count(*) FROM {env.final(YELLOW)}")[0][0] == big.rows - big.duplicate_rows
