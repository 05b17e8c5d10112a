"""BigQuery warehouse (TAXI_TARGET=gcp), through dagster-gcp's BigQuery resource.

Tables (datasets from settings, in the resource's project):
  <staging>.<colour>_tripdata_<YYYY_MM>   the month's typed rows + unique_row_id + filename
                                          (`bigquery_staging.py`)
  <dataset>.<colour>_tripdata             PARTITION BY DATE(<pickup>), CLUSTER BY filename

A month's replace is ONE multi-statement transaction (`bigquery_replace.py`); the zone lookup is one
load job (`bigquery_reference.py`); dbt's profile and the reads of its models are in
`bigquery_dbt.py`, the lock between dbt builds in `bigquery_lock.py`; jobs' cost and errors in
`bigquery_jobs.py`. This module holds the clients, the names and the DDL, and the check queries.

The id is the one definition of `trip_id.py`, rendered by `bigquery_trip_id.bigquery_trip_id_sql`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import date
from typing import Any

from dagster_gcp import BigQueryResource

from taxi_platform.datasets import DatasetSpec, ReferenceSpec
from taxi_platform.lake.handles import LakeFile
from taxi_platform.partitions import next_month
from taxi_platform.settings import validate_identifier
from taxi_platform.warehouse import bigquery_dbt, bigquery_lock
from taxi_platform.warehouse.base import (
    IdProfile,
    IdSummary,
    Log,
    PickupProfile,
    ReferenceResult,
    ReplaceResult,
    StagingResult,
    TripWarehouse,
    WarehouseError,
    ZoneRevenue,
)
from taxi_platform.warehouse.bigquery_jobs import (
    BQ_TYPES,
    JobCost,
    checked_file_name,
    job_message,
    raise_if_over_budget,
)
from taxi_platform.warehouse.bigquery_reference import load_reference
from taxi_platform.warehouse.bigquery_replace import replace_month
from taxi_platform.warehouse.bigquery_staging import load_staging
from taxi_platform.warehouse.sql import bq_ident

STAGING_TABLE_EXPIRATION_MS = 7 * 24 * 3600 * 1000  # the staging dataset's tables: a week


class BigQueryWarehouse(TripWarehouse):
    """Trip tables in BigQuery; `bigquery` is dagster-gcp's resource (or a subclass of it)."""

    bigquery: BigQueryResource
    dataset: str = "taxi"
    staging_dataset: str = "taxi_staging"
    dbt_dataset: str = "taxi_dbt"
    # Every query job's maximum_bytes_billed (TAXI_BQ_MAX_BYTES_BILLED); the dbt profile's too.
    max_bytes_billed: int = 100 * 10**9
    # DuckDB's memory for a Parquet month's passes (it spills beyond; TAXI_ENGINE_MEMORY_MB).
    engine_memory: str = "128MB"

    # --- clients and names ---------------------------------------------------------------------
    @contextmanager
    def client(self, purpose: str) -> Iterator[Any]:
        from google.api_core import exceptions as gexc

        with self.bigquery.get_client() as client:
            try:
                yield client
            except gexc.GoogleAPICallError as exc:
                raise WarehouseError(f"{purpose} failed: {job_message(exc)}") from None

    def datasets(self) -> tuple[str, str]:
        return (
            validate_identifier(self.dataset, "TAXI_BQ_DATASET"),
            validate_identifier(self.staging_dataset, "TAXI_STAGING_SCHEMA"),
        )

    def table_ref(self, client: Any, dataset: str, table: str) -> str:
        """`project.dataset.table`, as the client's API calls take it."""
        return f"{client.project}.{dataset}.{table}"

    def quoted_table_ref(self, client: Any, dataset: str, table: str) -> str:
        """The table's reference backquoted, as SQL text takes it (the names are validated)."""
        return "`" + self.table_ref(client, dataset, table) + "`"

    def final_table(self, spec: DatasetSpec) -> str:
        project = self.bigquery.project
        name = f"{self.datasets()[0]}.{spec.table_name}"
        return f"{project}.{name}" if project else name

    def staging_table(self, spec: DatasetSpec, month: date) -> str:
        project = self.bigquery.project
        name = f"{self.datasets()[1]}.{self.month_table_name(spec, month)}"
        return f"{project}.{name}" if project else name

    @staticmethod
    def month_table_name(spec: DatasetSpec, month: date) -> str:
        return f"{spec.table_name}_{month:%Y_%m}"

    def ensure_datasets(self, client: Any) -> None:
        from google.cloud import bigquery

        final, staging = self.datasets()
        for dataset in (final, staging):
            ds = bigquery.Dataset(f"{client.project}.{dataset}")
            ds.location = self.bigquery.location or client.location
            ds = client.create_dataset(ds, exists_ok=True)
            # A month's staging table is needed until its replace (and a re-execution of it):
            # then it expires by itself, so no per-month table is left behind.
            if dataset == staging and ds.default_table_expiration_ms != STAGING_TABLE_EXPIRATION_MS:
                ds.default_table_expiration_ms = STAGING_TABLE_EXPIRATION_MS
                client.update_dataset(ds, ["default_table_expiration_ms"])

    @staticmethod
    def schema_fields(columns) -> list:
        from google.cloud import bigquery

        return [bigquery.SchemaField(c.name, BQ_TYPES[c.type]) for c in columns]

    def ensure_trip_tables(self, specs: Sequence[DatasetSpec]) -> None:
        with self.client("create the trip tables") as client:
            self.ensure_datasets(client)
            for spec in specs:
                self.ensure_final_table(client, spec)

    def ensure_final_table(self, client: Any, spec: DatasetSpec) -> str:
        """The final table, partitioned by pickup day and clustered by file (idempotent)."""
        from google.cloud import bigquery

        ref = self.table_ref(client, self.datasets()[0], spec.table_name)
        table = bigquery.Table(
            ref,
            schema=[
                bigquery.SchemaField("unique_row_id", "STRING", mode="REQUIRED"),
                bigquery.SchemaField("filename", "STRING", mode="REQUIRED"),
                *self.schema_fields(spec.columns),
            ],
        )
        table.time_partitioning = bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.DAY, field=spec.pickup_column
        )
        table.clustering_fields = ["filename"]
        existing = client.create_table(table, exists_ok=True)
        names = {f.name for f in existing.schema}
        if not {"unique_row_id", "filename", *spec.column_names} <= names:
            raise WarehouseError(
                f"{ref} exists without the columns unique_row_id, filename and the {spec.name} "
                "columns (not created by taxi_platform?): rename it, or set TAXI_BQ_DATASET to "
                "another dataset"
            )
        return ref

    def run_query(self, client: Any, sql: str, cost: JobCost, params: list | None = None) -> list:
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(
            query_parameters=params or [], maximum_bytes_billed=self.max_bytes_billed
        )
        job = client.query(sql, job_config=config)
        try:
            rows = list(job.result())
        except gexc.GoogleAPICallError as exc:
            raise_if_over_budget(exc, job, self.max_bytes_billed)
            raise
        finally:
            cost.add(job)
        return rows

    def estimate_bytes(self, client: Any, sql: str, params: list | None = None) -> int | None:
        """The bytes a statement would process, from a dry run (free); None when not reported."""
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(query_parameters=params or [], dry_run=True, use_query_cache=False)
        job = client.query(sql, job_config=config)
        value = getattr(job, "total_bytes_processed", None)
        return None if value is None else int(value)

    # --- staging and final (bigquery_staging.py, bigquery_replace.py) -------------------------
    def load_staging(
        self, spec: DatasetSpec, month: date, lake_file: LakeFile, log: Log, run_id: str = ""
    ) -> StagingResult:
        return load_staging(self, spec, month, lake_file, log, run_id)

    def replace_month(
        self, spec: DatasetSpec, month: date, log: Log, run_id: str = "", staged_sha256: str | None = None
    ) -> ReplaceResult:
        return replace_month(self, spec, month, log, run_id, staged_sha256)

    # --- the check queries ----------------------------------------------------------------------
    def _month_query(self, spec: DatasetSpec, month: date, select: str, params: list) -> tuple | None:
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery

        file_name = checked_file_name(spec.file_name(month))
        with self.client(f"check {file_name}") as client:
            ref = self.table_ref(client, self.datasets()[0], spec.table_name)
            try:
                client.get_table(ref)
            except gexc.NotFound:
                return None
            rows = self.run_query(
                client,
                f"SELECT {select} FROM `{ref}` WHERE filename = @file",
                JobCost(),
                [bigquery.ScalarQueryParameter("file", "STRING", file_name), *params],
            )
            return tuple(rows[0].values())

    def id_profile(self, spec: DatasetSpec, month: date) -> IdProfile:
        row = self._month_query(spec, month, "COUNT(*), COUNT(DISTINCT unique_row_id)", [])
        return IdProfile(*row) if row else IdProfile(rows=0, distinct_ids=0)

    def id_summary(self, spec: DatasetSpec, month: date) -> IdSummary | None:
        # The first 60 bits as two INT64 sums, 28 and 32 bits (20 M values of 60 bits would
        # overflow INT64, and NUMERIC is not exact on the emulator); joined here exactly.
        row = self._month_query(
            spec,
            month,
            "COUNT(*), COALESCE(SUM(CAST(CONCAT('0x', SUBSTR(unique_row_id, 1, 7)) AS INT64)), 0), "
            "COALESCE(SUM(CAST(CONCAT('0x', SUBSTR(unique_row_id, 8, 8)) AS INT64)), 0)",
            [],
        )
        if row is None or not row[0]:  # no table, or not this month: not loaded
            return None
        return IdSummary(rows=int(row[0]), id_sum=(int(row[1]) << 32) + int(row[2]))

    def pickup_profile(self, spec: DatasetSpec, month: date) -> PickupProfile:
        from google.cloud import bigquery

        pickup = bq_ident(spec.pickup_column)
        row = self._month_query(
            spec,
            month,
            f"COUNT(*), COUNTIF({pickup} >= @start AND {pickup} < @end)",
            [
                bigquery.ScalarQueryParameter("start", "TIMESTAMP", f"{month:%Y-%m-%d} 00:00:00"),
                bigquery.ScalarQueryParameter("end", "TIMESTAMP", f"{next_month(month):%Y-%m-%d} 00:00:00"),
            ],
        )
        return PickupProfile(*row) if row else PickupProfile(rows=0, in_month_rows=0)

    # --- reference tables and dbt --------------------------------------------------------------
    def load_reference(self, ref: ReferenceSpec, lake_file: LakeFile, log: Log) -> ReferenceResult:
        return load_reference(self, ref, lake_file, log)

    def dbt_model_figures(
        self, model: str, sums: Sequence[str], month_column: str | None = None, months: Sequence[date] = ()
    ) -> dict[date | None, tuple]:
        return bigquery_dbt.dbt_model_figures(self, model, sums, month_column, months)

    def top_pickup_zones(self, months: Sequence[date], limit: int = 10) -> list[ZoneRevenue]:
        return bigquery_dbt.top_pickup_zones(self, months, limit)

    def dbt_env(self) -> dict[str, str]:
        return bigquery_dbt.dbt_env(self)

    def dbt_build_lock(self) -> AbstractContextManager:
        """A lock table in the staging dataset, created atomically (bigquery_lock.py)."""
        return bigquery_lock.dbt_build_lock(self)
