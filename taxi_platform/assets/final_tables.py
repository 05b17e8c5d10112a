"""The final table of a dataset: distinct trips, each month replaced atomically from its staging,
then checked (the checks of `assets/checks.py`, filed under the month's partition)."""

from collections.abc import Iterator
from datetime import date

import dagster as dg

from taxi_platform.assets.checks import (
    RowCounts,
    agreement,
    blocking_failures,
    check_evaluation,
    evaluate_trip_checks,
    named_check,
    trip_check_specs,
)
from taxi_platform.assets.metadata import COLUMN_SCHEMA, replace_metadata, trip_table_schema
from taxi_platform.assets.partitioned_runs import month_by_month, record_months_done, run_months
from taxi_platform.assets.policies import RANGE_POLICY, WAREHOUSE_POOL
from taxi_platform.assets.trip_history import file_rows, files_staged_by_this_run, recorded_counts
from taxi_platform.assets.trip_keys import final_key, staging_key
from taxi_platform.datasets import DatasetSpec
from taxi_platform.warehouse.base import TripWarehouse


def build_final_asset(
    spec: DatasetSpec,
    partitions: dg.PartitionsDefinition,
    *,
    warehouse_kind: str,
    min_in_month_share: float,
    other_target: str | None,
) -> dg.AssetsDefinition:
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
                r for r in results if dg.AssetCheckKey(final_key(spec), named_check(r)) in selected
            ]
            if not one_month:
                for result in checks[partition_key]:
                    context.log_event(check_evaluation(final_key(spec), result, partition_key))

        def replace(partition_key: str, month: date) -> dict:
            result = warehouse.replace_month(
                spec,
                month,
                context.log.info,
                run_id=context.run.run_id,
                staged_sha256=staged_files.get(partition_key),
            )
            done[partition_key] = replace_metadata(spec, month, result)
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
            yield from month_by_month(context, spec, final_key(spec), replace, skipped="to replace")
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

    return final
