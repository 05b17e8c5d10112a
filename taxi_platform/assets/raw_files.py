"""The raw file asset of a dataset: each month's release file, streamed, verified and stored in
the lake. This is where "not published yet" is decided: a month after the last one known to be
published whose file answers 404 is recorded as such (`trip_history.not_published` reads it)."""

from collections.abc import Iterator
from datetime import date

import dagster as dg

from taxi_platform.assets.metadata import download_metadata
from taxi_platform.assets.partitioned_runs import month_error, run_months
from taxi_platform.assets.policies import (
    DOWNLOAD_RETRY_POLICY,
    FILE_VERSION_TAG,
    LAKE_IO_MANAGER_KEY,
    RANGE_POLICY,
    RELEASE_CHANGE_TAG,
)
from taxi_platform.assets.trip_history import latest_metadata, not_published_metadata
from taxi_platform.assets.trip_keys import raw_file_key
from taxi_platform.datasets import DatasetSpec
from taxi_platform.lake.handles import LAKE_KEY_METADATA, VerifiedDownload, lake_key
from taxi_platform.partitions import month_of
from taxi_platform.redact import mask_url
from taxi_platform.source.download import DownloadResult
from taxi_platform.source.download_errors import PermanentDownloadError, ReleaseFileNotFound
from taxi_platform.source.resource import ReleaseSource
from taxi_platform.source.verify import InvalidReleaseFile


def fetch_month(
    context: dg.AssetExecutionContext, source: ReleaseSource, spec: DatasetSpec, month: date
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


def identical_reupload(
    context: dg.AssetExecutionContext, spec: DatasetSpec, partition_key: str, result: DownloadResult
) -> bool:
    """In a run for a re-uploaded file (tlc_release_sensor): True when its bytes equal those the
    lake holds (the sha256 recorded when they entered it). Then nothing is stored or reloaded: the
    observation says so in the UI, and the run's staging and final steps are skipped."""
    if context.run.tags.get(RELEASE_CHANGE_TAG) != "republished":
        return False
    previous = latest_metadata(context, raw_file_key(spec), partition_key).get("sha256")
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


def build_raw_file_asset(
    spec: DatasetSpec, partitions: dg.PartitionsDefinition, *, lake_kind: str
) -> dg.AssetsDefinition:
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
                    result = fetch_month(context, source, spec, month)
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

    return raw_file
