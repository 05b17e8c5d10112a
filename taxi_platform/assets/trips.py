"""Trip assets for every dataset in the spec table: raw file -> per-month staging -> final table.

    lake/<colour>_tripdata_file          the month's release file, streamed and verified into the lake
    staging/<colour>_tripdata_staging    the month's typed rows with unique_row_id and filename
    warehouse/<colour>_tripdata          distinct trips, the month replaced atomically

A run covers one month or a range of months (`BackfillPolicy.single_run()`: a UI backfill or
`dagster asset materialize --partition-range` is one run per range). Each asset works through its
months in order, each month exactly as a one-month run would (its own download, staging table,
atomic replace and checks), and records each month's materialization with that month's metadata.

The partitions are the source's months (partitions.py: 2019-01..2021-07 for the course's CSV
backup). A month that answers 404 and lies after the dataset's last month known to be published
(`last_published`, which may end before the source's last month) is *skipped*, not failed: the
log says the month is not published yet and nothing of it is loaded. If every month of the run is
skipped, the raw asset materializes nothing and the downstream steps are skipped. A 404
inside the published range fails the run.

A month that fails stops its asset there: the months the asset finished before it stay done and
are recorded, the error names the month and file, and the downstream assets do not run.
"""

import warnings
from collections.abc import Callable, Iterator, Mapping
from datetime import date

import dagster as dg

from taxi_platform.checks import (
    RowCounts,
    agreement,
    blocking_failures,
    check_evaluation,
    evaluate_trip_checks,
    trip_check_specs,
)
from taxi_platform.datasets import DatasetSpec
from taxi_platform.lake.base import LAKE_KEY_METADATA, LakeFile, VerifiedDownload, lake_key
from taxi_platform.partitions import dataset_partitions, month_of
from taxi_platform.redact import mask_url
from taxi_platform.source.download import DownloadResult, PermanentDownloadError, ReleaseFileNotFound
from taxi_platform.source.resource import ReleaseSource
from taxi_platform.source.verify import InvalidReleaseFile
from taxi_platform.warehouse.base import TripWarehouse, cost_metadata

LAKE_IO_MANAGER_KEY = "lake_io_manager"
# Concurrency pool of every step that writes the warehouse; its limit is set in dagster.yaml.
WAREHOUSE_POOL = "taxi_warehouse"
# The downloader retries HTTP errors itself (seconds apart); this step-level policy covers longer
# outages (it gave up) and anything else transient: 30 s, 60 s, 120 s later. A 404 inside the
# published range, an invalid file and a permanent error (HTTP 4xx, a redirect loop, a full disk,
# the download deadline) are final (Failure(allow_retries=False)).
DOWNLOAD_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
# A range is one run (UI backfills and `dagster asset materialize --partition-range`, which
# Dagster 1.13 allows only for single-run assets). The parameter is beta in 1.13: its warning
# would be printed at every load of the code location, so it is silenced, for it alone.
RANGE_POLICY = dg.BackfillPolicy.single_run()
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
# Per-partition metadata of a month a range run skipped because its file is not published yet.
NOT_PUBLISHED = "not_published"
# Tags of the runs tlc_release_sensor requests: "new" or "republished", and the file's version.
RELEASE_CHANGE_TAG = "taxi/release_change"
FILE_VERSION_TAG = "taxi/file_version"
# The sha256 of the file whose rows a staging / final partition holds.
STAGED_SHA256 = "source_sha256"
# Dagster's standard metadata keys: the UI shows the table's name and its columns.
TABLE_NAME = "dagster/table_name"
COLUMN_SCHEMA = "dagster/column_schema"


def raw_file_key(spec: DatasetSpec) -> dg.AssetKey:
    return dg.AssetKey(["lake", f"{spec.table_name}_file"])


def staging_key(spec: DatasetSpec) -> dg.AssetKey:
    return dg.AssetKey(["staging", f"{spec.table_name}_staging"])


def final_key(spec: DatasetSpec) -> dg.AssetKey:
    return dg.AssetKey(["warehouse", spec.table_name])


def run_months(context: dg.AssetExecutionContext) -> list[tuple[str, date]]:
    """(partition key, month) of every month the run covers, oldest first. A range reaching past
    the partitions (a run launched with hand-written range tags) fails at once, never retried."""
    key_range = context.partition_key_range
    partitions = context.assets_def.partitions_def
    outside = [k for k in (key_range.start, key_range.end) if not partitions.has_partition_key(k)]
    if outside:
        first, last = partitions.get_first_partition_key(), partitions.get_last_partition_key()
        raise dg.Failure(
            description=f"the run's months {key_range.start} .. {key_range.end} are not all partitions: "
            f"{', '.join(outside)} is not (the months are {first[:7]}..{(last or '?')[:7]})",
            allow_retries=False,
        )
    return sorted(((key, month_of(key)) for key in context.partition_keys), key=lambda km: km[1])


