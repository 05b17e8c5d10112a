"""The ingest engine (taxi_platform/engine): blocks of whole lines with their file line numbers,
trip ids equal to the reference definition, duplicates found within a memory limit, and a month
spread over many blocks loading exactly as in one."""

from __future__ import annotations

import gzip
import io
from datetime import date

import numpy as np
import pyarrow as pa
import pytest
from support.expected import csv_lines, expected_from_file, read_gz, set_value, write_gz
from support.pg_env import Env
from support.run_results import failure_message, materialization_metadata

import taxi_platform.engine.csv_blocks as csv_blocks
from taxi_platform.assets.trip_keys import final_key
from taxi_platform.datasets import GREEN, YELLOW
from taxi_platform.engine.csv_blocks import BadCsvError, read_blocks
from taxi_platform.engine.duplicates import DuplicateTracker, id_words
from taxi_platform.engine.trip_ids import TripIdEngine
from taxi_platform.sample.generator import generate_month
from taxi_platform.trip_id import trip_id_from_csv_row

JAN = date(2019, 1, 1)
HEADER = ",".join(YELLOW.csv_columns).encode()


def _blocks(data: bytes, block_bytes: int = 64) -> list:
    return list(read_blocks(io.BytesIO(gzip.compress(data)), "f.csv.gz", YELLOW.csv_columns, block_bytes))


def _row(i: int, **values) -> list[str]:
    row = [
        "1",
        "2019-01-01 00:00:00",
        "2019-01-01 00:10:00",
        "1",
        "1.5",
        "1",
        "N",
        "100",
        "200",
        "1",
        "7.5",
        "0.5",
        "0.5",
        "1",
        "0",
        "0.3",
        "9.8",
        "2.5",
    ]
    row[1] = f"2019-01-01 00:{i % 60:02d}:{i % 59:02d}"
    for name, value in values.items():
        row[YELLOW.csv_columns.index(name)] = value
    return row


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"])
@pytest.mark.parametrize("block_bytes", [1, 64, 1 << 20])
def test_blocks_hold_whole_lines_with_their_file_line_numbers(line_end, block_bytes):
    body = [",".join(_row(i)).encode() for i in range(50)]
    # A BOM before the header, two blank lines inside, and no line end after the last line.
    lines = [b"\xef\xbb\xbf" + HEADER] + body[:10] + [b""] + body[10:30] + [b""] + body[30:]
    blocks = _blocks(line_end.join(lines), block_bytes)
    got = []
    for block in blocks:
        for i in range(block.rows):
            got.append((block.file_line(i), block.line_text(i)))
    numbers = [n for n, line in enumerate(lines, start=1) if line and n > 1]
    assert got == [(n, lines[n - 1].decode()) for n in numbers]
    assert all(b.data.endswith(line_end) for b in blocks)


def test_a_header_of_other_columns_is_refused_naming_them():
    with pytest.raises(BadCsvError, match=r"f.csv.gz line 1: .*missing fare_amount; unexpected fare"):
        _blocks(HEADER.replace(b"fare_amount", b"fare") + b"\n1,2\n")


def test_an_empty_file_is_refused():
    with pytest.raises(BadCsvError, match="f.csv.gz: the file is empty"):
        _blocks(b"")


def test_ids_as_two_64_bit_words():
    ids = pa.array(["0123456789abcdef" + "0" * 16, "f" * 32, "00000000000000010123456789abcdef"]).slice(1)
    high, low = id_words(ids)
    assert [f"{h:016x}{lo:016x}" for h, lo in zip(high.tolist(), low.tolist())] == ids.to_pylist()


