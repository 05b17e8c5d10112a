"""One test's GCP platform (`GcpEnv`): its own bucket and datasets on the session's emulators, and
the ways a test runs its assets and reads BigQuery."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, cast

import dagster as dg

from support.gcp_emulators import PROJECT, Emulators
from support.trip_runs import range_tags, trip_assets

if TYPE_CHECKING:
    from taxi_platform.gcp.settings import GcpSettings
    from taxi_platform.lake.gcs import GcsLakeIOManager
    from taxi_platform.settings import Settings
    from taxi_platform.warehouse.bigquery import BigQueryWarehouse


@dataclass
class GcpEnv:
    """One test's GCP platform: its own bucket and datasets on the session's emulators."""

    settings: Settings  # with target="gcp"
    mirror: Path
    instance: dg.DagsterInstance
    emulators: Emulators

    @property
    def resources(self) -> dict[str, object]:
        from taxi_platform.resources import build_resources

        return build_resources(self.settings)

    @property
    def gcp(self) -> GcpSettings:
        assert self.settings.gcp is not None  # target="gcp" needs its GcpSettings
        return self.settings.gcp

    def materialize(
        self, spec, month: date, *, raise_on_error: bool = False, resources: dict | None = None
    ) -> dg.ExecuteInProcessResult:
        defs = trip_assets(self.settings, spec)
        return dg.materialize(
            defs,
            partition_key=f"{month:%Y-%m-01}",
            instance=self.instance,
            resources=resources or self.resources,
            raise_on_error=raise_on_error,
        )

    def materialize_range(self, spec, first: date, last: date) -> dg.ExecuteInProcessResult:
        """One run of the months first..last (as a range backfill or `--partition-range`)."""
        defs = trip_assets(self.settings, spec)
        return dg.materialize(
            defs,
            instance=self.instance,
            resources=self.resources,
            raise_on_error=False,
            tags=range_tags(first, last),
        )

    def run_range(self, selection: list[dg.AssetKey], first: date, last: date) -> dg.ExecuteInProcessResult:
        """A selection of the real code location's assets as one run of the months first..last."""
        from taxi_platform.definitions import build_definitions

        job = build_definitions(self.settings).resolve_implicit_global_asset_job_def()
        return job.execute_in_process(
            instance=self.instance,
            asset_selection=selection,
            tags=range_tags(first, last),
        )

    def run(
        self, selection: list[dg.AssetKey], partition: date | None = None, *, raise_on_error: bool = True
    ) -> dg.ExecuteInProcessResult:
        from taxi_platform.definitions import build_definitions

        job = build_definitions(self.settings).resolve_implicit_global_asset_job_def()
        return job.execute_in_process(
            instance=self.instance,
            asset_selection=selection,
            raise_on_error=raise_on_error,
            partition_key=f"{partition:%Y-%m-01}" if partition else None,
        )

    def warehouse(self) -> BigQueryWarehouse:
        return cast("BigQueryWarehouse", self.resources["warehouse"])

    @contextmanager
    def bq(self):
        with self.warehouse().bigquery.get_client() as client:
            yield client

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        from google.cloud import bigquery

        with self.bq() as client:
            job = client.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=params or []))
            return [tuple(r.values()) for r in job.result()]

    def final(self, spec) -> str:
        return f"`{PROJECT}.{self.gcp.bq_dataset}.{spec.table_name}`"

    def table_exists(self, dataset: str, table: str) -> bool:
        from google.api_core.exceptions import NotFound

        with self.bq() as client:
            try:
                client.get_table(f"{PROJECT}.{dataset}.{table}")
                return True
            except NotFound:
                return False

    def ids(self, spec, month: date) -> list[str]:
        if not self.table_exists(self.gcp.bq_dataset, spec.table_name):
            return []
        return [
            r[0]
            for r in self.query(
                f"SELECT unique_row_id FROM {self.final(spec)} WHERE filename = '{spec.file_name(month)}'"
            )
        ]

    def fingerprint(self, spec) -> list[tuple]:
        """The whole final table as sorted rows: equal fingerprints mean equal contents."""
        if not self.table_exists(self.gcp.bq_dataset, spec.table_name):
            return []
        return sorted(self.query(f"SELECT * FROM {self.final(spec)}"), key=repr)

    def mirror_path(self, spec, month: date) -> Path:
        return self.mirror / spec.release_tag / spec.file_name(month)

    def gcs_client(self):
        return cast("GcsLakeIOManager", self.resources["lake_io_manager"]).gcs.get_client()
