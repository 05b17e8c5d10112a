"""What the event log says about a dataset's months: whether the raw asset found a month not
published yet, the file a month's staging held, the counts of its last load."""

from datetime import date

import dagster as dg

from taxi_platform.assets.checks import RowCounts
from taxi_platform.assets.metadata import STAGED_SHA256
from taxi_platform.assets.trip_keys import final_key, raw_file_key, staging_key
from taxi_platform.datasets import DatasetSpec

# Per-partition metadata of a month skipped because its file is not published yet.
NOT_PUBLISHED = "not_published"


def not_published_metadata(spec: DatasetSpec, month: date) -> dict:
    return {
        NOT_PUBLISHED: True,
        "note": f"{spec.name} {month:%Y-%m} was not published yet; nothing of it was loaded",
    }


def not_published(
    context: dg.AssetExecutionContext, spec: DatasetSpec, partition_key: str, month: date
) -> bool:
    """Whether the month is not published yet, as the raw asset decided it: its file answered 404
    after the last month known to be published, and the raw asset's latest record of the month says
    so. The one test of it: staging and the final table skip exactly the months the download did."""
    if month <= spec.last_published:  # a known month is never skipped: its 404 fails the download
        return False
    return NOT_PUBLISHED in latest_metadata(context, raw_file_key(spec), partition_key)


def latest_metadata(context: dg.AssetExecutionContext, key: dg.AssetKey, partition_key: str) -> dict:
    """The metadata of the asset's latest materialization of the partition ({} if none)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition_key]), limit=1
    ).records
    return dict(records[0].asset_materialization.metadata) if records else {}


def files_staged_by_this_run(context: dg.AssetExecutionContext, spec: DatasetSpec) -> dict[str, str]:
    """Partition key -> the sha256 of the file this run (or the run it re-executes) staged for the
    month; a month it staged nothing for is absent (the final asset alone attaches what is staged).
    One read of the event log per run, whatever the number of months."""
    staged: dict[str, str | None] = {}
    runs = [context.run.run_id] + [r for r in (context.run.parent_run_id, context.run.root_run_id) if r]
    for run_id in dict.fromkeys(runs):
        found: dict[str, str | None] = {}
        records = context.instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, ascending=False
        ).records
        for record in records:  # newest first: a month's latest staging in that run
            materialization = record.asset_materialization
            if (
                materialization is not None
                and materialization.asset_key == staging_key(spec)
                and materialization.partition is not None
                and materialization.partition not in found
            ):
                sha = materialization.metadata.get(STAGED_SHA256)
                found[materialization.partition] = None if sha is None else str(sha.value)
        for partition_key, sha in found.items():  # this run's own staging first, then its parents'
            staged.setdefault(partition_key, sha)
    return {k: v for k, v in staged.items() if v is not None}


def file_rows(context: dg.AssetExecutionContext, spec: DatasetSpec, partition_key: str) -> int | None:
    """The month's file's own row count, as its download's inspection recorded it (the Parquet
    footer, or the CSV data lines); None when no download of it is recorded."""
    rows = latest_metadata(context, raw_file_key(spec), partition_key).get("rows")
    return None if rows is None else int(rows.value)


def recorded_counts(
    context: dg.AssetExecutionContext, spec: DatasetSpec, partition_key: str
) -> RowCounts | None:
    """The reconciliation's figures of the month's last load, from the event log (a check run alone)."""
    final = latest_metadata(context, final_key(spec), partition_key)
    if "staged_rows" not in final or "duplicates_dropped" not in final:
        return None
    return RowCounts(
        file_rows=file_rows(context, spec, partition_key),
        rows_read=int(final["staged_rows"].value),
        duplicates_dropped=int(final["duplicates_dropped"].value),
    )