def test_ids_equal_the_reference_definition_for_every_notation():
    rows = [_row(i) for i in range(20)]
    # Decimals in every notation that means the same value, integers with spaces and signs,
    # fractional seconds, empty fields: the ids are those of trip_id.py.
    odd = [
        dict(fare_amount=".20"),
        dict(fare_amount="0.20"),
        dict(fare_amount="7.00"),
        dict(fare_amount="-0.50"),
        dict(fare_amount="0.00"),
        dict(fare_amount="-0"),
        dict(trip_distance="12"),
        dict(trip_distance=" 3.10 "),
        dict(VendorID=""),
        dict(PULocationID="+7"),
        dict(DOLocationID="007"),
        dict(fare_amount=""),
        dict(tpep_dropoff_datetime="2019-01-01 00:10:00.75"),
        dict(fare_amount="123456789012.123456"),
        dict(fare_amount="1e3"),
        dict(trip_distance="1_0.5"),
    ]
    rows += [_row(100 + i, **values) for i, values in enumerate(odd)]
    rows.append(_row(100, fare_amount="0.2"))  # the first odd row's trip, written otherwise
    data = HEADER + b"\n" + b"".join(",".join(r).encode() + b"\n" for r in rows)
    engine = TripIdEngine(YELLOW, "f.csv.gz")
    ids = []
    for block in _blocks(data, 256):
        ids += engine.ids(block).to_pylist()
    engine.close()
    # Fractional seconds are not part of the id (to_char's HH24:MI:SS drops them too).
    expected = [trip_id_from_csv_row(YELLOW, [v.strip().removesuffix(".75") for v in r]) for r in rows]
    assert ids == expected
    assert ids[20] == ids[-1]  # .20 and 0.2: one trip


@pytest.mark.parametrize(
    ("column", "value", "what"),
    [
        ("tpep_pickup_datetime", "01/02/2019 10:00:00", "a timestamp"),
        ("tpep_pickup_datetime", "2019-01-01 00:00:00+05", "a timestamp"),
        ("fare_amount", "1e-7", "a decimal"),
        ("fare_amount", "12345678901.0000001", "a decimal"),
        ("fare_amount", "1.2345678", "a decimal"),
        ("PULocationID", "12x", "an integer"),
    ],
)
def test_a_value_the_engine_cannot_read_is_refused_naming_line_and_column(column, value, what):
    rows = [_row(i) for i in range(30)]
    rows[17] = _row(17, **{column: value})
    data = HEADER + b"\n" + b"".join(",".join(r).encode() + b"\n" for r in rows)
    engine = TripIdEngine(YELLOW, "f.csv.gz")
    with pytest.raises(BadCsvError) as info:
        for block in _blocks(data, 300):
            engine.ids(block)
    assert str(info.value).startswith(
        f"f.csv.gz line 19, column {column}: {value!r} cannot be read as {what}"
    )


def test_a_row_with_too_few_fields_is_refused_naming_its_line():
    rows = [",".join(_row(i)).encode() for i in range(30)]
    rows[25] = b",".join(rows[25].split(b",")[:14])
    data = HEADER + b"\n" + b"\n".join(rows) + b"\n"
    engine = TripIdEngine(YELLOW, "f.csv.gz")
    with pytest.raises(BadCsvError, match=r"f.csv.gz line 27: 14 fields, expected 18 \(too few"):
        for block in _blocks(data, 500):
            engine.ids(block)


def _random_ids(count: int, seed: int) -> pa.Array:
    """`count` random ids (32 hex digits), built without a Python loop."""
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    text = digits[np.random.default_rng(seed).integers(0, 16, size=count * 32, dtype=np.uint8)]
    offsets = np.arange(0, (count + 1) * 32, 32, dtype=np.int32)
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(text))


