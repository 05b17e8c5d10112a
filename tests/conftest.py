"""Shared fixtures: one embedded PostgreSQL for the session (stopped at the end), isolated schemas
per test, generated release files, and a throw-away Dagster instance."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

# Re-exported: tests import them from conftest.
from run_results import REAL_SAMPLES, ZONES_CSV, failure_message, materialization_metadata, query  # noqa: F401

from taxi_platform.assets.trips import build_trip_assets, final_key, raw_file_key, staging_key
from taxi_platform.datasets import DATASETS, DatasetSpec
from taxi_platform.resources import build_resources
from taxi_platform.settings import Settings
from taxi_platform.warehouse.embedded import EmbeddedPostgres

REPO = Path(__file__).resolve().parents[1]


def _tmp_root() -> Path:
    # The embedded server runs as `nobody` when we are root: its folder must be traversable,
    # which pytest's tmp_path under /root may not be.
    root = Path(tempfile.mkdtemp(prefix="taxi-tests-", dir=os.environ.get("TAXI_TEST_TMP", "/tmp")))
    root.chmod(0o755)
    return root


@pytest.fixture(scope="session")
def session_root() -> Iterator[Path]:
    root = _tmp_root()
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def embedded_pg(session_root: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(session_root / "home" / "postgres")
    server.ensure_running()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_url(embedded_pg: EmbeddedPostgres) -> str:
    return embedded_pg.url()


@pytest.fixture
def pg(pg_url: str) -> Iterator[psycopg2.extensions.connection]:
    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    yield conn
    conn.close()


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
        defs = build_trip_assets(
            spec,
            warehouse_kind="postgres",
            lake_kind="file",
            min_in_month_share=self.settings.min_in_month_share,
        )
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
        defs = build_trip_assets(
            spec,
            warehouse_kind="postgres",
            lake_kind="file",
            min_in_month_share=self.settings.min_in_month_share,
        )
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


def materialize_killing_copy(
    env: Env, pg, spec: DatasetSpec, month: date, backend: str
) -> tuple[dg.ExecuteInProcessResult, int]:
    """Materialize the month while terminating the COPY backends whose application_name is LIKE
    `backend` as soon as one runs; the run's result and how many backends were killed."""
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(result=env.materialize(spec, month)))
    runner.start()
    killed = 0
    deadline = time.monotonic() + 120
    with pg.cursor() as cur:
        while not killed and runner.is_alive() and time.monotonic() < deadline:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE %s AND query LIKE 'COPY%%' AND state = 'active'",
                (backend,),
            )
            killed = sum(1 for (ok,) in cur.fetchall() if ok)
            time.sleep(0.05)
    runner.join()
    return outcome["result"], killed


def keep_later_occurrences(monkeypatch) -> None:
    """Make the staging keep the later occurrences of repeated ids: its DELETE statements are
    dropped (the server's kept rows then differ from the engine's distinct count)."""
    import taxi_platform.warehouse.postgres_month as postgres_month

    delete_later = postgres_month._delete_later_occurrences

    class NoDelete:  # the cursor, but its DELETE statements are dropped
        def __init__(self, cur):
            self.cur, self.rowcount = cur, 0

        def execute(self, query, params=None):
            if not query.as_string(self.cur).startswith("DELETE"):
                self.cur.execute(query, params)

        def fetchall(self):
            return self.cur.fetchall()

    monkeypatch.setattr(
        postgres_month, "_delete_later_occurrences", lambda cur, *args: delete_later(NoDelete(cur), *args)
    )


def range_tags(first: date, last: date) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": f"{first:%Y-%m-01}",
        "dagster/asset_partition_range_end": f"{last:%Y-%m-01}",
    }


@pytest.fixture
def env(session_root: Path, pg_url: str, monkeypatch) -> Iterator[Env]:
    name = uuid.uuid4().hex[:10]
    home = session_root / "home"  # shared: the session's embedded server lives there
    mirror = session_root / f"mirror_{name}"
    mirror.mkdir()
    monkeypatch.setenv("TAXI_POSTGRES_URL", pg_url)
    settings = Settings(
        source="course",
        home=home,
        source_url=mirror.as_uri(),
        postgres_url=pg_url,
        warehouse_schema=f"w_{name}",
        staging_schema=f"s_{name}",
        dbt_schema=f"d_{name}",
        download_attempts=2,
    )
    with dg.instance_for_test() as instance:
        yield Env(settings=settings, mirror=mirror, instance=instance, pg_url=pg_url)
    shutil.rmtree(mirror, ignore_errors=True)


def partition_metadata(instance: dg.DagsterInstance, key: dg.AssetKey, name: str) -> dict[str, object]:
    """Partition key -> the value of metadata `name` in its latest materialization."""
    records = instance.fetch_materializations(key, limit=1000).records
    latest: dict[str, object] = {}
    for record in sorted(records, key=lambda r: r.storage_id):
        metadata = record.asset_materialization.metadata
        latest[record.partition_key] = metadata[name].value if name in metadata else None
    return latest


__all__ = [
    "Env",
    "keep_later_occurrences",
    "materialization_metadata",
    "partition_metadata",
    "range_tags",
    "failure_message",
    "final_key",
    "raw_file_key",
    "staging_key",
    "DATASETS",
    "REAL_SAMPLES",
    "ZONES_CSV",
]
