"""One test's platform on the session's PostgreSQL (`Env`): its settings, mirror and Dagster
instance, and the ways a test runs its assets (in process, as a range, or as a CLI process)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg

from support.paths import REPO
from support.run_results import query
from support.trip_runs import range_tags, trip_assets
from taxi_platform.assets.trip_keys import final_key, raw_file_key, staging_key
from taxi_platform.datasets import DatasetSpec
from taxi_platform.resources import build_resources
from taxi_platform.settings import Settings


@dataclass
class Env:
    """One test's platform: its own schemas, lake and mirror; the session's PostgreSQL."""

    settings: Settings
    mirror: Path
    instance: dg.DagsterInstance
    pg_url: str

    @property
    def resources(self) -> dict[str, object]:
        return build_resources(self.settings)

    def materialize(
        self,
        spec: DatasetSpec,
        month: date,
        *,
        raise_on_error: bool = False,
        assets: str = "all",
        resources: dict | None = None,
    ) -> dg.ExecuteInProcessResult:
        defs = trip_assets(self.settings, spec)
        return dg.materialize(
            defs,
            partition_key=f"{month:%Y-%m-01}",
            instance=self.instance,
            resources=resources or self.resources,
            raise_on_error=raise_on_error,
        )

    def materialize_range(
        self, spec: DatasetSpec, first: date, last: date, *, raise_on_error: bool = False
    ) -> dg.ExecuteInProcessResult:
        """One run of the months first..last (the tags a range backfill or the CLI's
        `--partition-range` give a run)."""
        defs = trip_assets(self.settings, spec)
        return dg.materialize(
            defs,
            instance=self.instance,
            resources=self.resources,
            raise_on_error=raise_on_error,
            tags=range_tags(first, last),
        )

    def cli_env(self) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "TAXI_HOME": str(s.home),
            "TAXI_SOURCE": s.source,
            "TAXI_SOURCE_URL": s.source_url,
            "TAXI_POSTGRES_URL": s.postgres_url or "",
            "TAXI_WAREHOUSE_SCHEMA": s.warehouse_schema,
            "TAXI_STAGING_SCHEMA": s.staging_schema,
            "TAXI_DBT_SCHEMA": s.dbt_schema,
            "DAGSTER_HOME": self.instance.root_directory,
        }

    def cli_materialize(
        self, spec: DatasetSpec, month: date, last: date | None = None, more: tuple[dg.AssetKey, ...] = ()
    ) -> subprocess.Popen:
        """`dagster asset materialize` of one month of a dataset (or the months month..last, with
        `--partition-range`), plus the assets `more`, in its own process."""
        selection = ",".join(
            k.to_user_string() for k in (raw_file_key(spec), staging_key(spec), final_key(spec), *more)
        )
        partitions = (
            ["--partition", f"{month:%Y-%m-01}"]
            if last is None
            else ["--partition-range", f"{month:%Y-%m-01}...{last:%Y-%m-01}"]
        )
        return subprocess.Popen(
            [
                str(Path(sys.executable).parent / "dagster"),
                "asset",
                "materialize",
                "-m",
                "taxi_platform.definitions",
                "--select",
                selection,
                *partitions,
            ],
            cwd=REPO,
            env=self.cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def warehouse(self):
        from taxi_platform.warehouse.postgres import PostgresWarehouse

        s = self.settings
        return PostgresWarehouse(
            url=self.pg_url,
            home=str(s.home),
            warehouse_schema=s.warehouse_schema,
            staging_schema=s.staging_schema,
            dbt_schema=s.dbt_schema,
        )

    def run(
        self, selection: list[dg.AssetKey], partition: date | None = None, *, raise_on_error: bool = True
    ) -> dg.ExecuteInProcessResult:
        """Execute a selection of the real code location's assets (trips, zones, dbt)."""
        from taxi_platform.definitions import build_definitions

        defs = build_definitions(self.settings)
        job = defs.resolve_implicit_global_asset_job_def()
        return job.execute_in_process(
            instance=self.instance,
            asset_selection=selection,
            raise_on_error=raise_on_error,
            partition_key=f"{partition:%Y-%m-01}" if partition else None,
        )

    def run_range(self, selection: list[dg.AssetKey], tags: dict[str, str]) -> dg.ExecuteInProcessResult:
        """Execute a selection of the real code location's assets as one range run."""
        from taxi_platform.definitions import build_definitions

        job = build_definitions(self.settings).resolve_implicit_global_asset_job_def()
        return job.execute_in_process(instance=self.instance, asset_selection=selection, tags=tags)

    def query(self, sql: str, params=()) -> list[tuple]:
        return query(self.pg_url, sql, params)

    def final(self, spec: DatasetSpec) -> str:
        return f'"{self.settings.warehouse_schema}"."{spec.table_name}"'

    def fingerprint(self, spec: DatasetSpec) -> list[tuple]:
        """The whole final table, ordered: equal fingerprints mean equal contents."""
        if not self.query("SELECT to_regclass(%s)", (f"{self.settings.warehouse_schema}.{spec.table_name}",))[
            0
        ][0]:
            return []
        return self.query(f"SELECT md5(t::text) AS h FROM {self.final(spec)} t ORDER BY h")

    def mirror_path(self, spec: DatasetSpec, month: date) -> Path:
        return self.mirror / spec.release_tag / spec.file_name(month)
