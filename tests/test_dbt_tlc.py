"""The dbt project over the TLC's Parquet releases, on the embedded PostgreSQL: all four datasets
(the real green 2023-04 file, generated yellow, fhv and fhvhv months) loaded by the warehouse,
then `dbt build` for one month and for a range of months.

Expectations are computed here, independently of the loader and of dbt: ids with the reference
definition of `taxi_platform/trip_id.py` over pyarrow's values, sums with Python's Decimal, the
generator's own counts and sums (`generate_parquet_month`), counts per value with pyarrow."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from support.paths import ZONES_CSV
from support.pg_env import Env

from taxi_platform.datasets import ALL_DATASETS, ZONES, DatasetSpec
from taxi_platform.eras import era_of_month
from taxi_platform.lake.handles import LakeFile
from taxi_platform.resources import dbt_executable
from taxi_platform.sample.parquet_generator import GeneratedParquet, generate_parquet_month
from taxi_platform.trip_id import trip_id_from_values

REAL_PARQUET = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_parquet"
REAL_GREEN = REAL_PARQUET / "green_tripdata_2023-04.parquet"
MONTH = date(2023, 4, 1)  # the real green month; the others generated
LATER = date(2025, 2, 1)  # cbd_congestion_fee in every dataset but fhv
LEGACY = date(2010, 1, 1)  # yellow with vendor codes (DDS: no VendorID) and no zone ids
COMPANIES = {"HV0002": "Juno", "HV0003": "Uber", "HV0004": "Via", "HV0005": "Lyft"}
FHVHV_PAID: tuple[str, ...] = (
    "base_passenger_fare",
    "tolls",
    "bcf",
    "sales_tax",
    "congestion_surcharge",
    "airport_fee",
)
FHVHV_PAID += ("cbd_congestion_fee", "tips")  # passenger_total_amount's terms (not driver_pay)
FLEX_FARE_ROWS = 25  # yellow rows of the month rewritten to payment_type 0


def parquet_spec(name: str) -> DatasetSpec:
    return replace(ALL_DATASETS[name], file_extension="parquet")


def lake_file(path: Path) -> LakeFile:
    return LakeFile(
        uri=path.as_uri(), file_name=path.name, size=path.stat().st_size, opener=lambda: open(path, "rb")
    )


def load(env: Env, spec: DatasetSpec, month: date, path: Path) -> None:
    wh = env.warehouse()
    staged = wh.load_staging(spec, month, lake_file(path), lambda _m: None, run_id="t")
    wh.replace_month(spec, month, lambda _m: None, run_id="t", staged_sha256=staged.sha256)


def distinct_rows(path: Path) -> pa.Table:
    """A generated file's distinct rows: its duplicates are exact copies of earlier rows."""
    table = pq.read_table(path)
    return table.group_by(table.column_names).aggregate([])


def real_green_trips(path: Path, month: date = MONTH) -> tuple[set[str], Decimal]:
    """The file's distinct trip ids and the sum of total_amount over the first row of each."""
    by_zone = real_green_by_zone(path, month)
    ids = set().union(*(zone_ids for zone_ids, _ in by_zone.values()))
    return ids, sum((total for _, total in by_zone.values()), Decimal(0))


def real_green_by_zone(path: Path, month: date) -> dict[int | None, tuple[set[str], Decimal]]:
    """Per pickup zone: the distinct trip ids and the sum of total_amount over the first row of
    each (file order), from pyarrow's values and the reference id."""
    spec = parquet_spec("green")
    era = era_of_month(spec.eras, month)
    ids: set[str] = set()
    zones: dict[int | None, tuple[set[str], Decimal]] = {}
    for row in pq.read_table(path).to_pylist():
        values = {}
        for col in era.columns:
            if col.target in spec.identity_columns:
                value = row[col.name]
                if isinstance(value, float):
                    decimal = spec.column(col.target).type.value == "decimal"
                    value = Decimal(str(round(value, 6))) if decimal else int(value)
                values[col.target] = value
        trip = trip_id_from_values(spec, {name: values.get(name) for name in spec.identity_columns})
        if trip not in ids:
            ids.add(trip)
            zone_ids, total = zones.get(row["PULocationID"], (set(), Decimal(0)))
            zone_ids.add(trip)
            if row["total_amount"] is not None:
                total += Decimal(str(round(row["total_amount"], 6)))
            zones[row["PULocationID"]] = (zone_ids, total)
    return zones


