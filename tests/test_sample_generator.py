"""The sample generator against an independent parse of its output and the real sample files."""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from taxi_platform.datasets import GREEN, YELLOW, Column, ColumnType, DatasetSpec
from taxi_platform.sample import REAL_ROW_COUNTS, full_size_rows, generate_month

REAL_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_samples"
ROWS = 20_000
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
MONEY_COLUMNS = (
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "improvement_surcharge",
    "congestion_surcharge",
)

# (spec, month, line ending) of the files most tests look at.
CASES = {
    "yellow-2019-01": (YELLOW, date(2019, 1, 1), "\n"),
    "yellow-2019-07": (YELLOW, date(2019, 7, 1), "\n"),
    "yellow-2020-01": (YELLOW, date(2020, 1, 1), "\r\n"),
    "green-2019-01": (GREEN, date(2019, 1, 1), "\r\n"),
    "green-2020-06": (GREEN, date(2020, 6, 1), "\n"),
    "green-2021-03": (GREEN, date(2021, 3, 1), "\n"),
}


class Parsed:
    """A generated file read back with gzip + csv, independently of the generator."""

    def __init__(self, path: Path) -> None:
        self.raw = gzip.decompress(path.read_bytes())
        self.lines = self.raw.splitlines(keepends=True)
        table = list(csv.reader(io.StringIO(self.raw.decode("ascii"), newline="")))
        self.header, self.rows = table[0], table[1:]

    def column(self, name: str) -> list[str]:
        i = self.header.index(name)
        return [r[i] for r in self.rows]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = {}
    folder = tmp_path_factory.mktemp("generated")
    for key, (spec, month, eol) in CASES.items():
        gen = generate_month(
            spec, month, folder / key / spec.file_name(month), rows=ROWS, seed=3, line_ending=eol
        )
        out[key] = (spec, month, gen, Parsed(gen.path))
    return out


@pytest.fixture(scope="module", params=list(CASES))
def case(request: pytest.FixtureRequest, generated: dict):
    return generated[request.param]


# ---------------------------------------------------------------- the real samples, as shapes


def _shape(value: str, type_: ColumnType) -> str:
    """A value's format: digits become 9, but a decimal's integer part becomes 'Z' (a lone zero)
    or '#' (any other number of any length)."""
    if type_ is ColumnType.DECIMAL:
        value = re.sub(r"(?<![.\d])\d+", lambda m: "Z" if m[0] == "0" else "#", value)
    return re.sub(r"\d", "9", value)


def _real_tables() -> list[tuple[list[str], list[list[str]]]]:
    tables = []
    for path in sorted(REAL_SAMPLES.glob("*.csv")):
        tables.append(list(csv.reader(path.read_text().splitlines())))
    for path in sorted((REAL_SAMPLES / "nju_wcj_tlc_1KB_heads").glob("*.csv")):
        if path.name.startswith(("yellow", "green")):  # their fhv header is an older one
            tables.append(list(csv.reader(path.read_text().splitlines()[:-1])))  # last line is cut
    return [(t[0], t[1:]) for t in tables]


@pytest.fixture(scope="module")
def real_shapes() -> dict[str, set[str]]:
    """Shapes seen per column name in the real files (yellow and green pooled)."""
    types = {n: spec.column(n).type for spec in (YELLOW, GREEN) for n in spec.csv_columns}
    shapes: dict[str, set[str]] = defaultdict(set)
    tables = _real_tables()
    assert len(tables) >= 30 and sum(len(rows) for _, rows in tables) > 23_000
    for header, rows in tables:
        for row in rows:
            assert len(row) == len(header)
            for name, value in zip(header, row):
                shapes[name].add(_shape(value, types[name]))
    return shapes


def test_real_samples_have_the_documented_formats(real_shapes: dict[str, set[str]]) -> None:
    assert real_shapes["trip_distance"] == {"#.99", ".99"}  # never 0.20
    assert {"Z.9", "#.9", "#", "Z", "-Z.9"} <= real_shapes["extra"] | real_shapes["mta_tax"]
    assert real_shapes["tpep_pickup_datetime"] == {"9999-99-99 99:99:99"}
    assert real_shapes["ehail_fee"] == {""}


# ---------------------------------------------------------------- structure


def test_header_is_the_spec_columns(case) -> None:
    spec, _, gen, parsed = case
    assert parsed.header == list(spec.csv_columns)
    assert parsed.lines[0] == (",".join(spec.csv_columns) + gen.line_ending).encode()


