"""The local-folder lake: `<TAXI_HOME>/lake/<tag>/<file>`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

from taxi_platform.datasets import get_dataset
from taxi_platform.lake.base import LakeFile, VerifiedDownload, lake_key
from taxi_platform.partitions import month_of


class LocalLakeIOManager(dg.ConfigurableIOManager):
    """Moves verified downloads into a local folder and hands downstream assets a streamable handle."""

    root: str

    def _path(self, release_tag: str, file_name: str) -> Path:
        return Path(self.root) / lake_key(release_tag, file_name)

    def handle_output(self, context: dg.OutputContext, obj: VerifiedDownload) -> None:
        target = self._path(obj.release_tag, obj.file_name)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(obj.local_path, target)  # atomic: readers see the old file or the new one
        except OSError:  # another file system: copy beside the target, then rename
            tmp = target.with_name(target.name + ".incoming")
            shutil.copyfile(obj.local_path, tmp)
            os.replace(tmp, target)
            obj.local_path.unlink(missing_ok=True)
        context.add_output_metadata({"lake_uri": dg.MetadataValue.path(str(target))})

    def load_input(self, context: dg.InputContext) -> LakeFile:
        spec = get_dataset(context.upstream_output.definition_metadata["dataset"])
        month = month_of(context.partition_key)
        path = self._path(spec.release_tag, spec.file_name(month))
        if not path.is_file():
            raise FileNotFoundError(
                f"{spec.file_name(month)} is not in the lake at {path}: materialize "
                f"{context.upstream_output.asset_key.to_user_string()} for {month:%Y-%m} first"
            )
        return LakeFile(uri=path.as_uri(), file_name=path.name, size=path.stat().st_size,
                        opener=lambda: open(path, "rb"))
