"""The staging asset of a dataset: each month's rows, typed, with unique_row_id and filename,
loaded from the lake into a staging table of their own."""

from collections.abc import Iterator
from datetime import date

import dagster as dg

from taxi_platform.assets.metadata import COLUMN_SCHEMA, staging_metadata, trip_table_schema
from taxi_platform.assets.partitioned_runs import month_by_month
from taxi_platform.assets.policies import RANGE_POLICY, WAREHOUSE_POOL
from taxi_platform.assets.trip_keys import raw_file_key, staging_key
from taxi_platform.datasets import DatasetSpec
from taxi_platform.lake.handles import LakeFile, lake_key
from taxi_platform.warehouse.base import TripWarehouse


def build_staging_asset(
    spec: DatasetSpec, partitions: dg.PartitionsDefinition, *, warehouse_kind: str
) -> dg.AssetsDefinition:
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
        def stage(partition_key: str, month: date) -> dict:
            lake_file = raw_file.get(partition_key)
            if lake_file is None:
                raise FileNotFoundError(
                    f"{lake_key(spec.release_tag, spec.file_name(month))} is not in the lake: materialize "
                    f"{raw_file_key(spec).to_user_string()} for {partition_key} first"
                )
            result = warehouse.load_staging(
                spec, month, lake_file, context.log.info, run_id=context.run.run_id
            )
            return staging_metadata(result, lake_file)

        yield from month_by_month(context, spec, staging_key(spec), stage, skipped="to stage")
        yield dg.MaterializeResult()

    return staging