def test_every_row_has_the_header_field_count(case) -> None:
    _, _, gen, parsed = case
    assert len(parsed.rows) == gen.rows == ROWS
    assert {len(r) for r in parsed.rows} == {len(parsed.header)}


def test_line_endings_are_uniform(case) -> None:
    _, _, gen, parsed = case
    assert parsed.raw.endswith(gen.line_ending.encode())
    assert all(line.endswith(gen.line_ending.encode()) for line in parsed.lines)
    if gen.line_ending == "\n":
        assert b"\r" not in parsed.raw
    else:
        assert parsed.raw.count(b"\n") == parsed.raw.count(b"\r\n") == ROWS + 1


def test_generated_file_fields(case) -> None:
    spec, month, gen, _ = case
    assert (gen.dataset, gen.month) == (spec.name, month)
    assert gen.path.name == spec.file_name(month)


# ---------------------------------------------------------------- counts, against an own parse


def test_duplicate_count_matches_byte_copies(case) -> None:
    _, _, gen, parsed = case
    seen: set[bytes] = set()
    copies = []
    for i, line in enumerate(parsed.lines[1:]):
        if line in seen:
            copies.append(i)
        seen.add(line)
    assert gen.duplicate_rows == len(copies) == round(ROWS * 0.0005)
    # Copies are of earlier rows anywhere, not only of the row just before.
    assert any(parsed.lines[i + 1] != parsed.lines[i] for i in copies)


def test_out_of_month_count_matches_pickups(case) -> None:
    spec, month, gen, parsed = case
    nxt = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    pickups = [datetime.strptime(v, "%Y-%m-%d %H:%M:%S") for v in parsed.column(spec.pickup_column)]
    outside = [p for p in pickups if not month <= p.date() < nxt]
    assert gen.out_of_month_rows == len(outside)
    assert 0.001 * ROWS <= len(outside) <= 0.004 * ROWS
    assert any(p.date() < month for p in outside) and any(p.date() >= nxt for p in outside)
    assert any(abs(p.year - month.year) >= 5 for p in outside), "no far-off years"


def test_trips_are_distinct_on_identity_fields_apart_from_copies(case) -> None:
    spec, _, gen, parsed = case
    idx = [parsed.header.index(c) for c in spec.identity_columns]
    identities = {tuple(r[i] for i in idx) for r in parsed.rows}
    assert len(identities) == ROWS - gen.duplicate_rows


def test_few_duplicates_still_present_in_small_files(tmp_path: Path) -> None:
    gen = generate_month(YELLOW, date(2020, 2, 1), tmp_path / "f.csv.gz", rows=1000, seed=9)
    lines = Parsed(gen.path).lines[1:]
    assert gen.duplicate_rows == len(lines) - len(set(lines)) >= 1


# ---------------------------------------------------------------- the unattributed tail block


def _unattributed(spec: DatasetSpec, parsed: Parsed) -> list[bool]:
    idx = [parsed.header.index(c) for c in spec.unattributed_columns]
    return [all(r[i] == "" for i in idx) for r in parsed.rows]


def test_tail_block_ends_2020_and_later_months_only(case) -> None:
    spec, month, gen, parsed = case
    flags = _unattributed(spec, parsed)
    count = sum(flags)
    assert gen.unattributed_rows == count
    if month >= date(2020, 1, 1):
        assert count == round(ROWS * 0.03)
        assert flags[-count:] == [True] * count and not any(flags[:-count])
    else:
        assert count == 0


def test_tail_rows_fill_every_other_column(case) -> None:
    spec, month, gen, parsed = case
    always_empty = {"ehail_fee"}
    for row, tail in zip(parsed.rows, _unattributed(spec, parsed)):
        for name, value in zip(parsed.header, row):
            expected_empty = (
                name in always_empty
                or (tail and name in spec.unattributed_columns)
                or (name == "congestion_surcharge" and month == date(2019, 1, 1))
            )
            assert (value == "") == expected_empty, (name, row)


@pytest.mark.parametrize("rows, tail", [(100, 3), (20, 1), (10, 0)])
def test_small_2020_files_tail_block(tmp_path: Path, rows: int, tail: int) -> None:
    gen = generate_month(GREEN, date(2020, 4, 1), tmp_path / "g.csv.gz", rows=rows)
    vendors = Parsed(gen.path).column("VendorID")
    assert gen.unattributed_rows == tail
    assert vendors.count("") == tail and all(vendors[rows - tail :] == [""] * tail for _ in [0])


# ---------------------------------------------------------------- value formats and ranges


