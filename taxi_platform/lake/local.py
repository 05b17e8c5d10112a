"""The local-folder lake: `<TAXI_HOME>/lake/<tag>/<file>`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

from taxi_platform.lake.base import LAKE_KEY_METADATA, LakeFile, VerifiedDownload, resolve_lake_key


class LocalLakeIOManager(dg.ConfigurableIOManager):
    """Moves verified downloads into a local folder and hands downstream assets a streamable handle."""

    root: str

    def _path(self, key: str) -> Path:
        return Path(self.root) / key

    def handle_output(self, context: dg.OutputContext, obj: VerifiedDownload) -> None:
        target = self._path(obj.lake_key)
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
        key = resolve_lake_key(context.upstream_output.definition_metadata[LAKE_KEY_METADATA],
                               context.partition_key if context.has_partition_key else None)
        path = self._path(key)
        if not path.is_file():
            partition = f" for {context.partition_key}" if context.has_partition_key else ""
            raise FileNotFoundError(
                f"{key} is not in the lake at {path}: materialize "
                f"{context.upstream_output.asset_key.to_user_string()}{partition} first"
            )
        return LakeFile(uri=path.as_uri(), file_name=path.name, size=path.stat().st_size,
                        opener=lambda: open(path, "rb"))
