"""What travels between the raw-file asset and the staging asset: a handle, never the bytes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable


@dataclass(frozen=True)
class VerifiedDownload:
    """Output of the raw-file asset: a verified file on local disk, ready to enter the lake."""

    dataset: str
    release_tag: str
    file_name: str
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


def lake_key(release_tag: str, file_name: str) -> str:
    """Object key inside the lake: the release layout `<tag>/<file>`."""
    return f"{release_tag}/{file_name}"