def test_value_shapes_are_seen_in_real_files(case, real_shapes: dict[str, set[str]]) -> None:
    spec, _, _, parsed = case
    money_shapes = set().union(*(real_shapes[c] for c in MONEY_COLUMNS)) - {""}
    for column in map(spec.column, spec.csv_columns):
        shapes = {_shape(v, column.type) for v in set(parsed.column(column.name))}
        if column.type is ColumnType.DECIMAL and column.name != "trip_distance":
            allowed = set(money_shapes)  # money columns share one format
        else:
            allowed = real_shapes[column.name] - {""}
        # Empty values: where the real files show them, and in the documented tail-block columns
        # (green's trip_type there has no real sample).
        if "" in real_shapes[column.name] or column.name in spec.unattributed_columns:
            allowed.add("")
        assert shapes <= allowed, (column.name, shapes - allowed)


def test_datetimes_and_durations(case) -> None:
    spec, _, _, parsed = case
    times = zip(parsed.column(spec.pickup_column), parsed.column(spec.dropoff_column))
    for pickup, dropoff in times:
        assert TIMESTAMP.fullmatch(pickup) and TIMESTAMP.fullmatch(dropoff)
        seconds = (datetime.fromisoformat(dropoff) - datetime.fromisoformat(pickup)).total_seconds()
        assert 0 < seconds <= 4 * 3600


def test_total_is_the_sum_of_its_parts(case) -> None:
    _, _, _, parsed = case
    parts = [c for c in MONEY_COLUMNS if c in parsed.header]
    negative = 0
    for row in parsed.rows:
        value = dict(zip(parsed.header, row))
        total = Decimal(value["total_amount"])
        assert total == sum(Decimal(value[c] or 0) for c in parts)
        negative += total < 0
    assert 0 < negative < 0.02 * ROWS


def test_categorical_values(case) -> None:
    spec, month, gen, parsed = case
    attributed = [not t for t in _unattributed(spec, parsed)]

    def values(name: str) -> list[str]:
        return [v for v, a in zip(parsed.column(name), attributed) if a]

    locations = parsed.column("PULocationID") + parsed.column("DOLocationID")
    assert {int(v) for v in locations} <= set(range(1, 266))
    assert set(values("VendorID")) == {"1", "2"}
    assert set(values("payment_type")) <= {"1", "2", "3", "4", "5"}
    assert {"1", "2"} <= set(values("payment_type"))
    assert set(values("RatecodeID")) <= {"1", "2", "3", "4", "5", "6", "99"}
    assert {int(v) for v in values("passenger_count")} <= set(range(7))
    assert values("passenger_count").count("1") > 0.5 * len(attributed)
    flags = values("store_and_fwd_flag")
    assert set(flags) == {"N", "Y"} and flags.count("Y") < 0.05 * len(flags)
    assert set(parsed.column("mta_tax")) <= {"0.5", "0", "-0.5"}
    assert set(parsed.column("improvement_surcharge")) <= {"0.3", "0", "-0.3"}
    if "trip_type" in parsed.header:
        assert set(values("trip_type")) == {"1", "2"}
    congestion = set(parsed.column("congestion_surcharge"))
    if month == date(2019, 1, 1):
        assert congestion == {""}
    else:
        fee = "2.5" if spec is YELLOW else "2.75"
        assert {"0", fee} <= congestion <= {"0", fee, "-" + fee}


def test_distances_have_no_leading_zero() -> None:
    from taxi_platform.sample._render import distance_text, money_text

    assert [distance_text(h) for h in (0, 20, 210, 1289)] == [".00", ".20", "2.10", "12.89"]
    assert [money_text(c) for c in (800, 50, 1180, 165, -50, 0, 5)] == [
        "8",
        "0.5",
        "11.8",
        "1.65",
        "-0.5",
        "0",
        "0.05",
    ]


# ---------------------------------------------------------------- determinism and file handling


def test_same_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    def make(name: str, **kw) -> bytes:
        args: dict[str, Any] = {"rows": 5000, "seed": 1, "line_ending": "\n"} | kw
        return generate_month(YELLOW, date(2020, 2, 1), tmp_path / name, **args).path.read_bytes()

    first, again = make("a.csv.gz"), make("b.csv.gz")
    assert first == again  # compressed bytes too: no name or time in the gzip header
    assert gzip.decompress(make("c.csv.gz", seed=2)) != gzip.decompress(first)
    crlf = gzip.decompress(make("d.csv.gz", line_ending="\r\n"))
    assert crlf != gzip.decompress(first)
    assert crlf.replace(b"\r\n", b"\n") == gzip.decompress(first)