def test_repeated_ids_are_found_beyond_the_memory_limit(tmp_path):
    # 10,000,000 ids (160 MB as integers) through a tracker limited to 64 MB (the setting's
    # minimum): DuckDB spills.
    ids = _random_ids(10_000_000, seed=5)
    repeated = ids.take(pa.array(np.random.default_rng(6).choice(len(ids), 250, replace=False)))
    tracker = DuplicateTracker("64MB", spill_dir=str(tmp_path))
    try:
        for start in range(0, len(ids), 500_000):
            tracker.add(ids.slice(start, 500_000))
        tracker.add(repeated)
        tracker.add(repeated.slice(0, 10))
        found, surplus = tracker.repeated_ids()
    finally:
        tracker.close()
    assert found == sorted(repeated.to_pylist())
    assert surplus == 260
    assert not any(tmp_path.iterdir())  # the spill folder is removed


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 64 kB: a month of a few thousand rows spans many of them."""
    monkeypatch.setattr(csv_blocks, "BLOCK_BYTES", 64 << 10)


def test_month_over_many_blocks_keeps_the_first_occurrence_in_file_order(env: Env, small_blocks):
    path = env.mirror_path(YELLOW, JAN)
    generate_month(YELLOW, JAN, path, rows=20_000, seed=21)
    lines = csv_lines(read_gz(path))
    tip = YELLOW.csv_columns.index("tip_amount")
    # Row 5 again at the very end (the last block) with another tip: the same trip id. The first
    # occurrence must win.
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
    assert "99.99" not in ids.values()
    # Every kept row is the first occurrence of its id: its values are those of that line.
    first: dict[str, str] = {}
    for line in lines[1:]:
        row = line.rstrip(b"\n").decode().split(",")
        first.setdefault(trip_id_from_csv_row(YELLOW, row), row[tip])
    assert all(float(ids[k]) == float(v) for k, v in first.items())


def _bad_value_fails_the_month(env: Env, line: int, column: str, value: bytes) -> str:
    """Load a good January, put `value` in `column` at `line`, load again: the run fails and the
    table is as before. The failure's message."""
    path = env.mirror_path(YELLOW, JAN)
    generate_month(YELLOW, JAN, path, rows=2_000, seed=11)
    env.materialize(YELLOW, JAN, raise_on_error=True)
    before = env.fingerprint(YELLOW)
    set_value(path, YELLOW, line=line, column=column, value=value)
    result = env.materialize(YELLOW, JAN)
    assert not result.success
    assert env.fingerprint(YELLOW) == before
    return failure_message(result)


def test_bad_value_in_a_later_block_names_its_file_line(env: Env, small_blocks):
    # The bad value is found by the server's COPY, many blocks into the stream.
    message = _bad_value_fails_the_month(env, 1801, "tip_amount", b"abc")
    assert "yellow_tripdata_2019-01.csv.gz line 1801, column tip_amount" in message


def test_green_ids_from_the_engine_equal_the_reference(env: Env):
    path = env.mirror_path(GREEN, JAN)
    generate_month(GREEN, JAN, path, rows=3_000, seed=2)
    expected = expected_from_file(GREEN, path)
    env.materialize(GREEN, JAN, raise_on_error=True)
    ids = [r[0] for r in env.query(f"SELECT unique_row_id FROM {env.final(GREEN)}")]
    assert sorted(ids) == sorted(expected.ids)


def test_a_value_the_engine_refuses_fails_the_month_and_changes_nothing(env: Env, small_blocks):
    # Passes the download's checks (a well-formed row), refused by the engine, many blocks in.
    message = _bad_value_fails_the_month(env, 1500, "tpep_pickup_datetime", b"01/02/2019 10:00:00")
    assert (
        "yellow_tripdata_2019-01.csv.gz line 1500, column tpep_pickup_datetime: "
        "'01/02/2019 10:00:00' cannot be read as a timestamp"
    ) in message


def test_pickups_in_month_counted_by_the_engine_equal_the_tables(env: Env, small_blocks):
    path = env.mirror_path(YELLOW, JAN)
    generate_month(YELLOW, JAN, path, rows=5_000, seed=3)
    set_value(path, YELLOW, line=10, column="tpep_pickup_datetime", value=b"2018-12-31 23:59:00")
    set_value(path, YELLOW, line=11, column="tpep_pickup_datetime", value=b"2019-02-01 00:00:00")
    lines = csv_lines(read_gz(path))
    # Duplicates of an out-of-month row and of an in-month row: dropped, and not counted twice.
    write_gz(path, b"".join(lines + [lines[9]] * 2 + [lines[20]]))

    result = env.materialize(YELLOW, JAN, raise_on_error=True)

    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "pickups_in_month"]
    counted = {k: v.value for k, v in check.metadata.items()}
    rows, in_month = env.query(
        f"SELECT count(*), count(*) FILTER (WHERE tpep_pickup_datetime >= '2019-01-01' "
        f"AND tpep_pickup_datetime < '2019-02-01') FROM {env.final(YELLOW)}"
    )[0]
    assert (counted["rows"], counted["in_month_rows"]) == (rows, in_month)
    assert rows - in_month >= 2
