"""The Parquet generator against the eras, the real green files, and a recount with pyarrow."""

from __future__ import annotations

import csv
import hashlib
import math
import re
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from taxi_platform.datasets import ALL_DATASETS, FHV, FHVHV, GREEN, YELLOW, DatasetSpec
from taxi_platform.eras import era_of_month
from taxi_platform.sample.parquet_generator import (
    LISTING_DIR,
    TYPICAL_ROWS,
    GeneratedParquet,
    generate_parquet_month,
    real_rows,
    release_listing,
    write_tlc_tree,
)

REAL_PARQUET = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_parquet"
TEXT_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def _era_months() -> list[tuple[str, str, date]]:
    """(dataset, era, month): every era's first month and every month its types change."""
    cases = []
    for spec in ALL_DATASETS.values():
        for era in spec.eras:
            months = {era.first_month, *(since for since, _ in era.type_changes)}
            cases += [(spec.name, era.name, m) for m in sorted(months)]
    return cases


@pytest.mark.parametrize(("dataset", "era_name", "month"), _era_months())
def test_schema_is_the_eras(tmp_path: Path, dataset: str, era_name: str, month: date) -> None:
    spec = ALL_DATASETS[dataset]
    era = era_of_month(spec.eras, month)
    assert era.name == era_name
    out = generate_parquet_month(spec, month, tmp_path / "m.parquet", rows=50)
    schema = pq.read_schema(out.path)
    types = era.arrow_types(month)
    assert schema.names == list(era.column_names)
    assert [str(f.type) for f in schema] == [types[name] for name in schema.names]
    assert out.era == era_name
    expected = "zstd" if month >= date(2023, 2, 1) else "gzip"
    assert pq.ParquetFile(out.path).metadata.row_group(0).column(0).compression.lower() == expected


def test_an_explicit_era(tmp_path: Path) -> None:
    # 2023-01 was published in era A; asked for era B, the file has B's names and types.
    era_b = GREEN.eras[1]
    out = generate_parquet_month(GREEN, date(2023, 1, 1), tmp_path / "b.parquet", rows=30, era=era_b)
    schema = pq.read_schema(out.path)
    assert out.era == era_b.name == "green-2023"
    assert [(f.name, str(f.type)) for f in schema] == list(era_b.arrow_types(date(2023, 1, 1)).items())


@pytest.mark.parametrize("real", ["2020-12", "2023-04", "2025-02"])  # eras A, B, C
def test_green_schema_matches_the_real_files(tmp_path: Path, real: str) -> None:
    real_file = REAL_PARQUET / f"green_tripdata_{real}.parquet"
    if not real_file.exists():
        pytest.skip(f"{real_file} is not there")
    month = date.fromisoformat(real + "-01")
    out = generate_parquet_month(GREEN, month, tmp_path / "g.parquet", rows=100)
    fields = lambda s: [(f.name, f.type) for f in s]  # noqa: E731
    assert fields(pq.read_schema(out.path)) == fields(pq.read_schema(real_file))


# (spec, month) of the files the recount tests look at: every dataset, old and new eras.
RECOUNT = [
    (YELLOW, date(2009, 5, 1)),
    (YELLOW, date(2010, 2, 1)),
    (YELLOW, date(2020, 3, 1)),
    (YELLOW, date(2025, 1, 1)),
    (GREEN, date(2022, 1, 1)),
    (GREEN, date(2024, 3, 1)),
    (FHV, date(2019, 2, 1)),
    (FHVHV, date(2019, 2, 1)),
    (FHVHV, date(2025, 2, 1)),
]


@pytest.fixture(scope="module")
def recounted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[GeneratedParquet, pa.Table]]:
    folder = tmp_path_factory.mktemp("recount")
    out = {}
    for spec, month in RECOUNT:
        # 1,000 rows in row groups of 300: the streaming path, four row groups.
        path = folder / f"{spec.name}_{month:%Y-%m}.parquet"
        generated = generate_parquet_month(spec, month, path, rows=1_000, seed=3, row_group_rows=300)
        out[f"{spec.name}-{month:%Y-%m}"] = (generated, pq.read_table(path))
    return out


