"""dbt models through Dagster on the embedded PostgreSQL, checked against pandas on the same files."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import dagster as dg
import pandas as pd
import pytest
from support.expected import csv_lines, expected_from_file, read_gz, write_gz
from support.paths import ZONES_CSV
from support.pg_env import Env

from taxi_platform.assets.dbt import DBT_REFERENCE_KEYS
from taxi_platform.assets.trip_keys import final_key, raw_file_key, staging_key
from taxi_platform.assets.zones import reference_file_key, reference_table_key
from taxi_platform.datasets import GREEN, YELLOW, ZONES
from taxi_platform.sample.generator import generate_month
from taxi_platform.sample.zones import write_mirror_zones

MONTHS = (date(2019, 1, 1), date(2019, 2, 1))
DBT_MONTHLY = [
    dg.AssetKey(["dbt", n])
    for n in ("stg_yellow_tripdata", "stg_green_tripdata", "fact_trips", "dm_monthly_zone_revenue")
]
ZONE_SEED = dg.AssetKey(["dbt", "taxi_zone_lookup"])
DBT_REFERENCE = DBT_REFERENCE_KEYS
ZONES_MATCH = "zones_match_public_zone_table"  # dim_zones' check against the seed (severity warn)
MONEY = [
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "ehail_fee",
    "improvement_surcharge",
    "congestion_surcharge",
    "total_amount",
]


def ingest(env: Env, spec, month, rows=4_000, seed=0):
    generate_month(spec, month, env.mirror_path(spec, month), rows=rows, seed=seed)
    env.run([raw_file_key(spec), staging_key(spec), final_key(spec)], month)


def load_zones(env: Env, real: bool = False) -> dg.ExecuteInProcessResult:
    """The zone file (the real one from ../shared, or the mirror's: the dbt seed), then the
    unpartitioned dbt models; the dbt run's result."""
    target = env.mirror / ZONES.release_tag / ZONES.file_name
    if real:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(ZONES_CSV.read_bytes())
    else:
        write_mirror_zones(env.mirror)
    env.run([reference_file_key(ZONES), reference_table_key(ZONES)])
    return env.run(DBT_REFERENCE)


def build_month(env: Env, month, raise_on_error=True):
    return env.run(DBT_MONTHLY, month, raise_on_error=raise_on_error)


def dbt_table(env: Env, name: str) -> str:
    return f'"{env.settings.dbt_schema}"."{name}"'


def expected_mart(env: Env, real_zones: bool) -> pd.DataFrame:
    """The revenue mart computed with pandas from the generated files and the zone file."""
    zones = pd.read_csv(
        ZONES_CSV if real_zones else env.mirror / "misc" / "taxi_zone_lookup.csv",
        dtype=str,
        keep_default_na=False,
    )
    zone_of = dict(zip(zones["LocationID"].astype(int), zones["Zone"]))
    frames = []
    for spec, service in ((YELLOW, "Yellow"), (GREEN, "Green")):
        for month in MONTHS:
            path = env.mirror_path(spec, month)
            if not path.exists():
                continue
            rows = list(expected_from_file(spec, path).ids.values())  # distinct trips, first copy
            df = pd.DataFrame(rows, columns=list(spec.csv_columns))
            df = df[df["VendorID"] != ""]
            if "ehail_fee" not in df:
                df["ehail_fee"] = "0"
            df["service_type"] = service
            df["revenue_month"] = month
            frames.append(df)
    trips = pd.concat(frames)
    for column in MONEY + ["trip_distance"]:
        trips[column] = trips[column].map(lambda v: Decimal(v) if v != "" else None)
    trips["passenger_count"] = pd.to_numeric(trips["passenger_count"].replace("", None))
    trips["revenue_zone_id"] = trips["PULocationID"].astype(int)
    trips["revenue_zone"] = trips["revenue_zone_id"].map(lambda i: zone_of.get(i, "Unknown"))

    def money_sum(values):
        present = [v for v in values if v is not None]
        return sum(present, Decimal(0)) if present else None

    grouped = trips.groupby(["revenue_zone_id", "revenue_zone", "revenue_month", "service_type"])
    out = grouped.agg(
        **{f"revenue_monthly_{c if c != 'fare_amount' else 'fare'}": (c, money_sum) for c in MONEY},
        total_monthly_trips=("VendorID", "size"),
        avg_monthly_passenger_count=("passenger_count", "mean"),
        avg_monthly_trip_distance=("trip_distance", lambda v: float(sum(v) / len(v))),
    )
    return out.reset_index()


def actual_mart(env: Env) -> pd.DataFrame:
    cols = (
        ["revenue_zone_id", "revenue_zone", "revenue_month", "service_type"]
        + [f"revenue_monthly_{c if c != 'fare_amount' else 'fare'}" for c in MONEY]
        + ["total_monthly_trips", "avg_monthly_passenger_count", "avg_monthly_trip_distance"]
    )
    rows = env.query(f"SELECT {', '.join(cols)} FROM {dbt_table(env, 'dm_monthly_zone_revenue')}")
    return pd.DataFrame(rows, columns=cols)


def assert_marts_equal(expected: pd.DataFrame, actual: pd.DataFrame):
    key = ["revenue_zone_id", "revenue_month", "service_type"]
    e = expected.sort_values(key).reset_index(drop=True)
    a = actual.sort_values(key).reset_index(drop=True)
    assert len(a) == len(e)
    exact = [c for c in e.columns if not c.startswith("avg_")]
    for column in exact:  # sums to the cent, counts exact, same zone names
        assert a[column].tolist() == e[column].tolist(), column
    for column in ("avg_monthly_passenger_count", "avg_monthly_trip_distance"):
        assert a[column].astype(float).tolist() == pytest.approx(e[column].astype(float).tolist(), rel=1e-9)


def expected_top_zones(mart: pd.DataFrame, limit: int) -> list[tuple]:
    """The demo's report from a mart computed with pandas: revenue and trips per pickup zone,
    borough and service over all its months, highest revenue first."""
    zones = pd.read_csv(ZONES_CSV, dtype=str, keep_default_na=False)
    borough_of = dict(zip(zones["LocationID"].astype(int), zones["Borough"]))
    totals: dict[tuple, tuple[Decimal, int]] = {}
    for row in mart.itertuples():
        key = (row.revenue_zone, borough_of[row.revenue_zone_id], row.service_type)
        revenue, trips = totals.get(key, (Decimal(0), 0))
        totals[key] = (
            revenue + (row.revenue_monthly_total_amount or 0),
            trips + int(row.total_monthly_trips),
        )
    ranked = sorted(totals.items(), key=lambda item: item[1][0], reverse=True)[:limit]
    return [(*key, revenue, trips) for key, (revenue, trips) in ranked]


@pytest.fixture
def loaded(env: Env) -> Env:
    load_zones(env, real=True)
    for i, month in enumerate(MONTHS):
        ingest(env, YELLOW, month, seed=i)
        ingest(env, GREEN, month, rows=1_500, seed=10 + i)
    return env


def test_mart_equals_pandas_and_fact_holds_the_distinct_vendor_trips(loaded: Env):
    env = loaded
    for month in MONTHS:
        build_month(env, month)
    assert_marts_equal(expected_mart(env, real_zones=True), actual_mart(env))
    # The demo's report, through the warehouse interface: the top zones of the mart pandas computed.
    top = env.warehouse().top_pickup_zones(MONTHS, limit=5)
    assert top == expected_top_zones(expected_mart(env, real_zones=True), limit=5) and len(top) == 5
    assert env.warehouse().top_pickup_zones([date(2018, 1, 1)]) == []  # a month not built: none

    expected_ids = set()
    for spec in (YELLOW, GREEN):
        vendor = spec.csv_columns.index("VendorID")
        for month in MONTHS:
            ids = expected_from_file(spec, env.mirror_path(spec, month)).ids
            expected_ids |= {i for i, row in ids.items() if row[vendor] != ""}
    fact = [r[0] for r in env.query(f"SELECT trip_id FROM {dbt_table(env, 'fact_trips')}")]
    assert len(fact) == len(set(fact)) == len(expected_ids)
    assert set(fact) == expected_ids
    services = dict(
        env.query(f"SELECT service_type, count(*) FROM {dbt_table(env, 'fact_trips')} GROUP BY 1")
    )
    assert set(services) == {"Yellow", "Green"}


def test_monthly_builds_equal_full_refresh_and_reruns_change_nothing(loaded: Env):
    env = loaded
    for month in MONTHS:
        build_month(env, month)

    def snapshot(table):
        return sorted(env.query(f"SELECT md5(t::text) FROM {dbt_table(env, table)} t"))

    monthly = {t: snapshot(t) for t in ("fact_trips", "dm_monthly_zone_revenue")}
    build_month(env, MONTHS[1])  # re-running a month changes nothing
    assert {t: snapshot(t) for t in monthly} == monthly

    # Full refresh: every month at once, from scratch.
    import os
    import subprocess

    from taxi_platform.resources import dbt_executable

    dbt_env = {**os.environ, **env.warehouse().dbt_env()}
    done = subprocess.run(
        [
            dbt_executable(),
            "build",
            "--full-refresh",
            "--project-dir",
            str(env.settings.dbt_project_dir),
            "--profiles-dir",
            str(env.settings.dbt_project_dir),
            "--select",
            "tag:monthly",
            "--target-path",
            str(env.mirror / "dbt-target"),
        ],
        env=dbt_env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert {t: snapshot(t) for t in monthly} == monthly


def test_republished_file_updates_that_month_only(loaded: Env):
    env = loaded
    for month in MONTHS:
        build_month(env, month)
    before = actual_mart(env)
    # Yellow February is re-published with every fare raised by 1.
    path = env.mirror_path(YELLOW, MONTHS[1])
    lines = csv_lines(read_gz(path))
    fare = YELLOW.csv_columns.index("fare_amount")
    out = [lines[0]]
    for line in lines[1:]:
        fields = line.split(b",")
        fields[fare] = str(Decimal(fields[fare].decode()) + 1).encode()
        out.append(b",".join(fields))
    write_gz(path, b"".join(out))
    env.run([raw_file_key(YELLOW), staging_key(YELLOW), final_key(YELLOW)], MONTHS[1])
    build_month(env, MONTHS[1])
    after = actual_mart(env)
    assert_marts_equal(expected_mart(env, real_zones=True), after)
    key = ["revenue_zone_id", "revenue_month", "service_type"]
    merged = before.merge(after, on=key, suffixes=("_b", "_a"))
    changed = merged[merged["revenue_monthly_fare_b"] != merged["revenue_monthly_fare_a"]]
    assert set(changed["revenue_month"]) == {MONTHS[1]}
    assert set(changed["service_type"]) == {"Yellow"}


def test_unknown_payment_type_fails_its_check_with_the_count(loaded: Env):
    env = loaded
    path = env.mirror_path(GREEN, MONTHS[0])
    lines = csv_lines(read_gz(path))
    payment = GREEN.csv_columns.index("payment_type")
    broken = 0
    for i in (3, 4, 5):
        fields = lines[i].split(b",")
        if fields[GREEN.csv_columns.index("VendorID")]:
            fields[payment] = b"9"
            lines[i] = b",".join(fields)
            broken += 1
    write_gz(path, b"".join(lines))
    env.run([raw_file_key(GREEN), staging_key(GREEN), final_key(GREEN)], MONTHS[0])
    result = build_month(env, MONTHS[0], raise_on_error=False)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    name = "fact_trips_payment_type_accepted_values"
    check = evaluations[name]
    assert check.passed is False
    assert check.metadata["dagster_dbt/failed_row_count"].value == broken == 3
    # Every other check of the month passed, and the mart was still built (severity warn).
    others = [e for n, e in evaluations.items() if n != name]
    assert others and all(e.passed for e in others)
    unknown = env.query(
        f"SELECT count(*) FROM {dbt_table(env, 'fact_trips')} "
        "WHERE payment_type = 9 AND payment_type_description = 'Unknown'"
    )[0][0]
    assert unknown == 3


def test_the_public_zone_table_is_a_seed_the_ingested_zones_are_checked_against(env: Env):
    result = load_zones(env, real=False)  # the mirror's zone file: the seed's rows
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks[ZONES_MATCH].passed and checks[ZONES_MATCH].asset_key == dg.AssetKey(["dbt", "dim_zones"])
    assert all(e.passed for e in checks.values()), [n for n, e in checks.items() if not e.passed]
    assert {e.asset_key for e in result.get_asset_materialization_events()} >= {ZONE_SEED}
    seed = env.query(
        'SELECT "LocationID", "Borough", "Zone", service_zone '
        f"FROM {dbt_table(env, 'taxi_zone_lookup')} ORDER BY 1"
    )
    assert len(seed) == 265 and [r[0] for r in seed] == list(range(1, 266))
    assert seed[0] == (1, "EWR", "Newark Airport", "EWR")
    assert seed[131] == (132, "Queens", "JFK Airport", "Airports")
    assert seed[263:] == [(264, "Unknown", "NV", "N/A"), (265, "Unknown", "NA", "N/A")]  # strings, not NULL
    dim = env.query(
        f"SELECT location_id, borough, zone, service_zone FROM {dbt_table(env, 'dim_zones')} ORDER BY 1"
    )
    assert dim == seed

    # A zone file that disagrees with the public table: a renamed zone, one missing, one unknown.
    path = env.mirror / ZONES.release_tag / ZONES.file_name
    lines = path.read_bytes().split(b"\r\n")
    lines[132] = lines[132].replace(b"JFK Airport", b"Queens Zone 23")
    lines = [ln for ln in lines if not ln.startswith(b"265,")]
    lines.insert(-1, b'266,"Queens","Somewhere New","Boro Zone"')
    path.write_bytes(b"\r\n".join(lines))
    env.run([reference_file_key(ZONES), reference_table_key(ZONES)])
    result = env.run(DBT_REFERENCE)
    assert result.success  # severity warn: reported, nothing stopped
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks[ZONES_MATCH].passed is False
    assert checks[ZONES_MATCH].severity == dg.AssetCheckSeverity.WARN
    assert checks[ZONES_MATCH].metadata["dagster_dbt/failed_row_count"].value == 3
    assert all(e.passed for n, e in checks.items() if n != ZONES_MATCH)
    assert env.query(f"SELECT zone FROM {dbt_table(env, 'dim_zones')} WHERE location_id = 132") == [
        ("Queens Zone 23",)
    ]


def test_unknown_zone_is_kept_as_unknown(env: Env):
    load_zones(env, real=False)
    month = MONTHS[0]
    path = env.mirror_path(YELLOW, month)
    generate_month(YELLOW, month, path, rows=500, seed=3)
    lines = csv_lines(read_gz(path))
    fields = lines[1].split(b",")
    fields[YELLOW.csv_columns.index("PULocationID")] = b"999"
    fields[YELLOW.csv_columns.index("VendorID")] = b"1"
    lines[1] = b",".join(fields)
    write_gz(path, b"".join(lines))
    env.run([raw_file_key(YELLOW), staging_key(YELLOW), final_key(YELLOW)], month)
    ingest(env, GREEN, month, rows=300, seed=4)
    result = env.run(DBT_MONTHLY, month, raise_on_error=False)
    failed = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    assert failed == {"fact_trips_pickup_location_id_relationships"}
    rows = env.query(
        f"SELECT pickup_borough, pickup_zone FROM {dbt_table(env, 'fact_trips')} "
        "WHERE pickup_location_id = 999"
    )
    assert rows == [("Unknown", "Unknown")]
    assert_marts_equal(expected_mart(env, real_zones=False), actual_mart(env))