def month_error(spec: DatasetSpec, month: date, error: object) -> dg.Failure:
    """A range run's failed month, named with its file (a one-month run keeps the plain error)."""
    return dg.Failure(
        description=f"{spec.name} {month:%Y-%m} ({spec.file_name(month)}): {error}", allow_retries=False
    )


def record_months_done(key: dg.AssetKey, done: Mapping[str, dict]) -> Iterator[dg.AssetMaterialization]:
    """Before a range run's step fails: one materialization per month it finished, so the event
    log matches the tables (Dagster records the step's partitions only when the step succeeds)."""
    for partition_key, metadata in done.items():
        yield dg.AssetMaterialization(asset_key=key, partition=partition_key, metadata=metadata)


def not_published_metadata(spec: DatasetSpec, month: date) -> dict:
    return {
        NOT_PUBLISHED: True,
        "note": f"{spec.name} {month:%Y-%m} was not published yet; nothing of it was loaded",
    }


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

    def fetch_month(
        context: dg.AssetExecutionContext, source: ReleaseSource, month: date
    ) -> DownloadResult | None:
        """The month's verified download, or None when the month is not published yet."""
        try:
            result = source.fetch(spec, month, context.run.run_id, context.log.info)
        except ReleaseFileNotFound as exc:
            if month > spec.last_published:
                context.log.warning(
                    f"{spec.name} {month:%Y-%m} is not published yet: {mask_url(exc.url)} answered "
                    f"{exc.status}, so there is nothing to load (the latest month known to be "
                    f"published is {spec.last_published:%Y-%m}); the month loads once its file appears."
                )
                return None
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        except (InvalidReleaseFile, PermanentDownloadError) as exc:
            # Retrying cannot help: fail at once (the step's retry policy is for outages).
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        context.log.info(f"{spec.file_name(month)}: {result.bytes:,} bytes, {result.rows:,} rows, verified")
        return result

    @dg.asset(
        key=raw_file_key(spec),
        description=f"{spec.description} The month's release file, streamed and verified into the lake.",
        group_name=spec.name,
        kinds={spec.file_extension.split(".")[0], lake_kind},
        partitions_def=partitions,
        backfill_policy=RANGE_POLICY,
        io_manager_key=LAKE_IO_MANAGER_KEY,
        output_required=False,
        retry_policy=DOWNLOAD_RETRY_POLICY,
        metadata={
            "dataset": spec.name,
            LAKE_KEY_METADATA: lake_key(spec.release_tag, spec.file_name_template),
        },
    )
    def raw_file(context: dg.AssetExecutionContext, source: ReleaseSource) -> Iterator[dg.Output]:
        months = run_months(context)
        downloads: dict[str, VerifiedDownload] = {}
        try:
            for partition_key, month in months:
                try:
                    result = fetch_month(context, source, month)
                except dg.Failure as exc:
                    if len(months) == 1:
                        raise
                    raise month_error(spec, month, exc.description) from exc
                if result is None:
                    context.add_asset_metadata(
                        not_published_metadata(spec, month), partition_key=partition_key
                    )
                    continue
                if identical_reupload(context, spec, partition_key, result):
                    continue
                key = lake_key(spec.release_tag, spec.file_name(month))
                downloads[partition_key] = VerifiedDownload(lake_key=key, local_path=result.path)
                context.add_asset_metadata(
                    {**download_metadata(result), "lake_key": key}, partition_key=partition_key
                )
        except BaseException:
            for download in downloads.values():  # verified files that will not enter the lake
                download.local_path.unlink(missing_ok=True)
            raise
        if downloads:
            # The output covers the run's months; the IO manager stores the downloaded ones.
            yield dg.Output(downloads)

    @dg.asset(
        key=staging_key(spec),
        description=(
            f"The month's {spec.name} rows, typed, with unique_row_id and filename computed in the load."
        ),
        group_name=spec.name,
        kinds={warehouse_kind},
        partitions_def=partitions,
        backfill_policy=RANGE_POLICY,
        ins={"raw_file": dg.AssetIn(key=raw_file_key(spec))},
        pool=WAREHOUSE_POOL,
        metadata={COLUMN_SCHEMA: trip_table_schema(spec)},
    )
    def staging(
        context: dg.AssetExecutionContext, raw_file: dict[str, LakeFile], warehouse: TripWarehouse
    ) -> Iterator[dg.AssetMaterialization | dg.MaterializeResult]:
        def stage(partition_key: str, month: date) -> dict | None:
            lake_file = raw_file.get(partition_key)
            if lake_file is None:
                return missing_from_lake(context, spec, partition_key, month)
            result = warehouse.load_staging(
                spec, month, lake_file, context.log.info, run_id=context.run.run_id
            )
            read = (
                {}
                if result.rows_read is None
                else {
                    "rows_read": dg.MetadataValue.int(result.rows_read),
                    "duplicates_dropped": dg.MetadataValue.int(result.rows_read - result.rows),
                }
            )
            if result.sha256:
                read[STAGED_SHA256] = result.sha256
            if result.schema_era:  # Parquet: the era the file matched, and its schema's fingerprint
                read["schema_era"] = dg.MetadataValue.text(result.schema_era)
                read["schema_fingerprint"] = dg.MetadataValue.text(result.schema_fingerprint or "")
            return {
                TABLE_NAME: result.table,
                "dagster/row_count": dg.MetadataValue.int(result.rows),
                **read,
                "source_file": lake_file.uri,
                "duration_seconds": round(result.seconds, 2),
                **cost_metadata(result),
            }

        yield from month_by_month(context, spec, staging_key(spec), stage)
        yield dg.MaterializeResult()

    # A multi-asset only to make its checks' outputs optional (`can_subset`): a range run reports
    # each month's check results under that month's partition (`log_event`), not one per step.
    @dg.multi_asset(
        name=f"warehouse__{spec.table_name}",
        specs=[
            dg.AssetSpec(
                final_key(spec),
                description=f"Distinct {spec.name} trips, one partition per month, each replaced atomically.",
                group_name=spec.name,
                kinds={warehouse_kind},
                deps=[staging_key(spec)],
                metadata={COLUMN_SCHEMA: trip_table_schema(spec)},
            )
        ],
        partitions_def=partitions,
        backfill_policy=RANGE_POLICY,
        pool=WAREHOUSE_POOL,
        check_specs=trip_check_specs(final_key(spec), min_in_month_share, partitions, other_target),
        can_subset=True,
        required_resource_keys={"warehouse", *(["other_warehouse"] if other_target else [])},
    )
    def final(
        context: dg.AssetExecutionContext,
    ) -> Iterator[dg.AssetMaterialization | dg.MaterializeResult | dg.AssetCheckResult]:
        warehouse: TripWarehouse = context.resources.warehouse

        def month_checks(month: date, **profiles) -> list[dg.AssetCheckResult]:
            results = evaluate_trip_checks(spec, month, warehouse, min_in_month_share, **profiles)
            if other_target:
                other: TripWarehouse = context.resources.other_warehouse
                ours, theirs = warehouse.id_summary(spec, month), other.id_summary(spec, month)
                results.append(agreement(month, ours, theirs, other_target))
            return results

        if not (context.has_partition_key or context.has_partition_key_range):
            raise dg.Failure(
                description=f"{final_key(spec).to_user_string()} and its checks work on "
                "months: run them for a partition or a range of partitions",
                allow_retries=False,
            )
        one_month = len(run_months(context)) == 1
        selected = context.selected_asset_check_keys
        checks: dict[str, list[dg.AssetCheckResult]] = {}
        done: dict[str, dict] = {}
        staged_files: dict[str, str] = {}  # the files this run staged, by month

        def file_checks(partition_key: str, results: list[dg.AssetCheckResult]) -> None:
            """A range run files each month's results under its partition as soon as they exist
            (a later month's failure must not lose them); a one-month run yields them at the end."""
            checks[partition_key] = [
                r for r in results if dg.AssetCheckKey(final_key(spec), r.check_name) in selected
            ]
            if not one_month:
                for result in checks[partition_key]:
                    context.log_event(check_evaluation(final_key(spec), result, partition_key))

        def replace(partition_key: str, month: date) -> dict | None:
            if month > spec.last_published and skipped_upstream(context, staging_key(spec), partition_key):
                return None
            result = warehouse.replace_month(
                spec,
                month,
                context.log.info,
                run_id=context.run.run_id,
                staged_sha256=staged_files.get(partition_key),
            )
            done[partition_key] = {
                TABLE_NAME: result.table,
                "filename": spec.file_name(month),
                "dagster/row_count": dg.MetadataValue.int(result.final_rows),
                "staged_rows": dg.MetadataValue.int(result.staged_rows),
                "duplicates_dropped": dg.MetadataValue.int(result.duplicates_dropped),
                "previous_rows": dg.MetadataValue.text(str(result.previous_rows)),
                "duration_seconds": round(result.seconds, 2),
                **({STAGED_SHA256: result.sha256} if result.sha256 else {}),
                **({"staged_by_run": result.staged_by_run} if result.staged_by_run else {}),
                **cost_metadata(result),
            }
            counts = RowCounts(
                file_rows=file_rows(context, spec, partition_key),
                rows_read=result.staged_rows,
                duplicates_dropped=result.duplicates_dropped,
            )
            file_checks(
                partition_key, month_checks(month, ids=result.ids, pickups=result.pickups, counts=counts)
            )
            return done[partition_key]

        materializing = final_key(spec) in context.selected_asset_keys
        if materializing:
            staged_files.update(files_staged_by_this_run(context, spec))
            yield from month_by_month(context, spec, final_key(spec), replace)
        else:  # the checks alone (the UI's "Execute" on a check): the months as they are, no swap
            for partition_key, month in run_months(context):
                counts = recorded_counts(context, spec, partition_key)
                file_checks(partition_key, month_checks(month, counts=counts))
        results = next(iter(checks.values()), [])
        if one_month:  # Dagster files the results under the run's partition
            if materializing:
                yield dg.MaterializeResult(asset_key=final_key(spec), check_results=results)
            else:
                yield from results
            return
        failed = blocking_failures(checks)
        if failed:  # as a blocking check does in a one-month run: the step fails, dbt waits
            yield from record_months_done(final_key(spec), done)
            raise dg.Failure(description=f"blocking checks failed: {failed}", allow_retries=False)
        if materializing:
            yield dg.MaterializeResult(asset_key=final_key(spec))

    return [raw_file, staging, final]


