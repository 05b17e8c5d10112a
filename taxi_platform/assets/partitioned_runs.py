"""A run over a range of months (`RANGE_POLICY`: one run per range): the months it covers, and
each month worked through in order as a one-month run would, its metadata filed under its own
partition. Shared by the trip and dbt assets."""

from collections.abc import Callable, Iterator, Mapping
from datetime import date

import dagster as dg

from taxi_platform.assets.trip_history import not_published, not_published_metadata
from taxi_platform.datasets import DatasetSpec
from taxi_platform.partitions import month_of


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


def month_by_month(
    context: dg.AssetExecutionContext,
    spec: DatasetSpec,
    key: dg.AssetKey,
    work: Callable[[str, date], dict],
    *,
    skipped: str,
) -> Iterator[dg.AssetMaterialization]:
    """Runs `work` for each month in order and files its metadata under that month's partition.
    A month the raw asset found not published yet is skipped (the log says there is nothing
    `skipped`). A failing month stops here: the months done before it are recorded, and the error
    names the month and file."""
    months = run_months(context)
    done: dict[str, dict] = {}
    for partition_key, month in months:
        if not_published(context, spec, partition_key, month):
            context.log.warning(f"{spec.name} {month:%Y-%m} is not published yet: nothing {skipped}")
            context.add_asset_metadata(not_published_metadata(spec, month), partition_key=partition_key)
            continue
        try:
            metadata = work(partition_key, month)
        except Exception as exc:
            yield from record_months_done(key, done)
            if len(months) == 1:
                raise
            raise month_error(spec, month, exc) from exc
        context.add_asset_metadata(metadata, partition_key=partition_key)
        done[partition_key] = metadata
