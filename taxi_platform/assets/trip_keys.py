"""The asset keys of a dataset's three trip assets: its file in the lake, its staging, its table."""

import dagster as dg

from taxi_platform.datasets import DatasetSpec


def raw_file_key(spec: DatasetSpec) -> dg.AssetKey:
    return dg.AssetKey(["lake", f"{spec.table_name}_file"])


def staging_key(spec: DatasetSpec) -> dg.AssetKey:
    return dg.AssetKey(["staging", f"{spec.table_name}_staging"])


def final_key(spec: DatasetSpec) -> dg.AssetKey:
    return dg.AssetKey(["warehouse", spec.table_name])
