"""TLC Parquet months into PostgreSQL: the real files of every green era, the real 2020-04 rows of
all four datasets, the same ids as the course's CSV, and bad files refused with tables unchanged.

Expectations are computed independently of the loader (tests/support/parquet_files.py): ids with
the reference definition of `taxi_platform/trip_id.py` over pyarrow's values, sums with Python's
Decimal. The refusal of a value that does not fit is in tests/test_failures.py, on both targets."""

from __future__ import annotations

import csv
import gzip
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.parquet_files import (
    APRIL,
    REAL_PARQUET,
    REAL_ROWS,
    expected_trips,
    green_table,
    lake_file,
    load,
    parquet_spec,
    rows_as_parquet,
    write,
)

from taxi_platform.datasets import GREEN, YELLOW, DatasetSpec
from taxi_platform.eras import era_of_month
from taxi_platform.warehouse.base import BadInputError


def final_ids(env, spec: DatasetSpec) -> set[str]:
    return {r for (r,) in env.query(f"SELECT unique_row_id FROM {env.final(spec)}")}


@pytest.mark.parametrize(
    "path", sorted(REAL_PARQUET.glob("green_tripdata_*.parquet")), ids=lambda p: p.stem[15:]
)
def test_real_green_month_loads_its_distinct_trips(env, path: Path) -> None:
    spec = parquet_spec("green")
    month = date(int(path.stem[15:19]), int(path.stem[20:22]), 1)
    ids, rows, revenue = expected_trips(spec, path, "total_amount")
    staged, replaced = load(env, spec, month, path)
    assert staged.rows_read == rows == pq.ParquetFile(path).metadata.num_rows
    assert replaced.final_rows == len(ids) and replaced.duplicates_dropped == rows - len(ids)
    assert final_ids(env, spec) == ids
    (total,) = env.query(f"SELECT sum(total_amount) FROM {env.final(spec)}")[0]
    assert total == revenue
    assert staged.schema_era == era_of_month(spec.eras, month).name
    (filename,) = env.query(f"SELECT DISTINCT filename FROM {env.final(spec)}")[0]
    assert filename == path.name


# ---------------------------------------------------------------- the real 2020-04 rows, all four


@pytest.mark.parametrize("name", ["yellow", "green", "fhv", "fhvhv"])
def test_real_april_rows_of_every_dataset(env, tmp_path: Path, name: str) -> None:
    spec = parquet_spec(name)
    path = rows_as_parquet(spec, tmp_path)
    money = {"yellow": "total_amount", "green": "total_amount", "fhvhv": "base_passenger_fare"}.get(name)
    ids, rows, revenue = expected_trips(spec, path, money)
    staged, replaced = load(env, spec, APRIL, path)
    assert rows == 1000 and staged.rows_read == 1000
    assert replaced.final_rows == len(ids) and final_ids(env, spec) == ids
    if money:
        (total,) = env.query(f'SELECT sum("{money}") FROM {env.final(spec)}')[0]
        assert total == revenue


def test_csv_backup_and_parquet_give_the_same_ids(env, tmp_path: Path) -> None:
    """The same trips, as the course's CSV (its columns, its value formats) and as the TLC's
    Parquet file, loaded into two warehouses: the same unique_row_id for every trip."""
    from taxi_platform.warehouse.postgres import PostgresWarehouse

    wh = env.warehouse()
    other = PostgresWarehouse(
        url=env.pg_url,
        home=wh.home,
        warehouse_schema=wh.warehouse_schema + "_pq",
        staging_schema=wh.staging_schema + "_pq",
        dbt_schema=wh.dbt_schema,
    )
    for spec_csv in (YELLOW, GREEN):
        spec_parquet = replace(spec_csv, file_extension="parquet")
        with open(REAL_ROWS / f"{spec_csv.name}_tripdatasample_2020-04.csv", newline="") as fh:
            records = list(csv.DictReader(fh))
        lines = [",".join(spec_csv.csv_columns)]
        for r in records:  # the backup's formats: times without a fraction
            lines.append(",".join(r[c].removesuffix(".000000") for c in spec_csv.csv_columns))
        csv_path = tmp_path / spec_csv.file_name(APRIL)
        csv_path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
        load(env, spec_csv, APRIL, csv_path)
        parquet_path = rows_as_parquet(spec_parquet, tmp_path)
        staged = other.load_staging(spec_parquet, APRIL, lake_file(parquet_path), lambda _m: None, run_id="t")
        other.replace_month(spec_parquet, APRIL, lambda _m: None, run_id="t", staged_sha256=staged.sha256)
        parquet_ids = {
            r
            for (r,) in env.query(
                f'SELECT unique_row_id FROM "{other.warehouse_schema}"."{spec_csv.table_name}"'
            )
        }
        csv_ids = final_ids(env, spec_csv)
        assert len(csv_ids) > 900 and csv_ids == parquet_ids


