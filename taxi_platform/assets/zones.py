"""Reference assets: the taxi zone lookup, an input like the trip files (release -> lake -> table)."""

from collections.abc import Iterator

import dagster as dg

from taxi_platform.assets.metadata import source_url_metadata
from taxi_platform.assets.policies import LAKE_IO_MANAGER_KEY, WAREHOUSE_POOL
from taxi_platform.datasets import ReferenceSpec
from taxi_platform.lake.handles import LAKE_KEY_METADATA, LakeFile, VerifiedDownload, lake_key
from taxi_platform.source.resource import ReleaseSource
from taxi_platform.warehouse.base import TripWarehouse, cost_metadata


def reference_file_key(ref: ReferenceSpec) -> dg.AssetKey:
    return dg.AssetKey(["lake", ref.file_name.split(".")[0] + "_file"])


def reference_table_key(ref: ReferenceSpec) -> dg.AssetKey:
    return dg.AssetKey(["warehouse", ref.name])


def build_reference_assets(
    ref: ReferenceSpec, *, warehouse_kind: str, lake_kind: str
) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=reference_file_key(ref),
        description=f"{ref.description} The release file, verified, in the lake.",
        group_name="reference",
        kinds={"csv", lake_kind},
        io_manager_key=LAKE_IO_MANAGER_KEY,
        metadata={LAKE_KEY_METADATA: lake_key(ref.release_tag, ref.file_name)},
    )
    def reference_file(context: dg.AssetExecutionContext, source: ReleaseSource) -> Iterator[dg.Output]:
        result = source.fetch_reference(ref, context.run.run_id, context.log.info)
        yield dg.Output(
            VerifiedDownload(lake_key=lake_key(ref.release_tag, ref.file_name), local_path=result.path),
            metadata={
                "source_url": source_url_metadata(result.url),
                "bytes": dg.MetadataValue.int(result.bytes),
                "sha256": result.sha256,
                "rows": dg.MetadataValue.int(result.rows),
                "duration_seconds": round(result.seconds, 2),
            },
        )

    @dg.asset(
        key=reference_table_key(ref),
        description=f"{ref.description} Replaced whole, atomically.",
        group_name="reference",
        kinds={warehouse_kind},
        ins={"reference_file": dg.AssetIn(key=reference_file_key(ref))},
        pool=WAREHOUSE_POOL,
    )
    def reference_table(
        context: dg.AssetExecutionContext, reference_file: LakeFile, warehouse: TripWarehouse
    ) -> dg.MaterializeResult:
        result = warehouse.load_reference(ref, reference_file, context.log.info)
        return dg.MaterializeResult(
            metadata={
                "dagster/table_name": result.table,
                "dagster/row_count": dg.MetadataValue.int(result.rows),
                "previous_rows": dg.MetadataValue.text(str(result.previous_rows)),
                "duration_seconds": round(result.seconds, 2),
                **cost_metadata(result),
            }
        )

    return [reference_file, reference_table]