def set_flex_fare(path: Path, rows: int) -> None:
    """The first `rows` rows without a payment type (the rows no vendor data was attributed to)
    become Flex Fare trips (payment_type 0), as in the TLC's recent files. Their duplicates are
    exact copies, changed alike; payment_type is not an identity column."""
    table = pq.read_table(path)
    blank = pc.is_null(table["payment_type"]).to_numpy(zero_copy_only=False)
    chosen = blank & (blank.cumsum() <= rows)
    payment = pc.if_else(
        pa.array(chosen), pa.scalar(0, table.schema.field("payment_type").type), table["payment_type"]
    )
    table = table.set_column(table.column_names.index("payment_type"), "payment_type", payment)
    pq.write_table(table, path, compression="zstd")


def dbt_build(env: Env, first: date, last: date, target: Path) -> dict[str, str]:
    """`dbt build` of the whole project for the source months first..last; the status of each node."""
    project = str(env.settings.dbt_project_dir)
    done = subprocess.run(
        [dbt_executable(), "build", "--project-dir", project, "--profiles-dir", project]
        + ["--target-path", str(target), "--log-path", str(target / "logs")],
        env={
            **os.environ,
            **env.warehouse().dbt_env(),
            "TAXI_DBT_MONTH_START": f"{first:%Y-%m-%d}",
            "TAXI_DBT_MONTH_END": f"{last:%Y-%m-%d}",
        },
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-4000:]
    results = json.loads((target / "run_results.json").read_text())["results"]
    return {r["unique_id"]: r["status"] for r in results}


def table(env: Env, name: str) -> str:
    return f'"{env.settings.dbt_schema}"."{name}"'


def per_service(env: Env, sql: str) -> dict[str, tuple]:
    """Rows of `sql` (its %s: MONTH) by their first column, the service type."""
    return {row[0]: tuple(row[1:]) for row in env.query(sql, (MONTH,) * sql.count("%s"))}


@pytest.fixture
def loaded(env: Env, tmp_path: Path) -> tuple[Env, dict[tuple[str, date], GeneratedParquet]]:
    """The zones, the real green month and generated months of the four datasets, in the warehouse."""
    env.warehouse().load_reference(ZONES, lake_file(ZONES_CSV), lambda _m: None)
    plan = [
        ("yellow", MONTH, 3_000),
        ("fhv", MONTH, 3_000),
        ("fhvhv", MONTH, 4_000),
        ("yellow", LATER, 1_000),
        ("green", LATER, 500),
        ("fhv", LATER, 500),
        ("fhvhv", LATER, 1_000),
        ("yellow", LEGACY, 1_000),
    ]
    generated = {}
    for seed, (name, month, rows) in enumerate(plan):
        spec = parquet_spec(name)
        path = tmp_path / spec.file_name(month)
        generated[name, month] = generate_parquet_month(spec, month, path, rows=rows, seed=seed)
        if (name, month) == ("yellow", MONTH):
            set_flex_fare(path, FLEX_FARE_ROWS)
        load(env, spec, month, path)
    load(env, parquet_spec("green"), MONTH, REAL_GREEN)
    return env, generated