def trip_table_schema(spec: DatasetSpec) -> dg.TableSchema:
    """The columns of a staging / final table: the id, the file, then the file's columns."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                "unique_row_id",
                "text",
                description="MD5 of the trip's identity fields "
                f"({', '.join(spec.identity_columns)}), canonical texts joined by '|'",
            ),
            dg.TableColumn("filename", "text", description="the release file the row was loaded from"),
            *(dg.TableColumn(c.name, c.type.value) for c in spec.columns),
        ]
    )


def source_url_metadata(url: str) -> dg.MetadataValue:
    """A link only where it leads somewhere later: a local mirror's port or a file:// path is dead
    or meaningless in the UI after the run, so those are plain text."""
    masked = mask_url(url)
    return dg.MetadataValue.url(masked) if masked.startswith("https://") else dg.MetadataValue.text(masked)


# Numbers that would only make meaningless per-month charts (the UI plots every numeric entry):
# `previous_rows` (what the month held before, 0 on a first load) and the download's attempts are
# text; the attempts are in the run's log too.
def download_metadata(result: DownloadResult) -> dict:
    """`rows` is the file's own count: the Parquet footer's, or the CSV's data lines."""
    if result.file_format == "parquet":
        shape = {
            "schema_fingerprint": dg.MetadataValue.text(result.schema_fingerprint or ""),
            "row_groups": dg.MetadataValue.text(str(result.row_groups)),
        }
    else:
        shape = {
            "uncompressed_bytes": dg.MetadataValue.int(result.decompressed_bytes),
            "line_ending": "CRLF" if result.line_ending == "\r\n" else "LF",
        }
    return {
        "source_url": source_url_metadata(result.url),
        "file_format": dg.MetadataValue.text(result.file_format),
        "bytes": dg.MetadataValue.int(result.bytes),
        "sha256": result.sha256,
        "rows": dg.MetadataValue.int(result.rows),
        **shape,
        "download_attempts": dg.MetadataValue.text(str(result.attempts)),
        "duration_seconds": round(result.seconds, 2),
    }


