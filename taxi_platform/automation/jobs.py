"""One partitioned asset job per dataset (raw file -> staging -> final table), built from the spec
table; the schedules and the release sensor launch these jobs. Every run of a job carries the tag
`taxi` (the dataset); the one-month runs the schedules and the sensor start also carry `file`
(the release file name)."""

from __future__ import annotations

from datetime import date

import dagster as dg

from taxi_platform.assets.trip_keys import final_key, raw_file_key, staging_key
from taxi_platform.datasets import DatasetSpec


def trip_job_name(spec: DatasetSpec) -> str:
    return f"{spec.table_name}_job"


def partition_key(month: date) -> str:
    return f"{month:%Y-%m-01}"


def run_tags(spec: DatasetSpec, month: date) -> dict[str, str]:
    """The labels of the course's flows: `taxi` = the colour, `file` = the release file."""
    return {"taxi": spec.name, "file": spec.file_name(month)}


def build_trip_job(spec: DatasetSpec) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        name=trip_job_name(spec),
        selection=dg.AssetSelection.assets(raw_file_key(spec), staging_key(spec), final_key(spec)),
        description=f"Load one month of {spec.name} trips: release file, staging table, final table.",
        # Per-partition tags (a PartitionedConfig) are refused for assets whose backfill policy
        # puts several partitions in one run; `file` comes with the run requests instead.
        tags={"taxi": spec.name},
    )
