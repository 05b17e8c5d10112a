"""What travels between the raw-file asset and the staging asset: a handle, never the bytes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable


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
