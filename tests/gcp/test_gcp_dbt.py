"""dbt's `bigquery` target against the BigQuery emulator: staging views, fact_trips and the revenue
mart for one month, equal to the same computation with pandas (as tests/test_dbt.py on PostgreSQL)."""

from __future__ import annotations

import csv
import threading
import time
from datetime import date
from decimal import Decimal

import dagster as dg
import pytest
from support.expected import expected_from_file
from support.gcp_env import GcpEnv
from support.paths import ZONES_CSV

from taxi_platform.assets.dbt import DBT_REFERENCE_KEYS
from taxi_platform.assets.trip_keys import final_key, raw_file_key, staging_key
from taxi_platform.assets.zones import reference_file_key, reference_table_key
from taxi_platform.datasets import GREEN, YELLOW, ZONES
from taxi_platform.sample.generator import generate_month
from taxi_platform.warehouse.base import WarehouseError
from taxi_platform.warehouse.bigquery_lock import dbt_build_lock, lock_table_name

MONTH = date(2019, 1, 1)
DBT_MONTHLY = [
    dg.AssetKey(["dbt", n])
    for n in ("stg_yellow_tripdata", "stg_green_tripdata", "fact_trips", "dm_monthly_zone_revenue")
]
DBT_REFERENCE = DBT_REFERENCE_KEYS


def test_dbt_bigquery_target_builds_one_month(gcp_env: GcpEnv):
    env = gcp_env
    target = env.mirror / ZONES.release_tag / ZONES.file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(ZONES_CSV.read_bytes())
    env.run([reference_file_key(ZONES), reference_table_key(ZONES)])
    for spec, rows in ((YELLOW, 3_000), (GREEN, 1_000)):
        generate_month(spec, MONTH, env.mirror_path(spec, MONTH), rows=rows, seed=1)
        env.run([raw_file_key(spec), staging_key(spec), final_key(spec)], MONTH)
    env.run(DBT_REFERENCE)
    env.run(DBT_MONTHLY, MONTH)
    check_month(env)
    # The demo's report, through the warehouse interface: the top zones computed from the files.
    top = env.warehouse().top_pickup_zones([MONTH], limit=5)
    assert top == expected_top_zones(env, limit=5) and len(top) == 5
    assert env.warehouse().top_pickup_zones([date(2018, 1, 1)]) == []  # a month not built: none
    before = snapshot(env)
    env.run(DBT_MONTHLY, MONTH)  # the incremental path: insert_overwrite of the month's partition
    assert snapshot(env) == before


def dbt_table(env: GcpEnv, name: str) -> str:
    return f"`test-project.{env.settings.dbt_schema}.{name}`"


def snapshot(env: GcpEnv) -> dict[str, list]:
    return {
        t: sorted(env.query(f"SELECT * FROM {dbt_table(env, t)}"), key=repr)
        for t in ("fact_trips", "dm_monthly_zone_revenue")
    }


def check_month(env: GcpEnv) -> None:
    """fact_trips holds exactly the distinct trips with a vendor; the mart's sums and counts per
    service equal the same sums over the files (first copy of each trip), to the cent."""
    expected_ids, fares, trips = set(), {}, {}
    for spec, service in ((YELLOW, "Yellow"), (GREEN, "Green")):
        vendor, fare = spec.csv_columns.index("VendorID"), spec.csv_columns.index("fare_amount")
        rows = [r for r in expected_from_file(spec, env.mirror_path(spec, MONTH)).ids.items() if r[1][vendor]]
        expected_ids |= {i for i, _ in rows}
        fares[service] = sum((Decimal(r[fare]) for _, r in rows if r[fare]), Decimal(0))
        trips[service] = len(rows)
    fact = [r[0] for r in env.query(f"SELECT trip_id FROM {dbt_table(env, 'fact_trips')}")]
    assert len(fact) == len(set(fact)) == len(expected_ids) and set(fact) == expected_ids
    mart = env.query(
        f"SELECT service_type, SUM(revenue_monthly_fare), SUM(total_monthly_trips), "
        f"MIN(revenue_month), MAX(revenue_month) "
        f"FROM {dbt_table(env, 'dm_monthly_zone_revenue')} GROUP BY service_type"
    )
    assert {r[0]: (r[1], r[2]) for r in mart} == {s: (fares[s], trips[s]) for s in fares}
    assert {(r[3], r[4]) for r in mart} == {(MONTH, MONTH)}


def expected_top_zones(env: GcpEnv, limit: int) -> list[tuple]:
    """The demo's report from the month's files (first copy of each trip with a vendor) and the zone
    file: revenue (total_amount) and trips per pickup zone, borough and service, highest first."""
    with ZONES_CSV.open(newline="") as fh:
        zone_of = {int(r["LocationID"]): (r["Zone"], r["Borough"]) for r in csv.DictReader(fh)}
    totals: dict[tuple, tuple[Decimal, int]] = {}
    for spec, service in ((YELLOW, "Yellow"), (GREEN, "Green")):
        vendor, pickup, total = (
            spec.csv_columns.index(c) for c in ("VendorID", "PULocationID", "total_amount")
        )
        for row in expected_from_file(spec, env.mirror_path(spec, MONTH)).ids.values():
            if row[vendor]:
                key = (*zone_of[int(row[pickup])], service)
                revenue, trips = totals.get(key, (Decimal(0), 0))
                totals[key] = (revenue + Decimal(row[total] or 0), trips + 1)
    ranked = sorted(totals.items(), key=lambda item: item[1][0], reverse=True)[:limit]
    return [(*key, revenue, trips) for key, (revenue, trips) in ranked]


