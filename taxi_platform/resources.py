"""The one place that picks the target: settings in, Dagster resources out.

Secrets (TAXI_POSTGRES_URL, TAXI_GCP_CREDENTIALS_B64) reach the resources from Settings, the only
reader of the environment, as resource *dependencies*, never as config: Dagster turns every config
value it is given into a default of the resource's config schema, which the UI shows (the resource's
configuration, the launchpad) and the job snapshots store. A dependency (`dg.ResourceDependency`) is
handed to the resource as it is and shown by its type alone ("str"), and the fields are declared
with `repr=False`. `dg.EnvVar` would keep the value out as well, but Dagster would then read the
environment again behind Settings, and resources built from explicit Settings would not get it.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from dagster_dbt import DbtCliResource

from taxi_platform.lake.local import LocalLakeIOManager
from taxi_platform.settings import Settings
from taxi_platform.source.resource import ReleaseSource
from taxi_platform.source.tlc import TlcSource
from taxi_platform.target import GCP
from taxi_platform.warehouse.base import TripWarehouse
from taxi_platform.warehouse.postgres import PostgresWarehouse


def build_resources(settings: Settings) -> dict[str, object]:
    resources = _target_resources(settings)
    if settings.compare_target:  # the other target's warehouse, for the agreement check
        other = replace(settings, target=settings.compare_target, compare_target=None)
        resources["other_warehouse"] = _target_resources(other)["warehouse"]
    return resources


def build_warehouse(settings: Settings) -> TripWarehouse:
    """The target's warehouse alone, for commands run outside Dagster (`taxi-platform dbt`, the demo)."""
    warehouse = _target_resources(settings)["warehouse"]
    assert isinstance(warehouse, TripWarehouse)
    return warehouse


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
    storage = _gcp_resources(settings) if settings.target is GCP else _local_resources(settings)
    dbt = DbtCliResource(
        project_dir=str(settings.dbt_project_dir),
        profiles_dir=str(settings.dbt_project_dir),
        dbt_executable=dbt_executable(),
    )
    return {"source": source, **storage, "dbt": dbt}


def _local_resources(settings: Settings) -> dict[str, object]:
    """A lake folder under TAXI_HOME + PostgreSQL (embedded unless TAXI_POSTGRES_URL is set)."""
    return {
        "lake_io_manager": LocalLakeIOManager(root=str(settings.lake_dir)),
        "warehouse": PostgresWarehouse(
            url=settings.postgres_url,  # a secret: a dependency, not config (see above)
            home=str(settings.home),
            embedded_port=settings.embedded_port,
            warehouse_schema=settings.warehouse_schema,
            staging_schema=settings.staging_schema,
            dbt_schema=settings.dbt_schema,
            engine_memory=f"{settings.engine_memory_mb}MB",
        ),
    }


def _gcp_resources(settings: Settings) -> dict[str, object]:
    """GCS lake + BigQuery warehouse, through dagster-gcp's resources (taxi_platform/gcp/)."""
    from taxi_platform.gcp.resources import TaxiBigQueryResource, TaxiGCSResource
    from taxi_platform.lake.gcs import GcsLakeIOManager
    from taxi_platform.warehouse.bigquery import BigQueryWarehouse

    gcp = settings.gcp
    assert gcp is not None  # Settings refuses TAXI_TARGET=gcp without it
    # gcp_credentials is a secret: a dependency, not config (see above).
    key, key_file, anonymous = gcp.credentials_b64, gcp.credentials_file, gcp.anonymous
    return {
        "lake_io_manager": GcsLakeIOManager(
            gcs=TaxiGCSResource(
                project=gcp.project,
                api_endpoint=gcp.gcs_api_endpoint,
                gcp_credentials=key,
                credentials_file=key_file,
                anonymous=anonymous,
            ),
            bucket=gcp.gcs_bucket,
        ),
        "warehouse": BigQueryWarehouse(
            bigquery=TaxiBigQueryResource(
                project=gcp.project,
                location=gcp.location,
                api_endpoint=gcp.bq_api_endpoint,
                gcp_credentials=key,
                credentials_file=key_file,
                anonymous=anonymous,
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
