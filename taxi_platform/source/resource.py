"""The release source as a Dagster resource: base URL, retry policy, scratch folder."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import dagster as dg

from taxi_platform.datasets import DatasetSpec, ReferenceSpec
from taxi_platform.source.download import DownloadResult, download_file, download_release_file
from taxi_platform.source.releases import reference_file_url, release_file_url
from taxi_platform.source.verify import PlainCsvInspector


class ReleaseSource(dg.ConfigurableResource):
    """Downloads monthly release files (http(s):// or file://) with retries and verification."""

    base_url: str
    scratch_dir: str
    attempts: int = 5
    timeout_seconds: int = 60
    deadline_seconds: int = 3600
    backoff_base_seconds: float = 1.0

    def url_for(self, spec: DatasetSpec, month: date) -> str:
        return release_file_url(self.base_url, spec, month)

    def fetch(
        self, spec: DatasetSpec, month: date, run_id: str, log: Callable[[str], None]
    ) -> DownloadResult:
        # One scratch file per run: two runs of the same month never write the same file.
        dest = Path(self.scratch_dir) / f"{run_id}-{spec.file_name(month)}"
        return download_release_file(
            self.url_for(spec, month),
            dest,
            spec,
            month,
            attempts=self.attempts,
            timeout=self.timeout_seconds,
            deadline=self.deadline_seconds,
            backoff_base=self.backoff_base_seconds,
            log=log,
        )

    def fetch_reference(self, ref: ReferenceSpec, run_id: str, log: Callable[[str], None]) -> DownloadResult:
        url = reference_file_url(self.base_url, ref)
        header = [c.name for c in ref.columns]
        return download_file(
            url,
            Path(self.scratch_dir) / f"{run_id}-{ref.file_name}",
            what=ref.file_name,
            new_inspector=lambda: PlainCsvInspector(ref.file_name, header),
            attempts=self.attempts,
            timeout=self.timeout_seconds,
            deadline=self.deadline_seconds,
            backoff_base=self.backoff_base_seconds,
            log=log,
        )