def test_dbt_builds_the_four_tlc_datasets_for_a_month_then_a_range(loaded, tmp_path: Path):
    env, generated = loaded
    fact = table(env, "fact_trips")
    fhv_fact = table(env, "fact_fhv_trips")
    mart = table(env, "dm_monthly_zone_trips")

    statuses = dbt_build(env, MONTH, MONTH, tmp_path / "dbt-month")
    assert set(statuses.values()) == {"success", "pass"}, {
        k: v for k, v in statuses.items() if v not in ("success", "pass")
    }
    # Only the selected month was read from the Parquet partitions (file names `*.parquet`).
    for name in ("fact_trips", "fact_fhv_trips", "dm_monthly_zone_trips"):
        assert env.query(f"SELECT DISTINCT source_month FROM {table(env, name)}") == [(MONTH,)], name

    # fact_fhv_trips: every distinct fhv and fhvhv trip of the month, each dataset its service type.
    fhv, fhvhv = generated["fhv", MONTH], generated["fhvhv", MONTH]
    counts = dict(env.query(f"SELECT service_type, count(*) FROM {fhv_fact} GROUP BY 1"))
    assert counts == {"FHV": fhv.distinct_rows, "HVFHV": fhvhv.distinct_rows}
    assert env.query(f"SELECT count(DISTINCT trip_id) FROM {fhv_fact}")[0][0] == sum(counts.values())

    # The company of each license, counted over the file's distinct rows with pyarrow.
    licenses = distinct_rows(fhvhv.path)["hvfhs_license_num"]
    expected = {
        (v["values"], COMPANIES[v["values"]]): v["counts"] for v in pc.value_counts(licenses).to_pylist()
    }
    decoded = env.query(
        f"SELECT hvfhs_license_num, hvfhs_company, count(*) FROM {fhv_fact} WHERE service_type = 'HVFHV' GROUP BY 1, 2"
    )
    assert {(lic, company): n for lic, company, n in decoded} == expected
    assert env.query(
        f"SELECT count(*) FROM {fhv_fact} WHERE service_type = 'FHV' AND hvfhs_company IS NOT NULL"
    ) == [(0,)]

    # fact_trips: the real green month's distinct trips, total_amount to the cent.
    green_ids, green_total = real_green_trips(REAL_GREEN)
    ids = {r[0] for r in env.query(f"SELECT trip_id FROM {fact} WHERE service_type = 'Green'")}
    assert ids == green_ids
    (green_sum,) = env.query(f"SELECT sum(total_amount) FROM {fact} WHERE service_type = 'Green'")[0]
    assert green_sum == green_total
    # Yellow: every generated trip (the Parquet files attribute every row to a vendor), with the
    # generator's sums, the airport fee included; green has none.
    yellow = generated["yellow", MONTH]
    (rows, total, airport) = env.query(
        f"SELECT count(*), sum(total_amount), sum(airport_fee) FROM {fact} WHERE service_type = 'Yellow'"
    )[0]
    assert (rows, total, airport) == (
        yellow.distinct_rows,
        yellow.distinct_sums["total_amount"],
        yellow.distinct_sums["Airport_fee"],
    )
    assert env.query(f"SELECT count(airport_fee) FROM {fact} WHERE service_type = 'Green'") == [(0,)]

    # Payment type 0 reads 'Flex Fare'.
    table_rows = distinct_rows(yellow.path)
    flex = pc.sum(pc.equal(table_rows["payment_type"], 0)).as_py()
    assert 0 < flex <= FLEX_FARE_ROWS  # a duplicated row counts once
    assert env.query(
        f"SELECT payment_type_description, count(*) FROM {fact} WHERE payment_type = 0 GROUP BY 1"
    ) == [("Flex Fare", flex)]

    # The mart: per service, the fact tables' trips; revenue their sums (fhvhv: what passengers
    # paid, the generator's sums; fhv: no fares, NULL).
    marts = per_service(
        env, f"SELECT service_type, sum(trips), sum(revenue) FROM {mart} WHERE source_month = %s GROUP BY 1"
    )
    facts = per_service(
        env,
        f"SELECT service_type, count(*), sum(total_amount) FROM {fact} WHERE source_month = %s GROUP BY 1 "
        f"UNION ALL SELECT service_type, count(*), sum(passenger_total_amount) FROM {fhv_fact} "
        "WHERE source_month = %s GROUP BY 1",
    )
    assert marts == facts
    assert marts["Green"] == (len(green_ids), green_total)
    assert marts["HVFHV"] == (fhvhv.distinct_rows, sum(fhvhv.distinct_sums.get(c, 0) for c in FHVHV_PAID))
    assert marts["FHV"] == (fhv.distinct_rows, None)
    before = sorted(env.query(f"SELECT md5(t::text) FROM {mart} t"))

    # A range of months (2010-01 .. 2025-02): the month rebuilt alike, the other loaded months added.
    statuses = dbt_build(env, LEGACY, LATER, tmp_path / "dbt-range")
    assert set(statuses.values()) == {"success", "pass"}
    assert sorted(env.query(f"SELECT md5(t::text) FROM {mart} t WHERE source_month = %s", (MONTH,))) == before
    months = {m for (m,) in env.query(f"SELECT DISTINCT source_month FROM {mart}")}
    assert months == {LEGACY, MONTH, LATER}

    # 2025: the CBD congestion fee of yellow, green and fhvhv trips, as the files have it.
    fees = dict(
        env.query(
            f"SELECT service_type, sum(cbd_congestion_fee) FROM {fact} WHERE source_month = %s GROUP BY 1 "
            f"UNION ALL SELECT service_type, sum(cbd_congestion_fee) FROM {fhv_fact} "
            "WHERE source_month = %s GROUP BY 1",
            (LATER, LATER),
        )
    )
    assert fees == {
        "Yellow": generated["yellow", LATER].distinct_sums["cbd_congestion_fee"],
        "Green": generated["green", LATER].distinct_sums["cbd_congestion_fee"],
        "HVFHV": generated["fhvhv", LATER].distinct_sums["cbd_congestion_fee"],
        "FHV": None,
    }

    # 2010: the trips of Digital Dispatch Systems (no VendorID, vendor code DDS) are kept, with
    # vendor_id NULL; no trip has a zone id, every zone reads 'Unknown'.
    legacy = generated["yellow", LEGACY]
    dds = pc.sum(pc.equal(distinct_rows(legacy.path)["vendor_id"], "DDS")).as_py()
    assert dds > 0
    rows = env.query(
        f"SELECT count(*), count(*) - count(vendor_id), count(pickup_location_id), "
        f"count(*) FILTER (WHERE pickup_zone = 'Unknown' AND dropoff_zone = 'Unknown') "
        f"FROM {fact} WHERE source_month = %s",
        (LEGACY,),
    )
    assert rows == [(legacy.distinct_rows, dds, 0, legacy.distinct_rows)]
    assert env.query(
        f"SELECT pickup_borough, trips FROM {mart} WHERE source_month = %s AND service_type = 'Yellow'",
        (LEGACY,),
    ) == [("Unknown", legacy.distinct_rows)]