def test_two_dbt_builds_never_hold_the_lock_at_once(gcp_env: GcpEnv):
    """The lock table: a second holder waits for the first and times out naming the table; it gets
    the lock once the first releases it; the table is dropped after the block, also after an error."""
    warehouse = gcp_env.warehouse()
    staging, table = gcp_env.settings.staging_schema, lock_table_name(warehouse.dbt_dataset)
    with dbt_build_lock(warehouse) as ref:
        assert gcp_env.table_exists(staging, table)
        started = time.monotonic()
        with pytest.raises(WarehouseError) as info, dbt_build_lock(warehouse, wait_seconds=2):
            pass
        assert time.monotonic() - started >= 2
        assert str(info.value).startswith(
            f"another dbt build holds the lock table {ref} (dbt build lock, held by "
        )
        assert "waited 2 s for it" in str(info.value)
    assert not gcp_env.table_exists(staging, table)

    # A waiter gets the lock as soon as the holder lets it go.
    held, release = threading.Event(), threading.Event()

    def first_build() -> None:
        with dbt_build_lock(warehouse):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=first_build)
    holder.start()
    try:
        assert held.wait(30)
        threading.Timer(1.5, release.set).start()
        started = time.monotonic()
        with dbt_build_lock(warehouse, wait_seconds=30):
            waited = time.monotonic() - started
            assert release.is_set()  # only once the first build let go
        assert 1.4 <= waited < 30
    finally:
        release.set()
        holder.join(30)
    assert not gcp_env.table_exists(staging, table)

    # The warehouse's own lock (the dbt asset's), released after an error in the build too.
    with pytest.raises(RuntimeError, match="dbt failed"), warehouse.dbt_build_lock():
        assert gcp_env.table_exists(staging, table)
        raise RuntimeError("dbt failed")
    assert not gcp_env.table_exists(staging, table)

    # A build releases only its own table: when its own expired and another build took the lock,
    # the other's table stays.
    from google.cloud import bigquery

    with dbt_build_lock(warehouse) as ref, warehouse.client("stand in for another build") as client:
        client.delete_table(ref)  # as the expiry would
        others = bigquery.Table(ref, schema=[bigquery.SchemaField("holder", "STRING")])
        others.description = "dbt build lock, held by another build (token 0123)"
        client.create_table(others)
    assert gcp_env.table_exists(staging, table)
    with warehouse.client("drop the other build's lock") as client:
        assert client.get_table(ref).description == others.description
        client.delete_table(ref)


def test_dbt_bigquery_target_builds_a_range_of_months_in_one_run(gcp_env: GcpEnv):
    """Jan..Feb in one dbt build (insert_overwrite of both months' partitions); a later range run
    over the same months after Feb's file changed changes Feb only."""
    env = gcp_env
    jan, feb = date(2019, 1, 1), date(2019, 2, 1)
    target = env.mirror / ZONES.release_tag / ZONES.file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(ZONES_CSV.read_bytes())
    env.run([reference_file_key(ZONES), reference_table_key(ZONES)])
    for spec, rows in ((YELLOW, 1_500), (GREEN, 600)):
        for i, month in enumerate((jan, feb)):
            generate_month(spec, month, env.mirror_path(spec, month), rows=rows + 400 * i, seed=3 + i)
        assert env.materialize_range(spec, jan, feb).success
    env.run(DBT_REFERENCE)

    def trips_by_month() -> tuple[dict, dict]:
        mart = {
            (m, s): n
            for m, s, n in env.query(
                f"SELECT revenue_month, service_type, SUM(total_monthly_trips) "
                f"FROM {dbt_table(env, 'dm_monthly_zone_revenue')} GROUP BY 1, 2"
            )
        }
        final = {}
        for spec in (YELLOW, GREEN):
            for month in (jan, feb):
                final[(month, spec.name.capitalize())] = env.query(
                    f"SELECT COUNT(*) FROM {env.final(spec)} WHERE filename = '{spec.file_name(month)}' "
                    f"AND VendorID IS NOT NULL"
                )[0][0]
        return mart, final

    env.run_range(DBT_MONTHLY, jan, feb)
    mart, final = trips_by_month()
    assert mart == final and len(mart) == 4
    before = snapshot(env)
    generate_month(YELLOW, feb, env.mirror_path(YELLOW, feb), rows=900, seed=77)
    env.run([raw_file_key(YELLOW), staging_key(YELLOW), final_key(YELLOW)], feb)
    env.run_range(DBT_MONTHLY, jan, feb)
    mart, final = trips_by_month()
    assert mart == final and mart[(feb, "Yellow")] != before_count(before, feb)
    after = snapshot(env)
    assert [r for r in after["fact_trips"] if jan in r] == [r for r in before["fact_trips"] if jan in r]


def before_count(snap: dict[str, list], month: date) -> int:
    """Yellow trips of `month` in a snapshot of fact_trips."""
    return sum(1 for r in snap["fact_trips"] if month in r and "Yellow" in r)
