"""The one place that picks the target: settings in, Dagster resources out."""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg

from dagster_dbt import DbtCliResource

from taxi_platform.lake.local import LocalLakeIOManager
from taxi_platform.settings import Settings
from taxi_platform.source.resource import ReleaseSource
from taxi_platform.warehouse.postgres import PostgresWarehouse


def build_resources(settings: Settings) -> dict[str, object]:
    source = ReleaseSource(
        base_url=settings.source_url,
        scratch_dir=str(settings.home / "downloads"),
        attempts=settings.download_attempts,
        timeout_seconds=settings.download_timeout_seconds,
    )
    # settings.target is validated to one of TARGETS; "local" is the only one so far.
    return {
        "source": source,
        "lake_io_manager": LocalLakeIOManager(root=str(settings.lake_dir)),
        "warehouse": PostgresWarehouse(
            # EnvVar, not the value: the UI and run config show the variable's name, never the URL.
            url=dg.EnvVar("TAXI_POSTGRES_URL") if settings.postgres_url else None,
            home=str(settings.home),
            embedded_port=settings.embedded_port,
            warehouse_schema=settings.warehouse_schema,
            staging_schema=settings.staging_schema,
            dbt_schema=settings.dbt_schema,
        ),
        "dbt": DbtCliResource(project_dir=str(settings.dbt_project_dir),
                              profiles_dir=str(settings.dbt_project_dir),
                              dbt_executable=dbt_executable()),
    }


def dbt_executable() -> str:
    """The dbt installed beside this Python (the venv's), whether or not the venv is activated."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else "dbt"


def kinds(settings: Settings) -> dict[str, str]:
    """UI labels of the storage behind the assets."""
    return {"warehouse_kind": "postgres", "lake_kind": "file"}