def test_the_mart_of_every_real_green_month_equals_an_independent_sum(env: Env, tmp_path: Path):
    """The seven real green months (three eras) loaded and built in one range: per month and
    pickup zone, the mart's trips and revenue are the file's distinct trips and their total_amount."""
    env.warehouse().load_reference(ZONES, lake_file(ZONES_CSV), lambda _m: None)
    spec = parquet_spec("green")
    files = sorted(REAL_PARQUET.glob("green_tripdata_*.parquet"))
    months = {path: date(int(path.stem[15:19]), int(path.stem[20:22]), 1) for path in files}
    assert len(files) == 7
    for path, month in months.items():
        load(env, spec, month, path)
    # As the platform does before dbt (assets/dbt.py): the other datasets' tables exist, empty.
    env.warehouse().ensure_trip_tables([parquet_spec(name) for name in ALL_DATASETS])
    statuses = dbt_build(env, min(months.values()), max(months.values()), tmp_path / "dbt")
    assert set(statuses.values()) == {"success", "pass"}
    mart = table(env, "dm_monthly_zone_trips")
    for path, month in months.items():
        expected = {zone: (len(ids), total) for zone, (ids, total) in real_green_by_zone(path, month).items()}
        found = {
            zone: (trips, revenue)
            for zone, trips, revenue in env.query(
                f"SELECT pickup_location_id, trips, revenue FROM {mart} "
                "WHERE service_type = 'Green' AND source_month = %s",
                (month,),
            )
        }
        assert found == expected, path.name
        assert sum(trips for trips, _ in found.values()) > 10_000

    # The reconciliation test fails when fact_trips loses rows of a month, naming it with both counts.
    fact = table(env, "fact_trips")
    lost = date(2023, 4, 1)
    env.query(
        f"DELETE FROM {fact} WHERE trip_id IN (SELECT trip_id FROM {fact} WHERE source_month = %s LIMIT 3) "
        "RETURNING trip_id",
        (lost,),
    )
    project = str(env.settings.dbt_project_dir)
    failing = tmp_path / "dbt-test"
    done = subprocess.run(
        [dbt_executable(), "test", "--project-dir", project, "--profiles-dir", project, "--store-failures"]
        + ["--select", "fact_trips_rows_match_final_tables", "--target-path", str(failing)]
        + ["--log-path", str(failing / "logs")],
        env={**os.environ, **env.warehouse().dbt_env()},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1, done.stdout[-2000:]
    (result,) = json.loads((failing / "run_results.json").read_text())["results"]
    assert (result["status"], result["failures"]) == ("fail", 1)
    (final_rows,) = env.query(
        f"SELECT count(*) FROM {env.final(spec)} WHERE filename = %s", (spec.file_name(lost),)
    )[0]
    audit = env.query(
        f'SELECT source_month, service_type, rows_in_model, rows_in_final FROM "{env.settings.dbt_schema}_dbt_test__audit"'
        '."fact_trips_rows_match_final_tables"'
    )
    assert audit == [(lost, "Green", final_rows - 3, final_rows)]
