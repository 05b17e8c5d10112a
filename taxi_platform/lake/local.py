"""The local-folder lake: `<TAXI_HOME>/lake/<tag>/<file>`."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from taxi_platform.lake.handles import (
    LakeFile,
    VerifiedDownload,
    input_lake_keys,
    lake_input,
    missing_message,
    stored_downloads,
)


class LocalLakeIOManager(dg.ConfigurableIOManager):
    """Moves verified downloads into a local folder and hands downstream assets a streamable handle."""

    root: str

    def _path(self, key: str) -> Path:
        return Path(self.root) / key

    def handle_output(
        self, context: dg.OutputContext, obj: VerifiedDownload | Mapping[str, VerifiedDownload]
    ) -> None:
        targets = [self._store(download) for download in stored_downloads(obj)]
        if len(targets) == 1:
            context.add_output_metadata({"lake_uri": dg.MetadataValue.path(str(targets[0]))})
        else:  # each month's file is named by its own partition's lake_key metadata
            context.add_output_metadata({"lake_root": dg.MetadataValue.path(self.root)})

    def _store(self, obj: VerifiedDownload) -> Path:
        target = self._path(obj.lake_key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(obj.local_path, target)  # atomic: readers see the old file or the new one
        except OSError:  # another file system: copy beside the target, then rename
            tmp = target.with_name(target.name + ".incoming")
            shutil.copyfile(obj.local_path, tmp)
            os.replace(tmp, target)
            obj.local_path.unlink(missing_ok=True)
        return target

    def load_input(self, context: dg.InputContext) -> LakeFile | dict[str, LakeFile]:
        found = {
            partition: self._handle(key)
            for partition, key in input_lake_keys(context).items()
            if self._path(key).is_file()
        }
        return lake_input(
            context,
            found,
            lambda key, partition: missing_message(key, str(self._path(key)), context, partition),
        )

    def _handle(self, key: str) -> LakeFile:
        path = self._path(key)
        return LakeFile(
            uri=path.as_uri(), file_name=path.name, size=path.stat().st_size, opener=lambda: open(path, "rb")
        )