def _identity(spec: DatasetSpec, table: pa.Table, month: date) -> list[tuple]:
    """Each row's identity fields, as the loader maps them (codes through value_map; NULL when the
    era has no such column)."""
    era = era_of_month(spec.eras, month)
    by_target = {c.target: c for c in era.columns}
    fields: list[list[object]] = []
    for name in spec.identity_columns:
        column = by_target.get(name)
        if column is None:
            fields.append([None] * len(table))
            continue
        raw = table[column.name].to_pylist()
        mapping = dict(column.value_map)
        fields.append([mapping[v.strip().upper()] if mapping and v else v for v in raw] if mapping else raw)
    return list(zip(*fields))


def _cents(values: list) -> Decimal:
    return sum((Decimal(repr(v)) for v in values if v is not None), Decimal(0)).quantize(Decimal("0.01"))


def _pickups(spec: DatasetSpec, table: pa.Table, month: date) -> pa.Array:
    era = era_of_month(spec.eras, month)
    name = next(c.name for c in era.columns if c.target == spec.pickup_column)
    column = table[name]
    if pa.types.is_string(column.type):
        return pc.strptime(column, format="%Y-%m-%d %H:%M:%S", unit="us")
    return column


@pytest.mark.parametrize("case", [f"{s.name}-{m:%Y-%m}" for s, m in RECOUNT])
def test_counts_and_sums_are_true(recounted, case: str) -> None:
    generated, table = recounted[case]
    spec, month = ALL_DATASETS[generated.dataset], generated.month
    rows = table.to_pylist()
    assert len(rows) == generated.rows == 1_000
    assert pq.ParquetFile(generated.path).metadata.num_row_groups == generated.row_groups == 4
    # Exact duplicates: rows equal in every column to an earlier one.
    seen: set[tuple] = set()
    kept = []
    for row in rows:
        key = tuple(row.values())
        if key not in seen:
            seen.add(key)
            kept.append(row)
    assert generated.duplicate_rows == len(rows) - len(kept) >= 2
    assert generated.distinct_rows == len(set(_identity(spec, table, month))) == len(kept)
    # Sums to the cent, over all rows and over the distinct rows.
    assert set(generated.sums) == set(generated.distinct_sums)
    assert bool(generated.sums) == (spec is not FHV)  # fhv has no fares
    for name, total in generated.sums.items():
        assert total == _cents([r[name] for r in rows]), name
        assert generated.distinct_sums[name] == _cents([r[name] for r in kept]), name
        values = [v for v in table[name].to_pylist() if v is not None]
        assert all(round(v * 100) == pytest.approx(v * 100, abs=1e-6) for v in values), name
    # Pickups in the month but for a counted few; dropoff after pickup.
    pickups = _pickups(spec, table, month)
    start = datetime(month.year, month.month, 1)
    end = datetime(month.year + month.month // 12, month.month % 12 + 1, 1)
    outside = sum(1 for p in pickups.to_pylist() if not start <= p < end)
    assert generated.out_of_month_rows == outside >= 1


def test_fhv_has_no_money_columns(recounted) -> None:
    assert recounted["fhv-2019-02"][0].sums == {}


def test_values_look_like_the_tlcs(recounted) -> None:
    _, yellow = recounted["yellow-2025-01"]
    for name in ("PULocationID", "DOLocationID"):
        assert 1 <= pc.min(yellow[name]).as_py() and pc.max(yellow[name]).as_py() <= 265
    assert set(yellow["store_and_fwd_flag"].drop_null().to_pylist()) <= {"N", "Y"}
    assert yellow["passenger_count"].null_count > 0  # the unattributed rows of 2020+

    _, green = recounted["green-2022-01"]
    counts = green["passenger_count"].drop_null().to_pylist()
    assert all(float(c).is_integer() for c in counts)  # integer-valued doubles

    _, fhv = recounted["fhv-2019-02"]
    assert fhv["PUlocationID"].type == pa.float64() and fhv["PUlocationID"].null_count > 0
    assert all(re.fullmatch(r"B\d{5}", b) for b in fhv["dispatching_base_num"].to_pylist())

    _, hv = recounted["fhvhv-2019-02"]
    assert set(hv["hvfhs_license_num"].to_pylist()) <= {"HV0002", "HV0003", "HV0004", "HV0005"}
    for flag in ("shared_request_flag", "access_a_ride_flag", "wav_match_flag"):
        assert set(hv[flag].to_pylist()) <= {"Y", "N", " "}
    rows = hv.to_pylist()
    assert all(r["request_datetime"] <= r["pickup_datetime"] < r["dropoff_datetime"] for r in rows)
    assert all(r["trip_time"] == (r["dropoff_datetime"] - r["pickup_datetime"]).seconds for r in rows)


def test_2009_and_2010_yellow_write_text_times_and_codes(recounted) -> None:
    _, y2009 = recounted["yellow-2009-05"]
    assert y2009["Trip_Pickup_DateTime"].type == pa.string()
    assert all(TEXT_TIME.fullmatch(t) for t in y2009["Trip_Pickup_DateTime"].to_pylist())
    assert all(TEXT_TIME.fullmatch(t) for t in y2009["Trip_Dropoff_DateTime"].to_pylist())
    assert set(y2009["vendor_name"].to_pylist()) == {"CMT", "VTS", "DDS"}
    assert set(y2009["Payment_Type"].to_pylist()) <= {
        "Cash",
        "CASH",
        "Credit",
        "CREDIT",
        "No Charge",
        "Dispute",
    }
    lat = y2009["Start_Lat"].to_pylist()
    assert sum(40.4 < v < 41.0 for v in lat) > 0.95 * len(lat)  # near NYC (a few 0.0: no fix)

    _, y2010 = recounted["yellow-2010-02"]
    assert all(TEXT_TIME.fullmatch(t) for t in y2010["pickup_datetime"].to_pylist())
    assert set(y2010["payment_type"].to_pylist()) <= {"CAS", "CRD", "NOC", "DIS", "UNK"}
    assert set(y2010["vendor_id"].to_pylist()) <= {"CMT", "VTS", "DDS"}


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    def digest(name: str, seed: int) -> str:
        out = generate_parquet_month(
            FHVHV, date(2022, 6, 1), tmp_path / name, rows=700, seed=seed, row_group_rows=250
        )
        return hashlib.sha256(out.path.read_bytes()).hexdigest()

    assert digest("a.parquet", 1) == digest("b.parquet", 1) != digest("c.parquet", 2)


def test_row_groups_stream_in_bounded_size(tmp_path: Path) -> None:
    out = generate_parquet_month(
        YELLOW, date(2023, 3, 1), tmp_path / "y.parquet", rows=2_345, row_group_rows=500
    )
    meta = pq.ParquetFile(out.path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [500] * 4 + [345]
    assert meta.num_rows == out.rows == 2_345


def test_empty_month(tmp_path: Path) -> None:
    out = generate_parquet_month(GREEN, date(2024, 1, 1), tmp_path / "e.parquet", rows=0)
    assert pq.read_table(out.path).num_rows == 0 and out.sums["total_amount"] == 0


@pytest.mark.skipif(not LISTING_DIR.exists(), reason="the TLC listing is not there")
def test_real_rows_come_from_the_listing() -> None:
    listed = {}
    with open(LISTING_DIR / "fhvhv_tripmetadata_2019.csv", newline="") as fh:
        listed = {row["file_name"]: int(row["file_num_rows"]) for row in csv.DictReader(fh)}
    assert real_rows(FHVHV, date(2019, 3, 1)) == listed["fhvhv_tripdata_2019-03.parquet"] == 23_864_598
    assert real_rows(FHVHV, date(2026, 1, 1)) == TYPICAL_ROWS["fhvhv"]  # after the listing
    assert len(release_listing()) > 450


def test_tlc_tree_layout(tmp_path: Path) -> None:
    months = [date(2014, 12, 1), date(2019, 2, 1)]
    written = write_tlc_tree(tmp_path, ALL_DATASETS.values(), months, rows=40, seed=1)
    names = sorted(p.name for p in (tmp_path / "trip-data").iterdir())
    # fhv starts 2015-01 and fhvhv 2019-02: their 2014 months are skipped.
    assert names == sorted(
        [f"{d}_tripdata_2014-12.parquet" for d in ("yellow", "green")]
        + [f"{d}_tripdata_2019-02.parquet" for d in ("yellow", "green", "fhv", "fhvhv")]
    )
    assert sorted(g.path.name for g in written) == names
    with open(tmp_path / "misc" / "taxi_zone_lookup.csv", newline="") as fh:
        zones = list(csv.reader(fh))
    assert zones[0] == ["LocationID", "Borough", "Zone", "service_zone"] and len(zones) == 266
    if release_listing():  # Last-Modified of the live files, for the mirror's HEAD answers
        listed = release_listing()["fhvhv_tripdata_2019-02.parquet"].modified
        mtime = (tmp_path / "trip-data" / "fhvhv_tripdata_2019-02.parquet").stat().st_mtime
        assert math.isclose(mtime, listed.timestamp())
