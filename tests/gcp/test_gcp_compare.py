"""Both targets configured (TAXI_COMPARE_TARGET): each month's `agrees_with_other_target` check
compares the row count and the set of ids (their summed first 60 bits) with the other warehouse;
it passes for the same file loaded on both, and fails naming both counts, other ids, or a month the
other target has not loaded."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import dagster as dg
import pytest
from support.gcp_env import GcpEnv

from taxi_platform.assets.trips import build_trip_assets
from taxi_platform.datasets import YELLOW
from taxi_platform.resources import build_resources
from taxi_platform.sample.generator import generate_month
from taxi_platform.settings import SettingsError

JAN, FEB = date(2019, 1, 1), date(2019, 2, 1)


def load_on_postgres_comparing(env, gcp_env: GcpEnv, month: date) -> dict:
    """The month on PostgreSQL, the BigQuery warehouse as the other target: the check's result."""
    settings = replace(env.settings, compare_target="gcp", gcp=gcp_env.gcp)
    result = dg.materialize(
        build_trip_assets(
            YELLOW,
            warehouse_kind="postgres",
            lake_kind="file",
            min_in_month_share=0.95,
            other_target="bigquery",
        ),
        partition_key=f"{month:%Y-%m-01}",
        instance=env.instance,
        resources=build_resources(settings),
    )
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "agrees_with_other_target"]
    return {
        "passed": check.passed,
        "description": check.description,
        **{k: v.value for k, v in check.metadata.items()},
    }


def test_the_same_file_on_both_targets_agrees_and_a_difference_is_named(env, gcp_env: GcpEnv) -> None:
    for mirror in (env.mirror_path(YELLOW, JAN), gcp_env.mirror_path(YELLOW, JAN)):
        generated = generate_month(YELLOW, JAN, mirror, rows=3_000, seed=21)
    trips = generated.rows - generated.duplicate_rows  # the file's distinct trips
    gcp_env.materialize(YELLOW, JAN, raise_on_error=True)
    agreed = load_on_postgres_comparing(env, gcp_env, JAN)
    assert agreed["passed"] is True
    assert agreed["rows"] == agreed["other_rows"] == trips
    assert agreed["id_sum"] == agreed["other_id_sum"] != "0"
    assert agreed["description"] == f"2019-01: the same {trips:,} trips on both targets"

    # One trip fewer on BigQuery: both counts named.
    final = gcp_env.final(YELLOW)
    gcp_env.query(f"DELETE FROM {final} WHERE unique_row_id = (SELECT MIN(unique_row_id) FROM {final})")
    fewer = load_on_postgres_comparing(env, gcp_env, JAN)
    assert fewer["passed"] is False and fewer["other_rows"] == trips - 1
    assert fewer["description"] == (f"2019-01: {trips:,} trips here, {trips - 1:,} on bigquery")

    # The same count, another id: the id sums differ.
    gcp_env.query(
        f"INSERT INTO {final} (unique_row_id, filename, VendorID) "
        "VALUES ('00000000000000000000000000000000', 'yellow_tripdata_2019-01.csv.gz', 1)"
    )
    other_ids = load_on_postgres_comparing(env, gcp_env, JAN)
    assert other_ids["passed"] is False and other_ids["rows"] == other_ids["other_rows"]
    assert other_ids["description"].endswith("on bigquery, and other ids")

    # A month BigQuery has not loaded.
    generate_month(YELLOW, FEB, env.mirror_path(YELLOW, FEB), rows=1_000, seed=22)
    missing = load_on_postgres_comparing(env, gcp_env, FEB)
    assert missing["passed"] is False
    assert missing["description"] == "2019-02 is not loaded on bigquery yet: nothing to compare"


def test_the_compare_target_is_validated(env) -> None:
    with pytest.raises(SettingsError, match="TAXI_COMPARE_TARGET='local' is TAXI_TARGET itself"):
        replace(env.settings, compare_target="local")
    with pytest.raises(SettingsError, match="TAXI_COMPARE_TARGET=gcp needs TAXI_GCP_PROJECT"):
        replace(env.settings, compare_target="gcp")
    with pytest.raises(SettingsError, match="TAXI_COMPARE_TARGET='azure': choose one of local, gcp"):
        replace(env.settings, compare_target="azure")
