"""The one place that picks the target: settings in, Dagster resources out."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource

from taxi_platform.lake.local import LocalLakeIOManager
from taxi_platform.settings import Settings
from taxi_platform.source.resource import ReleaseSource
from taxi_platform.source.tlc import TlcSource
from taxi_platform.warehouse.postgres import PostgresWarehouse


def build_resources(settings: Settings) -> dict[str, object]:
    resources = _target_resources(settings)
    if settings.compare_target:  # the other target's warehouse, for the agreement check
        other = replace(settings, target=settings.compare_target, compare_target=None)
        resources["other_warehouse"] = _target_resources(other)["warehouse"]
    return resources


def _target_resources(settings: Settings) -> dict[str, object]:
    # The source: the TLC's Parquet releases or the course's CSV backup (TAXI_SOURCE).
    source_class, base_url = {
        "tlc": (TlcSource, settings.tlc_url),
        "course": (ReleaseSource, settings.source_url),
    }[settings.source]
    source = source_class(
        base_url=base_url,
        scratch_dir=str(settings.home / "downloads"),
        attempts=settings.download_attempts,
        timeout_seconds=settings.download_timeout_seconds,
        deadline_seconds=settings.download_deadline_seconds,
    )
    if settings.target == "gcp":
        return {
            "source": source,
            **_gcp_resources(settings),
            "dbt": DbtCliResource(
                project_dir=str(settings.dbt_project_dir),
                profiles_dir=str(settings.dbt_project_dir),
                dbt_executable=dbt_executable(),
            ),
        }
    # settings.target is validated to one of TARGETS: "local" here.
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
            engine_memory=f"{settings.engine_memory_mb}MB",
        ),
        "dbt": DbtCliResource(
            project_dir=str(settings.dbt_project_dir),
            profiles_dir=str(settings.dbt_project_dir),
            dbt_executable=dbt_executable(),
        ),
    }


def _gcp_resources(settings: Settings) -> dict[str, object]:
    """GCS lake + BigQuery warehouse, through dagster-gcp's resources (taxi_platform/gcp.py)."""
    from taxi_platform.gcp import TaxiBigQueryResource, TaxiGCSResource
    from taxi_platform.lake.gcs import GcsLakeIOManager
    from taxi_platform.warehouse.bigquery import BigQueryWarehouse

    gcp = settings.gcp
    assert gcp is not None  # Settings refuses TAXI_TARGET=gcp without it
    # EnvVar, not the value: the UI and run config show the variable's name, never the key.
    b64 = dg.EnvVar("TAXI_GCP_CREDENTIALS_B64") if gcp.credentials_b64 else None
    auth = dict(gcp_credentials=b64, credentials_file=gcp.credentials_file, anonymous=gcp.anonymous)
    return {
        "lake_io_manager": GcsLakeIOManager(
            gcs=TaxiGCSResource(project=gcp.project, api_endpoint=gcp.gcs_api_endpoint, **auth),
            bucket=gcp.gcs_bucket,
        ),
        "warehouse": BigQueryWarehouse(
            bigquery=TaxiBigQueryResource(
                project=gcp.project, location=gcp.location, api_endpoint=gcp.bq_api_endpoint, **auth
            ),
            dataset=gcp.bq_dataset,
            staging_dataset=settings.staging_schema,
            dbt_dataset=settings.dbt_schema,
            engine_memory=f"{settings.engine_memory_mb}MB",
            max_bytes_billed=gcp.max_bytes_billed,
        ),
    }


def dbt_executable() -> str:
    """The dbt installed beside this Python (the venv's), whether or not the venv is activated."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else "dbt"


WAREHOUSE_KINDS = {"gcp": "bigquery", "local": "postgres"}


def kinds(settings: Settings) -> dict[str, str]:
    """UI labels of the storage behind the assets."""
    if settings.target == "gcp":
        return {"warehouse_kind": "bigquery", "lake_kind": "gcs"}
    return {"warehouse_kind": "postgres", "lake_kind": "file"}


def other_target(settings: Settings) -> str | None:
    """The warehouse kind each month must agree with (TAXI_COMPARE_TARGET), if any."""
    return WAREHOUSE_KINDS[settings.compare_target] if settings.compare_target else None


def resolved(resource):
    """A resource whose EnvVar fields are read from the environment, for use outside a run."""
    return resource.process_config_and_initialize()
