"""Where a month's release file lives: `<base>/<tag>/<tag>_tripdata_<YYYY-MM>.csv.gz`."""

from __future__ import annotations

from datetime import date

from taxi_platform.datasets import DatasetSpec, ReferenceSpec


def release_file_url(base_url: str, spec: DatasetSpec, month: date) -> str:
    return f"{base_url.rstrip('/')}/{spec.release_tag}/{spec.file_name(month)}"


def reference_file_url(base_url: str, ref: ReferenceSpec) -> str:
    return f"{base_url.rstrip('/')}/{ref.release_tag}/{ref.file_name}"
