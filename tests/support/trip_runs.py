"""What both test platforms (pg_env, gcp_env) run: a dataset's trip assets for the settings' target,
and the tags of a one-run range of months."""

from __future__ import annotations

from datetime import date

import dagster as dg

from taxi_platform.assets.trips import build_trip_assets
from taxi_platform.datasets import DatasetSpec
from taxi_platform.settings import Settings


def trip_assets(settings: Settings, spec: DatasetSpec) -> list[dg.AssetsDefinition]:
    return build_trip_assets(
        spec,
        warehouse_kind=settings.target.warehouse_kind,
        lake_kind=settings.target.lake_kind,
        min_in_month_share=settings.min_in_month_share,
    )


def range_tags(first: date, last: date) -> dict[str, str]:
    """The tags a range backfill or the CLI's `--partition-range` give a run of first..last."""
    return {
        "dagster/asset_partition_range_start": f"{first:%Y-%m-01}",
        "dagster/asset_partition_range_end": f"{last:%Y-%m-01}",
    }
