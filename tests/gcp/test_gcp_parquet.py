"""TLC Parquet months on the GCP target (emulators): a load job per month, the same ids and
counts as PostgreSQL for the real green months of every era and the real 2020-04 rows of all four
datasets, and a month through the assets and the GCS lake (a bad value refused before BigQuery
changes: tests/test_failures.py). Expectations come from pyarrow and the reference id
(support/parquet_files.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support.gcp_env import GcpEnv
from support.parquet_files import (
    REAL_PARQUET,
    expected_trips,
    lake_file,
    load,
    parquet_spec,
    rows_as_parquet,
)
from support.run_results import materialization_metadata

from taxi_platform.assets.trip_keys import final_key, raw_file_key, staging_key
from taxi_platform.eras import era_of_month
from taxi_platform.source_specs import TLC_PARQUET, source_datasets

APRIL = date(2020, 4, 1)
# One real month of each green era: 2014 (to 2022), 2023 (to 2024), 2025 (cbd_congestion_fee).
REAL_MONTHS = [
    "green_tripdata_2020-12.parquet",
    "green_tripdata_2023-04.parquet",
    "green_tripdata_2025-02.parquet",
]


def month_of(name: str) -> date:
    return date(int(name[-15:-11]), int(name[-10:-8]), 1)


def bq_load(gcp_env: GcpEnv, spec, month: date, path: Path):
    wh = gcp_env.warehouse()
    staged = wh.load_staging(spec, month, lake_file(path), lambda _m: None, run_id="t")
    replaced = wh.replace_month(spec, month, lambda _m: None, run_id="t", staged_sha256=staged.sha256)
    return staged, replaced


def pg_ids(env, spec, month: date) -> set[str]:
    rows = env.query(
        f"SELECT unique_row_id FROM {env.final(spec)} WHERE filename = %s", (spec.file_name(month),)
    )
    return {r for (r,) in rows}


@pytest.mark.parametrize("name", REAL_MONTHS, ids=lambda n: n[15:22])
def test_real_green_month_same_trips_on_both_targets(env, gcp_env: GcpEnv, name: str) -> None:
    spec, month, path = parquet_spec("green"), month_of(name), REAL_PARQUET / name
    ids, rows, revenue = expected_trips(spec, path, "total_amount")

    staged, replaced = bq_load(gcp_env, spec, month, path)
    load(env, spec, month, path)

    assert staged.rows_read == rows and staged.rows == len(ids)
    assert replaced.staged_rows == rows and replaced.final_rows == len(ids)
    assert replaced.duplicates_dropped == rows - len(ids)
    assert staged.schema_era == era_of_month(spec.eras, month).name and staged.schema_fingerprint
    bq = set(gcp_env.ids(spec, month))
    assert bq == ids == pg_ids(env, spec, month)
    (total,) = gcp_env.query(f"SELECT SUM(total_amount) FROM {gcp_env.final(spec)}")[0]
    assert Decimal(total) == revenue
    # Timestamps arrive as the file's wall times (UTC), as from the CSV path.
    first = pq.read_table(path, columns=["lpep_pickup_datetime"]).column(0).to_pylist()
    (low, high) = gcp_env.query(
        f"SELECT FORMAT_TIMESTAMP('%F %T', MIN(lpep_pickup_datetime)), "
        f"FORMAT_TIMESTAMP('%F %T', MAX(lpep_pickup_datetime)) FROM {gcp_env.final(spec)}"
    )[0]
    assert (low, high) == (f"{min(first):%F %T}", f"{max(first):%F %T}")
    # No staging leftovers but the month's own staging table; no scratch file left behind.
    assert gcp_env.table_exists(gcp_env.settings.staging_schema, f"green_tripdata_{month:%Y_%m}")


@pytest.mark.parametrize("name", ["yellow", "green", "fhv", "fhvhv"])
def test_real_april_rows_of_every_dataset_same_ids_as_postgres(
    env, gcp_env: GcpEnv, tmp_path: Path, name
) -> None:
    spec = parquet_spec(name)
    path = rows_as_parquet(spec, tmp_path)
    ids, rows, _ = expected_trips(spec, path, None)
    bq_load(gcp_env, spec, APRIL, path)
    load(env, spec, APRIL, path)
    assert rows == 1000
    assert set(gcp_env.ids(spec, APRIL)) == ids == pg_ids(env, spec, APRIL)
    (count,) = gcp_env.query(f"SELECT COUNT(*) FROM {gcp_env.final(spec)}")[0]
    assert count == len(ids)


def test_a_month_through_the_assets_and_the_gcs_lake(gcp_env: GcpEnv, tmp_path: Path) -> None:
    """The TLC source (its layout served from a folder) into the GCS lake, then BigQuery: the
    raw file's format and the staging metadata, and the reconciliation check."""
    import dagster as dg

    from taxi_platform.assets.trips import build_trip_assets
    from taxi_platform.resources import build_resources
    from taxi_platform.sample.parquet_generator import write_tlc_tree

    month = date(2024, 3, 1)
    spec = source_datasets(TLC_PARQUET, today=date(2024, 6, 1))["yellow"]
    (generated,) = write_tlc_tree(tmp_path / "tlc", [spec], [month], rows=4_000, seed=5)
    settings = replace(gcp_env.settings, source="tlc", tlc_url=(tmp_path / "tlc").as_uri())
    result = dg.materialize(
        build_trip_assets(spec, warehouse_kind="bigquery", lake_kind="gcs", min_in_month_share=0.5),
        partition_key="2024-03-01",
        instance=gcp_env.instance,
        resources=build_resources(settings),
    )
    raw = materialization_metadata(result, raw_file_key(spec))
    staging = materialization_metadata(result, staging_key(spec))
    final = materialization_metadata(result, final_key(spec))
    assert raw["lake_uri"].startswith(f"gs://{gcp_env.gcp.gcs_bucket}/") and raw["lake_uri"].endswith(
        "yellow_tripdata_2024-03.parquet"
    )
    assert staging["schema_era"] == generated.era and staging["rows_read"] == generated.rows
    assert final["dagster/row_count"] == generated.distinct_rows
    assert final["duplicates_dropped"] == generated.duplicate_rows
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["rows_match_file"] is True and checks["unique_row_id_is_unique"] is True
    assert len(gcp_env.ids(spec, month)) == generated.distinct_rows
