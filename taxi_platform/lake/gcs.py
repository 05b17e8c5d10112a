"""The GCS lake: `gs://<bucket>/<tag>/<file>`, through dagster-gcp's GCS resource.

Uploads are resumable and chunked (`chunk_bytes` per request, read from the local file one chunk at a
time: a 130 MB month never sits in memory), checked by CRC32C, and atomic: the object appears
only when its last chunk arrives, so readers see the old file or the new one. Downstream assets
get a handle whose opener streams the object.
"""

from __future__ import annotations

import time

import dagster as dg
from dagster_gcp import GCSResource

from taxi_platform.lake.base import LAKE_KEY_METADATA, LakeFile, VerifiedDownload, resolve_lake_key

CHUNK_UNIT = 256 * 1024  # GCS resumable uploads take chunks in multiples of 256 KiB


class GcsLakeIOManager(dg.ConfigurableIOManager):
    """Uploads verified downloads to a bucket and hands downstream assets a streamable handle."""

    gcs: GCSResource
    bucket: str
    chunk_bytes: int = 32 * CHUNK_UNIT  # 8 MiB; rounded to a multiple of 256 KiB

    def _chunk_size(self) -> int:
        return max(1, round(self.chunk_bytes / CHUNK_UNIT)) * CHUNK_UNIT

    def uri(self, key: str) -> str:
        return f"gs://{self.bucket}/{key}"

    def _bucket(self):
        return self.gcs.get_client().bucket(self.bucket)

    def handle_output(self, context: dg.OutputContext, obj: VerifiedDownload) -> None:
        started = time.monotonic()
        size = obj.local_path.stat().st_size
        blob = self._bucket().blob(obj.lake_key, chunk_size=self._chunk_size())
        # chunk_size set: a resumable session, the file read and sent chunk by chunk.
        blob.upload_from_filename(str(obj.local_path), content_type="application/gzip"
                                  if obj.lake_key.endswith(".gz") else "text/csv",
                                  checksum="crc32c")
        blob.reload()
        if blob.size != size:
            raise IOError(f"{self.uri(obj.lake_key)} holds {blob.size} bytes after the upload, "
                          f"the verified file {size}")
        obj.local_path.unlink(missing_ok=True)
        context.log.info(f"{obj.lake_key}: {size:,} bytes uploaded to {self.uri(obj.lake_key)} "
                         f"in {time.monotonic() - started:.1f} s")
        context.add_output_metadata({
            "lake_uri": dg.MetadataValue.url(self.uri(obj.lake_key)),
            "gcs_generation": str(blob.generation),
        })

    def load_input(self, context: dg.InputContext) -> LakeFile:
        key = resolve_lake_key(context.upstream_output.definition_metadata[LAKE_KEY_METADATA],
                               context.partition_key if context.has_partition_key else None)
        blob = self._bucket().get_blob(key)
        if blob is None:
            partition = f" for {context.partition_key}" if context.has_partition_key else ""
            raise FileNotFoundError(
                f"{key} is not in the lake at {self.uri(key)}: materialize "
                f"{context.upstream_output.asset_key.to_user_string()}{partition} first"
            )
        chunk = self._chunk_size()
        return LakeFile(uri=self.uri(key), file_name=key.rsplit("/", 1)[-1], size=blob.size,
                        opener=lambda: blob.open("rb", chunk_size=chunk))