def month_by_month(
    context: dg.AssetExecutionContext,
    spec: DatasetSpec,
    key: dg.AssetKey,
    work: Callable[[str, date], dict | None],
) -> Iterator[dg.AssetMaterialization]:
    """Runs `work` for each month in order and files its metadata under that month's partition
    (None: the month was skipped as not published). A failing month stops here: the months done
    before it are recorded, and the error names the month and file."""
    months = run_months(context)
    done: dict[str, dict] = {}
    for partition_key, month in months:
        try:
            metadata = work(partition_key, month)
        except Exception as exc:
            yield from record_months_done(key, done)
            if len(months) == 1:
                raise
            raise month_error(spec, month, exc) from exc
        if metadata is None:
            context.add_asset_metadata(not_published_metadata(spec, month), partition_key=partition_key)
            continue
        context.add_asset_metadata(metadata, partition_key=partition_key)
        done[partition_key] = metadata


def identical_reupload(
    context: dg.AssetExecutionContext, spec: DatasetSpec, partition_key: str, result: DownloadResult
) -> bool:
    """In a run for a re-uploaded file (tlc_release_sensor): True when its bytes equal those the
    lake holds (the sha256 recorded when they entered it). Then nothing is stored or reloaded: the
    observation says so in the UI, and the run's staging and final steps are skipped."""
    if context.run.tags.get(RELEASE_CHANGE_TAG) != "republished":
        return False
    previous = _latest_metadata(context, raw_file_key(spec), partition_key).get("sha256")
    if previous is None or str(previous.value) != result.sha256:
        return False
    result.path.unlink(missing_ok=True)
    version = context.run.tags.get(FILE_VERSION_TAG, "")
    context.log.info(
        f"{spec.file_name(month_of(partition_key))} was re-uploaded ({version}) with the "
        f"same bytes as the lake's copy (sha256 {result.sha256[:12]}…): nothing is reloaded"
    )
    context.log_event(
        dg.AssetObservation(
            asset_key=raw_file_key(spec),
            partition=partition_key,
            metadata={
                "identical_reupload": True,
                "sha256": result.sha256,
                "file_version": version,
                "note": "re-uploaded with identical bytes: not reloaded, no dbt rebuild",
            },
        )
    )
    return True


