"""What travels between the raw-file asset and the staging asset: a handle, never the bytes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import dagster as dg


@dataclass(frozen=True)
class VerifiedDownload:
    """Output of a raw-file asset: a verified file on local disk, ready to enter the lake."""

    lake_key: str  # `<tag>/<file>`
    local_path: Path


@dataclass(frozen=True)
class LakeFile:
    """A file in the lake (local folder or GCS): where it is and how to stream it."""

    uri: str  # file:///... or gs://bucket/...
    file_name: str
    size: int
    opener: Callable[[], BinaryIO]

    def open(self) -> BinaryIO:
        return self.opener()


LAKE_KEY_METADATA = "lake_key"  # definition metadata of raw-file assets: a key template


def lake_key(release_tag: str, file_name: str) -> str:
    """Object key inside the lake: the release layout `<tag>/<file>`."""
    return f"{release_tag}/{file_name}"


def resolve_lake_key(template: str, partition_key: str | None) -> str:
    """`yellow/yellow_tripdata_{month}.csv.gz` + `2019-01-01` -> `.../yellow_tripdata_2019-01.csv.gz`."""
    if "{month}" in template:
        if partition_key is None:
            raise ValueError(f"lake key {template!r} needs a monthly partition")
        return template.format(month=partition_key[:7])
    return template


def stored_downloads(obj: VerifiedDownload | Mapping[str, VerifiedDownload]) -> list[VerifiedDownload]:
    """A raw asset's output: one download, or one per month a range run downloaded."""
    return [obj] if isinstance(obj, VerifiedDownload) else list(obj.values())


def input_lake_keys(context: dg.InputContext) -> dict[str | None, str]:
    """Partition key (None when unpartitioned) -> lake key of every file the input covers."""
    assert context.upstream_output is not None  # an input of an asset always has one
    template = context.upstream_output.definition_metadata[LAKE_KEY_METADATA]
    if not context.has_asset_partitions:
        return {None: resolve_lake_key(template, None)}
    return {key: resolve_lake_key(template, key) for key in context.asset_partition_keys}


def lake_input(
    context: dg.InputContext, found: Mapping[str | None, LakeFile], missing: Callable[[str, str | None], str]
) -> LakeFile | dict[str, LakeFile]:
    """What a downstream asset gets: the handle (unpartitioned), or partition key -> handle of the
    files in the lake (a range run's months skipped as not published have none). When none of
    the files is there: FileNotFoundError with `missing(lake key, partition key)` of the first."""
    keys = input_lake_keys(context)
    if not found:
        partition, key = next(iter(keys.items()))
        raise FileNotFoundError(missing(key, partition))
    if None in found:
        return found[None]
    return {key: file for key, file in found.items() if key is not None}


def missing_message(key: str, location: str, context: dg.InputContext, partition: str | None) -> str:
    assert context.upstream_output is not None  # an input of an asset always has one
    return (
        f"{key} is not in the lake at {location}: materialize "
        f"{context.upstream_output.asset_key.to_user_string()}"
        f"{f' for {partition}' if partition else ''} first"
    )
