"""The end-to-end tests' backfill: 3 months x 2 colours launched through the GraphQL API the UI
uses, waited for; then the daemon's dbt automation building those months; and what the mart's
partitions recorded."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

import dagster as dg

from support.e2e_stack import Stack, wait_until
from support.run_results import recorded_metadata
from taxi_platform.assets.trip_keys import final_key, raw_file_key, staging_key
from taxi_platform.datasets import DATASETS

MONTHS = (date(2019, 1, 1), date(2019, 2, 1), date(2019, 3, 1))
ROWS = 2_000
BACKFILL_TIMEOUT = 300


LAUNCH_BACKFILL = """
mutation LaunchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}"""

BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { id status isAssetBackfill partitionNames runs { id status tags { key value } } }
    ... on PythonError { message }
  }
}"""

TERMINAL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


@dataclass
class Backfill:
    id: str
    status: str
    runs: list[dict]
    seconds: float


def trip_asset_keys() -> list[dg.AssetKey]:
    return [k for spec in DATASETS.values() for k in (raw_file_key(spec), staging_key(spec), final_key(spec))]


def launch_backfill(stack: Stack) -> Backfill:
    """3 months x 2 colours, launched as the UI's "Materialize selected partitions" does."""
    started = time.monotonic()
    data = stack.graphql(
        LAUNCH_BACKFILL,
        {
            "params": {
                "assetSelection": [{"path": k.path} for k in trip_asset_keys()],
                "partitionNames": [f"{m:%Y-%m-01}" for m in MONTHS],
                "fromFailure": False,
                "title": "e2e backfill",
            }
        },
    )["launchPartitionBackfill"]
    assert data["__typename"] == "LaunchBackfillSuccess", data
    backfill_id = data["backfillId"]

    def finished():
        got = stack.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        assert got["__typename"] == "PartitionBackfill", got
        return got if got["status"] in TERMINAL else None

    got = wait_until(finished, f"backfill {backfill_id}", stack, timeout=BACKFILL_TIMEOUT, every=2.0)
    return Backfill(
        id=backfill_id, status=got["status"], runs=got["runs"], seconds=time.monotonic() - started
    )


DBT_MONTHLY = [
    dg.AssetKey(["dbt", n])
    for n in ("stg_yellow_tripdata", "stg_green_tripdata", "fact_trips", "dm_monthly_zone_revenue")
]
DBT_TIMEOUT = 240


def runs_in_progress(instance: dg.DagsterInstance) -> bool:
    return bool(
        instance.get_runs(
            dg.RunsFilter(
                statuses=[
                    dg.DagsterRunStatus.QUEUED,
                    dg.DagsterRunStatus.NOT_STARTED,
                    dg.DagsterRunStatus.STARTING,
                    dg.DagsterRunStatus.STARTED,
                ]
            )
        )
    )


def wait_for_dbt_months(stack: Stack) -> float:
    """Waits until the daemon's dbt automation built every backfilled month of the monthly dbt
    models (no one asks for it) and nothing runs any more; the seconds it took after the backfill."""
    months = {f"{m:%Y-%m-01}" for m in MONTHS}
    started = time.monotonic()
    with stack.instance() as instance:
        while True:
            done = {k: instance.get_materialized_partitions(k) for k in DBT_MONTHLY}
            if all(v == months for v in done.values()) and not runs_in_progress(instance):
                return time.monotonic() - started
            stack.assert_alive()
            assert time.monotonic() < started + DBT_TIMEOUT, (
                f"dbt partitions so far: {done}\n{stack.log_tail()}"
            )
            time.sleep(3)


def mart_trips_per_partition(stack: Stack) -> dict[str, int]:
    mart = dg.AssetKey(["dbt", "dm_monthly_zone_revenue"])
    latest: dict[str, tuple[float, int]] = {}
    events: list[tuple[str, float, Mapping[str, dg.MetadataValue]]] = []
    with stack.instance() as instance:
        records = list(
            instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=mart), limit=100).records
        )
        records += instance.fetch_observations(dg.AssetRecordsFilter(asset_key=mart), limit=100).records
        for r in records:
            assert r.partition_key is not None, r
            events.append((r.partition_key, r.timestamp, recorded_metadata(r)))
    for partition, timestamp, metadata in events:
        if "trips" in metadata and timestamp >= latest.get(partition, (0, 0))[0]:
            trips = metadata["trips"].value
            assert isinstance(trips, int)
            latest[partition] = (timestamp, trips)
    return {partition: trips for partition, (_, trips) in latest.items()}
