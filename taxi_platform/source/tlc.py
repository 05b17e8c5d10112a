"""The TLC's own releases (Parquet, from 2009) as a Dagster resource, beside the course's CSV backup.

Layout: `<base>/trip-data/<dataset>_tripdata_<YYYY-MM>.parquet` and `<base>/misc/taxi_zone_lookup.csv`,
base `https://d37ci6vzurychx.cloudfront.net` (or a file:// mirror of the same layout). The file is
named after the dataset, never the course's release tag. CloudFront answers 403 both when it
throttles and for a file it does not hold: a 403 for a month the spec says is published is retried
with backoff; outside that range it means "not published yet", like a 404.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

from taxi_platform.datasets import ZONES, DatasetSpec, ReferenceSpec
from taxi_platform.source.download import DownloadResult, download_file
from taxi_platform.source.parquet_verify import ParquetInspector
from taxi_platform.source.resource import ReleaseSource
from taxi_platform.source.verify import PlainCsvInspector


def tlc_file_name(spec: DatasetSpec, month: date) -> str:
    """`green_tripdata_2023-04.parquet`, whatever `spec.file_extension` says (the TLC only has Parquet)."""
    return f"{spec.name}_tripdata_{month:%Y-%m}.parquet"


def tlc_file_url(base_url: str, spec: DatasetSpec, month: date) -> str:
    return f"{base_url.rstrip('/')}/trip-data/{tlc_file_name(spec, month)}"


def tlc_reference_url(base_url: str, ref: ReferenceSpec) -> str:
    return f"{base_url.rstrip('/')}/misc/{ref.file_name}"


def tlc_zones_url(base_url: str) -> str:
    return tlc_reference_url(base_url, ZONES)


class TlcSource(ReleaseSource):
    """Downloads the TLC's monthly Parquet files (http(s):// or file://), verified as they stream.

    A ReleaseSource with the TLC's layout: the same settings and methods, so assets typed for a
    ReleaseSource take either; `file_format` tells them apart.
    """

    @property
    def file_format(self) -> str:
        return "parquet"

    def url_for(self, spec: DatasetSpec, month: date) -> str:
        return tlc_file_url(self.base_url, spec, month)

    def _options(self, log: Callable[[str], None]) -> dict:
        return dict(
            attempts=self.attempts,
            timeout=self.timeout_seconds,
            deadline=self.deadline_seconds,
            backoff_base=self.backoff_base_seconds,
            log=log,
        )

    def fetch(
        self, spec: DatasetSpec, month: date, run_id: str, log: Callable[[str], None]
    ) -> DownloadResult:
        name = tlc_file_name(spec, month)
        # One scratch file per run: two runs of the same month never write the same file.
        return download_file(
            self.url_for(spec, month),
            Path(self.scratch_dir) / f"{run_id}-{name}",
            what=f"{spec.name} {month:%Y-%m}",
            new_inspector=lambda: ParquetInspector(name),
            on_forbidden="retry" if spec.is_published(month) else "missing",
            **self._options(log),
        )

    def fetch_reference(self, ref: ReferenceSpec, run_id: str, log: Callable[[str], None]) -> DownloadResult:
        header = [c.name for c in ref.columns]
        return download_file(
            tlc_reference_url(self.base_url, ref),
            Path(self.scratch_dir) / f"{run_id}-{ref.file_name}",
            what=ref.file_name,
            new_inspector=lambda: PlainCsvInspector(ref.file_name, header),
            on_forbidden="retry",  # the zone table always exists: a 403 is throttling
            **self._options(log),
        )
