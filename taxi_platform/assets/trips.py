"""Trip assets for every dataset in the spec table: raw file -> per-month staging -> final table.

    lake/<colour>_tripdata_file          the month's release file, streamed and verified into the lake
                                         (`raw_files.py`)
    staging/<colour>_tripdata_staging    the month's typed rows with unique_row_id and filename
                                         (`staging.py`)
    warehouse/<colour>_tripdata          distinct trips, the month replaced atomically, then checked
                                         (`final_tables.py`)

A run covers one month or a range of months (`BackfillPolicy.single_run()`: a UI backfill or
`dagster asset materialize --partition-range` is one run per range). Each asset works through its
months in order, each month exactly as a one-month run would (its own download, staging table,
atomic replace and checks), and records each month's materialization with that month's metadata
(`partitioned_runs.py`).

The partitions are the source's months (partitions.py: 2019-01..2021-07 for the course's CSV
backup). A month that answers 404 and lies after the dataset's last month known to be published
(`last_published`, which may end before the source's last month) is *skipped*, not failed: the
log says the month is not published yet and nothing of it is loaded. The raw asset decides it and
records it; staging and the final table read its record (`trip_history.not_published`). If every
month of the run is skipped, the raw asset materializes nothing and the downstream steps are
skipped. A 404 inside the published range fails the run.

A month that fails stops its asset there: the months the asset finished before it stay done and
are recorded, the error names the month and file, and the downstream assets do not run.
"""

import dagster as dg

from taxi_platform.assets.final_tables import build_final_asset
from taxi_platform.assets.raw_files import build_raw_file_asset
from taxi_platform.assets.staging import build_staging_asset
from taxi_platform.datasets import DatasetSpec
from taxi_platform.partitions import dataset_partitions


def build_trip_assets(
    spec: DatasetSpec,
    *,
    warehouse_kind: str,
    lake_kind: str,
    min_in_month_share: float,
    other_target: str | None = None,
) -> list[dg.AssetsDefinition]:
    """The three assets of one dataset; `*_kind` only label the UI (e.g. postgres / bigquery).
    `other_target`: the kind of a second warehouse (resource `other_warehouse`) each month must
    agree with, when both targets are configured (TAXI_COMPARE_TARGET)."""
    partitions = dataset_partitions(spec)
    return [
        build_raw_file_asset(spec, partitions, lake_kind=lake_kind),
        build_staging_asset(spec, partitions, warehouse_kind=warehouse_kind),
        build_final_asset(
            spec,
            partitions,
            warehouse_kind=warehouse_kind,
            min_in_month_share=min_in_month_share,
            other_target=other_target,
        ),
    ]
