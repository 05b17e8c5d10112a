"""The GCS lake: `gs://<bucket>/<tag>/<file>`, through dagster-gcp's GCS resource.

Uploads are resumable and chunked (`chunk_bytes` per request, read from the local file one chunk at a
time: a 130 MB month never sits in memory), checked by CRC32C, and atomic: the object appears
only when its last chunk arrives, so readers see the old file or the new one. Downstream assets
get a handle whose opener streams the object.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import dagster as dg
from dagster_gcp import GCSResource

from taxi_platform.lake.handles import (
    LakeFile,
    VerifiedDownload,
    input_lake_keys,
    lake_input,
    missing_message,
    stored_downloads,
)

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

    def handle_output(
        self, context: dg.OutputContext, obj: VerifiedDownload | Mapping[str, VerifiedDownload]
    ) -> None:
        blobs = [self._upload(context, download) for download in stored_downloads(obj)]
        if len(blobs) == 1:
            context.add_output_metadata(
                {
                    "lake_uri": dg.MetadataValue.url(self.uri(blobs[0].name)),
                    "gcs_generation": str(blobs[0].generation),
                }
            )
        else:  # each month's object is named by its own partition's lake_key metadata
            context.add_output_metadata({"lake_root": dg.MetadataValue.url(f"gs://{self.bucket}")})

    def _upload(self, context: dg.OutputContext, obj: VerifiedDownload):
        started = time.monotonic()
        size = obj.local_path.stat().st_size
        blob = self._bucket().blob(obj.lake_key, chunk_size=self._chunk_size())
        # chunk_size set: a resumable session, the file read and sent chunk by chunk.
        blob.upload_from_filename(
            str(obj.local_path),
            content_type="application/gzip" if obj.lake_key.endswith(".gz") else "text/csv",
            checksum="crc32c",
        )
        blob.reload()
        if blob.size != size:
            raise OSError(
                f"{self.uri(obj.lake_key)} holds {blob.size} bytes after the upload, the verified file {size}"
            )
        obj.local_path.unlink(missing_ok=True)
        context.log.info(
            f"{obj.lake_key}: {size:,} bytes uploaded to {self.uri(obj.lake_key)} "
            f"in {time.monotonic() - started:.1f} s"
        )
        return blob

    def load_input(self, context: dg.InputContext) -> LakeFile | dict[str, LakeFile]:
        bucket = self._bucket()
        blobs = {partition: bucket.get_blob(key) for partition, key in input_lake_keys(context).items()}
        found = {partition: self._handle(blob) for partition, blob in blobs.items() if blob is not None}
        return lake_input(
            context, found, lambda key, partition: missing_message(key, self.uri(key), context, partition)
        )

    def _handle(self, blob) -> LakeFile:
        chunk = self._chunk_size()
        return LakeFile(
            uri=self.uri(blob.name),
            file_name=blob.name.rsplit("/", 1)[-1],
            size=blob.size,
            opener=lambda: blob.open("rb", chunk_size=chunk),
        )