def test_other_months_and_datasets_differ(tmp_path: Path) -> None:
    a = generate_month(YELLOW, date(2020, 2, 1), tmp_path / "a.csv.gz", rows=200)
    b = generate_month(YELLOW, date(2020, 3, 1), tmp_path / "b.csv.gz", rows=200)
    assert Parsed(a.path).rows[5][1:] != Parsed(b.path).rows[5][1:]


def test_writes_atomically_into_new_folders(tmp_path: Path) -> None:
    dest = tmp_path / "x" / "y" / "yellow_tripdata_2020-05.csv.gz"
    gen = generate_month(YELLOW, date(2020, 5, 1), dest, rows=10)
    assert gen.path == dest and [p.name for p in dest.parent.iterdir()] == [dest.name]
    assert len(Parsed(dest).rows) == 10


def test_zero_rows_is_a_header_only_file(tmp_path: Path) -> None:
    gen = generate_month(GREEN, date(2020, 5, 1), tmp_path / "g.csv.gz", rows=0)
    counts = (gen.rows, gen.duplicate_rows, gen.out_of_month_rows, gen.unattributed_rows)
    assert counts == (0, 0, 0, 0)
    assert gzip.decompress(gen.path.read_bytes()) == (",".join(GREEN.csv_columns) + "\n").encode()


def test_rejects_unknown_line_endings(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_month(YELLOW, date(2020, 5, 1), tmp_path / "g.csv.gz", rows=1, line_ending="\r")


def test_a_new_spec_needs_no_generator_change(tmp_path: Path) -> None:
    """An FHV-like spec: columns come from the spec alone."""
    INT, TIME, TEXT = ColumnType.INTEGER, ColumnType.TIMESTAMP, ColumnType.TEXT
    fhv = DatasetSpec(
        name="fhv",
        release_tag="fhv",
        columns=tuple(
            Column(n, t)
            for n, t in (
                ("dispatching_base_num", TEXT),
                ("pickup_datetime", TIME),
                ("dropOff_datetime", TIME),
                ("PUlocationID", INT),
                ("DOlocationID", INT),
                ("SR_Flag", INT),
                ("Affiliated_base_number", TEXT),
            )
        ),
        pickup_column="pickup_datetime",
        dropoff_column="dropOff_datetime",
        identity_columns=("dispatching_base_num", "pickup_datetime", "dropOff_datetime"),
        first_published=date(2019, 1, 1),
        last_published=date(2019, 12, 1),
        description="fhv",
        csv_columns=(
            "dispatching_base_num",
            "pickup_datetime",
            "dropOff_datetime",
            "PUlocationID",
            "DOlocationID",
            "SR_Flag",
            "Affiliated_base_number",
        ),
    )
    gen = generate_month(fhv, date(2019, 3, 1), tmp_path / "fhv.csv.gz", rows=2000)
    parsed = Parsed(gen.path)
    assert parsed.header == list(fhv.csv_columns) and len(parsed.rows) == 2000
    assert all(re.fullmatch(r"B\d{5}", v) for v in parsed.column("dispatching_base_num"))
    assert all(TIMESTAMP.fullmatch(v) for v in parsed.column("dropOff_datetime"))
    assert set(parsed.column("SR_Flag")) == {""}
    assert gen.unattributed_rows == 0 and gen.duplicate_rows >= 1


# ---------------------------------------------------------------- sizes


def test_real_row_counts_match_the_published_table() -> None:
    yellow_2020 = sum(REAL_ROW_COUNTS["yellow", f"2020-{m:02d}"] for m in range(1, 13))
    green_2020 = sum(REAL_ROW_COUNTS["green", f"2020-{m:02d}"] for m in range(1, 13))
    assert (yellow_2020, green_2020) == (24_648_499, 1_734_051)
    assert full_size_rows(YELLOW, date(2019, 1, 1)) == 7_696_617
    assert full_size_rows(GREEN, date(2019, 10, 1)) == 476_386
    assert full_size_rows(YELLOW, date(2021, 3, 1)) == 1_925_152


def test_full_size_rows_estimates_unknown_months() -> None:
    assert 6_000_000 <= full_size_rows(YELLOW, date(2019, 6, 1)) <= 8_000_000
    assert 400_000 <= full_size_rows(GREEN, date(2019, 3, 1)) <= 600_000
    assert 1_000_000 <= full_size_rows(YELLOW, date(2021, 5, 1)) <= 2_500_000
    assert 50_000 <= full_size_rows(GREEN, date(2021, 5, 1)) <= 200_000