# ---------------------------------------------------------------- bad files


@pytest.fixture
def loaded(env):
    """Green 2023-04 loaded from the real file: what must stay as it is after a refused file."""
    spec = parquet_spec("green")
    load(env, spec, date(2023, 4, 1), REAL_PARQUET / "green_tripdata_2023-04.parquet")
    return env, spec, env.fingerprint(spec)


def refused(loaded, path: Path, match: str) -> str:
    env, spec, before = loaded
    with pytest.raises(BadInputError, match=match) as info:
        env.warehouse().load_staging(spec, date(2023, 4, 1), lake_file(path), lambda _m: None, run_id="bad")
    assert env.fingerprint(spec) == before
    # The staging table of the good load is still the swapped-in partition: nothing staged.
    assert (
        env.query("SELECT to_regclass(%s)", (f"{env.settings.staging_schema}.green_tripdata_2023_04",))[0][0]
        is None
    )
    return str(info.value)


def test_an_unknown_column_is_refused_naming_it(loaded, tmp_path: Path) -> None:
    table = green_table().append_column("surge_fee", pa.array([1.0] * 500))
    message = refused(loaded, write(table, tmp_path), "match no known green schema era")
    assert "unexpected surge_fee" in message and "missing" not in message


def test_a_renamed_column_is_refused_naming_both(loaded, tmp_path: Path) -> None:
    table = green_table().rename_columns(
        ["vendor_id" if c == "VendorID" else c for c in green_table().column_names]
    )
    message = refused(loaded, write(table, tmp_path), "match no known green schema era")
    assert "missing VendorID" in message and "unexpected vendor_id" in message