def missing_from_lake(
    context: dg.AssetExecutionContext, spec: DatasetSpec, partition_key: str, month: date
) -> None:
    """A month of the run whose file is not in the lake: skipped if it is not published yet (the
    raw step of this run said so), an error otherwise."""
    if month > spec.last_published:
        context.log.warning(f"{spec.name} {month:%Y-%m} is not published yet: nothing to stage")
        return None
    raise FileNotFoundError(
        f"{lake_key(spec.release_tag, spec.file_name(month))} is not in the lake: materialize "
        f"{raw_file_key(spec).to_user_string()} for {partition_key} first"
    )


def files_staged_by_this_run(context: dg.AssetExecutionContext, spec: DatasetSpec) -> dict[str, str]:
    """Partition key -> the sha256 of the file this run (or the run it re-executes) staged for the
    month; a month it staged nothing for is absent (the final asset alone attaches what is staged).
    One read of the event log per run, whatever the number of months."""
    staged: dict[str, str] = {}
    runs = [context.run.run_id] + [r for r in (context.run.parent_run_id, context.run.root_run_id) if r]
    for run_id in dict.fromkeys(runs):
        found: dict[str, str] = {}
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


def skipped_upstream(context: dg.AssetExecutionContext, upstream: dg.AssetKey, partition_key: str) -> bool:
    """True when this run's upstream step skipped the month as not published (its metadata says so)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=upstream, asset_partitions=[partition_key]), limit=1
    ).records
    if not records or records[0].run_id != context.run.run_id:
        return False
    skipped = NOT_PUBLISHED in records[0].asset_materialization.metadata
    if skipped:
        context.log.warning(f"{partition_key[:7]} is not published yet: nothing to replace")
    return skipped


def _latest_metadata(context: dg.AssetExecutionContext, key: dg.AssetKey, partition_key: str) -> dict:
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition_key]), limit=1
    ).records
    return dict(records[0].asset_materialization.metadata) if records else {}


def file_rows(context: dg.AssetExecutionContext, spec: DatasetSpec, partition_key: str) -> int | None:
    """The month's file's own row count, as its download's inspection recorded it (the Parquet
    footer, or the CSV data lines); None when no download of it is recorded."""
    rows = _latest_metadata(context, raw_file_key(spec), partition_key).get("rows")
    return None if rows is None else int(rows.value)


def recorded_counts(
    context: dg.AssetExecutionContext, spec: DatasetSpec, partition_key: str
) -> RowCounts | None:
    """The reconciliation's figures of the month's last load, from the event log (a check run alone)."""
    final = _latest_metadata(context, final_key(spec), partition_key)
    if "staged_rows" not in final or "duplicates_dropped" not in final:
        return None
    return RowCounts(
        file_rows=file_rows(context, spec, partition_key),
        rows_read=int(final["staged_rows"].value),
        duplicates_dropped=int(final["duplicates_dropped"].value),
    )
