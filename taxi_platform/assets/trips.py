"""Trip assets for every dataset in the spec table: raw file -> per-month staging -> final table.

    lake/<colour>_tripdata_file          the month's release file, streamed and verified into the lake
    staging/<colour>_tripdata_staging    the month's typed rows with unique_row_id and filename
    warehouse/<colour>_tripdata          distinct trips, the month replaced atomically

A month that answers 404 and lies after the last month known to be published is *skipped*, not
failed: the raw asset materializes nothing, the downstream steps are skipped, and the log says
the month is not published yet. A 404 inside the published range fails the run.
"""


from typing import Iterator

import dagster as dg

from taxi_platform.checks import evaluate_trip_checks, trip_check_specs
from taxi_platform.datasets import DatasetSpec
from taxi_platform.lake.base import LAKE_KEY_METADATA, LakeFile, VerifiedDownload, lake_key
from taxi_platform.partitions import month_of, monthly_partitions
from taxi_platform.redact import mask_url
from taxi_platform.source.download import ReleaseFileNotFound
from taxi_platform.source.resource import ReleaseSource
from taxi_platform.source.verify import InvalidReleaseFile
from taxi_platform.warehouse.base import TripWarehouse, cost_metadata

LAKE_IO_MANAGER_KEY = "lake_io_manager"
# Concurrency pool of every step that writes the warehouse; its limit is set in dagster.yaml.
WAREHOUSE_POOL = "taxi_warehouse"
# The downloader retries HTTP errors itself (seconds apart); this step-level policy covers longer
# outages (it gave up) and anything else transient: 30 s, 60 s, 120 s later. A 404 inside the
# published range or an invalid file is final (Failure(allow_retries=False)).
DOWNLOAD_RETRY_POLICY = dg.RetryPolicy(max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL,
                                       jitter=dg.Jitter.PLUS_MINUS)


def raw_file_key(spec: DatasetSpec) -> dg.AssetKey:
    return dg.AssetKey(["lake", f"{spec.table_name}_file"])


def staging_key(spec: DatasetSpec) -> dg.AssetKey:
    return dg.AssetKey(["staging", f"{spec.table_name}_staging"])


def final_key(spec: DatasetSpec) -> dg.AssetKey:
    return dg.AssetKey(["warehouse", spec.table_name])


def build_trip_assets(spec: DatasetSpec, *, warehouse_kind: str, lake_kind: str,
                      min_in_month_share: float) -> list[dg.AssetsDefinition]:
    """The three assets of one dataset; `*_kind` only label the UI (e.g. postgres / bigquery)."""

    @dg.asset(
        key=raw_file_key(spec),
        description=f"{spec.description} The month's release file, streamed and verified into the lake.",
        group_name=spec.name,
        kinds={"csv", lake_kind},
        partitions_def=monthly_partitions,
        io_manager_key=LAKE_IO_MANAGER_KEY,
        output_required=False,
        retry_policy=DOWNLOAD_RETRY_POLICY,
        metadata={"dataset": spec.name,
                  LAKE_KEY_METADATA: lake_key(spec.release_tag, spec.file_name_template)},
    )
    def raw_file(context: dg.AssetExecutionContext, source: ReleaseSource) -> Iterator[dg.Output]:
        month = month_of(context.partition_key)
        try:
            result = source.fetch(spec, month, context.run.run_id, context.log.info)
        except ReleaseFileNotFound as exc:
            if month > spec.last_published:
                context.log.warning(
                    f"{spec.name} {month:%Y-%m} is not published yet: {mask_url(exc.url)} answered "
                    f"404, so there is nothing to load (the latest month known to be published is "
                    f"{spec.last_published:%Y-%m}); the month loads once its file appears."
                )
                return
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        except InvalidReleaseFile as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        context.log.info(f"{spec.file_name(month)}: {result.bytes:,} bytes, {result.rows:,} rows, verified")
        yield dg.Output(
            VerifiedDownload(lake_key=lake_key(spec.release_tag, spec.file_name(month)),
                             local_path=result.path),
            metadata={
                "source_url": dg.MetadataValue.url(mask_url(result.url)),
                "bytes": dg.MetadataValue.int(result.bytes),
                "sha256": result.sha256,
                "rows": dg.MetadataValue.int(result.rows),
                "uncompressed_bytes": dg.MetadataValue.int(result.decompressed_bytes),
                "line_ending": "CRLF" if result.line_ending == "\r\n" else "LF",
                "download_attempts": result.attempts,
                "duration_seconds": round(result.seconds, 2),
            },
        )

    @dg.asset(
        key=staging_key(spec),
        description=f"The month's {spec.name} rows, typed, with unique_row_id and filename computed in the load.",
        group_name=spec.name,
        kinds={warehouse_kind},
        partitions_def=monthly_partitions,
        ins={"raw_file": dg.AssetIn(key=raw_file_key(spec))},
        pool=WAREHOUSE_POOL,
    )
    def staging(context: dg.AssetExecutionContext, raw_file: LakeFile,
                warehouse: TripWarehouse) -> dg.MaterializeResult:
        month = month_of(context.partition_key)
        result = warehouse.load_staging(spec, month, raw_file, context.log.info)
        return dg.MaterializeResult(metadata={
            "table": result.table,
            "dagster/row_count": dg.MetadataValue.int(result.rows),
            "source_file": raw_file.uri,
            "duration_seconds": round(result.seconds, 2),
            **cost_metadata(result),
        })

    @dg.asset(
        key=final_key(spec),
        description=f"Distinct {spec.name} trips, one partition per month, each replaced atomically.",
        group_name=spec.name,
        kinds={warehouse_kind},
        partitions_def=monthly_partitions,
        deps=[staging_key(spec)],
        pool=WAREHOUSE_POOL,
        check_specs=trip_check_specs(final_key(spec), min_in_month_share),
    )
    def final(context: dg.AssetExecutionContext, warehouse: TripWarehouse) -> dg.MaterializeResult:
        month = month_of(context.partition_key)
        result = warehouse.replace_month(spec, month, context.log.info)
        return dg.MaterializeResult(metadata={
            "table": result.table,
            "filename": spec.file_name(month),
            "dagster/row_count": dg.MetadataValue.int(result.final_rows),
            "staged_rows": dg.MetadataValue.int(result.staged_rows),
            "duplicates_dropped": dg.MetadataValue.int(result.duplicates_dropped),
            "previous_rows": dg.MetadataValue.int(result.previous_rows),
            "duration_seconds": round(result.seconds, 2),
            **cost_metadata(result),
        }, check_results=evaluate_trip_checks(spec, month, warehouse, min_in_month_share))

    return [raw_file, staging, final]