def test_a_file_cut_short_is_refused(loaded, tmp_path: Path) -> None:
    data = (REAL_PARQUET / "green_tripdata_2023-04.parquet").read_bytes()
    path = tmp_path / "green_tripdata_2023-04.parquet"
    path.write_bytes(data[: len(data) // 2])
    refused(loaded, path, "green_tripdata_2023-04.parquet: the Parquet footer cannot be read")


def test_a_null_typed_column_loads_as_null(env, tmp_path: Path) -> None:
    spec = parquet_spec("green")
    table = green_table(ehail_fee=pa.nulls(500), congestion_surcharge=pa.nulls(500))
    staged, replaced = load(env, spec, date(2023, 4, 1), write(table, tmp_path))
    assert replaced.final_rows == staged.rows == 500 - replaced.duplicates_dropped
    assert env.query(
        f"SELECT count(ehail_fee), count(congestion_surcharge), count(*) FROM {env.final(spec)}"
    )[0] == (
        0,
        0,
        replaced.final_rows,
    )


def test_a_year_3019_dropoff_is_kept_as_published(env, tmp_path: Path) -> None:
    """fhv 2019-02 holds a dropoff in year 3019 (it overflows nanosecond timestamps): the rule is
    to keep it as published; nothing crashes and the row loads."""
    spec = parquet_spec("fhv")
    path = rows_as_parquet(spec, tmp_path)
    table = pq.read_table(path)
    dropoffs = table.column("dropOff_datetime").to_pylist()
    dropoffs[7] = datetime(3019, 2, 3, 4, 5, 6)
    table = table.set_column(2, "dropOff_datetime", pa.array(dropoffs, pa.timestamp("us")))
    pq.write_table(table, path)
    staged, replaced = load(env, spec, APRIL, path)
    assert staged.rows_read == 1000
    assert (
        env.query(f"SELECT count(*) FROM {env.final(spec)} WHERE dropoff_datetime >= '3019-01-01'")[0][0] == 1
    )


def test_legacy_yellow_2009_strings_and_codes(env, tmp_path: Path) -> None:
    """2009: datetimes as text, vendors and payments as codes, coordinates instead of zones."""
    spec = parquet_spec("yellow")
    era = spec.eras[0]
    rows = {
        "vendor_name": ["CMT", "VTS", "DDS", "VTS"],
        "Trip_Pickup_DateTime": [
            "2009-01-04 02:52:00",
            "2009-01-04 03:31:00",
            "2009-01-03 15:43:00",
            "2009-01-01 20:52:58",
        ],
        "Trip_Dropoff_DateTime": [
            "2009-01-04 03:02:00",
            "2009-01-04 03:38:00",
            "2009-01-03 15:57:00",
            "2009-01-01 21:14:00",
        ],
        "Passenger_Count": [1, 3, 5, 1],
        "Trip_Distance": [2.63, 4.55, 10.35, 5.0],
        "Start_Lon": [-73.991957, -73.982102, -74.002587, -73.974267],
        "Start_Lat": [40.721567, 40.73629, 40.739748, 40.790955],
        "Rate_Code": [None, None, None, None],
        "store_and_forward": [None, None, None, 0.0],
        "End_Lon": [-73.993803, -73.95585, -73.869983, -73.996558],
        "End_Lat": [40.695922, 40.76803, 40.770225, 40.731849],
        "Payment_Type": ["CASH", "Credit", "Credit", "CREDIT"],
        "Fare_Amt": [8.9, 12.1, 23.7, 14.9],
        "surcharge": [0.5, 0.5, 0.0, 0.5],
        "mta_tax": [None, None, None, None],
        "Tip_Amt": [0.0, 2.0, 4.74, 3.05],
        "Tolls_Amt": [0.0, 0.0, 0.0, 0.0],
        "Total_Amt": [9.4, 14.6, 28.44, 18.45],
    }
    types = era.arrow_types(date(2009, 1, 1))
    table = pa.table(
        {name: pa.array(values).cast(pa.type_for_alias(types[name])) for name, values in rows.items()}
    )
    path = tmp_path / "yellow_tripdata_2009-01.parquet"
    pq.write_table(table, path)
    staged, replaced = load(env, spec, date(2009, 1, 1), path)
    assert staged.schema_era == "yellow-2009" and replaced.final_rows == 4
    got = env.query(
        f'SELECT "VendorID", vendor_name, payment_type, store_and_fwd_flag, "PULocationID", pickup_longitude, '
        f"tpep_pickup_datetime, total_amount FROM {env.final(spec)} ORDER BY tpep_pickup_datetime"
    )
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in got] == [
        (2, "VTS", 1, "N", None),
        (None, "DDS", 1, None, None),
        (1, "CMT", 2, None, None),
        (2, "VTS", 1, None, None),
    ]
    assert got[0][5] == -73.974267 and got[0][6] == datetime(2009, 1, 1, 20, 52, 58)
    assert sum(r[7] for r in got) == Decimal("70.89")


def test_an_unknown_payment_code_is_refused(env, tmp_path: Path) -> None:
    spec = parquet_spec("yellow")
    types = spec.eras[0].arrow_types(date(2009, 1, 1))
    columns: dict[str, list[str | None]] = {c.name: [None] for c in spec.eras[0].columns}
    columns.update(
        vendor_name=["CMT"], Trip_Pickup_DateTime=["2009-01-04 02:52:00"], Payment_Type=["Bitcoin"]
    )
    table = pa.table({n: pa.array(v).cast(pa.type_for_alias(types[n])) for n, v in columns.items()})
    pq.write_table(table, tmp_path / "yellow_tripdata_2009-01.parquet")
    with pytest.raises(BadInputError) as info:
        load(env, spec, date(2009, 1, 1), tmp_path / "yellow_tripdata_2009-01.parquet")
    assert str(info.value).startswith(
        "yellow_tripdata_2009-01.parquet row 1, column Payment_Type: Bitcoin is not one of"
    )
    assert env.fingerprint(spec) == []


# ---------------------------------------------------------------- every era of every dataset


def era_months(spec: DatasetSpec) -> list[date]:
    """A month of each era, and of each change of physical types within an era."""
    months = {era.first_month for era in spec.eras}
    months |= {since for era in spec.eras for since, _ in era.type_changes}
    return sorted(months)


@pytest.mark.parametrize("name", ["yellow", "green", "fhv", "fhvhv"])
def test_generated_months_of_every_era_land_in_one_table(env, tmp_path: Path, name: str) -> None:
    from taxi_platform.sample.parquet_generator import generate_parquet_month

    spec = parquet_spec(name)
    expected: dict[str, int] = {}
    for month in era_months(spec):
        made = generate_parquet_month(
            spec, month, tmp_path / spec.file_name(month), rows=400, seed=month.month
        )
        staged, replaced = load(env, spec, month, made.path)
        assert staged.schema_era == made.era and replaced.final_rows == made.distinct_rows
        expected[spec.file_name(month)] = made.distinct_rows
    got = dict(env.query(f"SELECT filename, count(*) FROM {env.final(spec)} GROUP BY filename"))
    assert got == expected and len(expected) == len(era_months(spec))
    # Every era's ids are distinct in the one table (no era collapses another's trips).
    assert env.query(f"SELECT count(DISTINCT unique_row_id) FROM {env.final(spec)}")[0][0] == sum(
        expected.values()
    )
