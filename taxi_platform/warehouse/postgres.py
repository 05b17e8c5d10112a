"""PostgreSQL warehouse: embedded by default, external with TAXI_POSTGRES_URL.

Tables (schemas from settings):
  <staging>.<colour>_tripdata_<YYYY_MM>   the month's rows as staged, shaped like a partition of
                                          the final table, until the swap attaches it
  <warehouse>.<colour>_tripdata           partitioned BY LIST (filename): one partition per month,
                                          <warehouse>.<colour>_tripdata_<YYYY_MM>

The month's load and swap are in `postgres_month.py` (the rows cross to the server once, in one
COPY fed by the ingest engine), the tables' DDL in `postgres_ddl.py`, the zone lookup's load in
`postgres_reference.py`, what dbt gets and what is read back from its models in `postgres_dbt.py`;
this module holds the connection, the names and the check queries.
"""

# No `from __future__ import annotations`: Dagster reads the `dg.ResourceDependency` annotations
# as objects when the class is created (as strings, pydantic would refuse every value).

import os
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import date
from pathlib import Path

import dagster as dg
import psycopg2
import psycopg2.errors
from psycopg2 import sql
from pydantic import Field

from taxi_platform.datasets import ColumnType, DatasetSpec, ReferenceSpec
from taxi_platform.lake.handles import LakeFile
from taxi_platform.partitions import next_month
from taxi_platform.redact import Redactor, url_password
from taxi_platform.settings import validate_identifier
from taxi_platform.warehouse import postgres_dbt
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
from taxi_platform.warehouse.embedded.server import EmbeddedPostgres
from taxi_platform.warehouse.postgres_connection import transaction
from taxi_platform.warehouse.postgres_ddl import PG_TYPES, setup_trip_table
from taxi_platform.warehouse.postgres_month import LOCK_NAMESPACE, stage_month, swap_month
from taxi_platform.warehouse.postgres_parquet import stage_parquet_month
from taxi_platform.warehouse.postgres_reference import load_reference
from taxi_platform.warehouse.sql import one_row


def month_suffix(month: date) -> str:
    return f"{month:%Y_%m}"


class PostgresWarehouse(TripWarehouse):
    """Trip tables in PostgreSQL (the embedded server under `home` unless `url` is set)."""

    # A secret: a dependency, not config, so the UI and the job snapshots never hold it
    # (taxi_platform/resources.py says why).
    url: dg.ResourceDependency[str | None] = Field(default=None, repr=False)  # type: ignore[arg-type]  # None: no secret
    home: str = ""
    embedded_port: int = 0
    warehouse_schema: str = "taxi"
    staging_schema: str = "taxi_staging"
    dbt_schema: str = "taxi_dbt"
    # The ingest engine's memory for the file's ids (DuckDB spills to TAXI_HOME past it).
    engine_memory: str = "128MB"

    # --- connection ---------------------------------------------------------------------------
    def _embedded(self) -> EmbeddedPostgres:
        return EmbeddedPostgres(Path(self.home) / "postgres", port=self.embedded_port)

    def connection_url(self) -> str:
        if self.url:
            return self.url
        if not self.home:
            raise WarehouseError("no TAXI_POSTGRES_URL and no TAXI_HOME for the embedded PostgreSQL")
        return self._embedded().ensure_running()

    def redactor(self) -> Redactor:
        secrets = [url_password(self.url)]
        if not self.url and self.home:
            try:
                secrets.append(url_password(self._embedded().url()))
            except OSError:
                pass  # not initialised yet: no password exists
        return Redactor(secrets)

    def connect(self, purpose: str) -> AbstractContextManager[psycopg2.extensions.connection]:
        """A connection in a transaction; committed on success, rolled back and closed always."""
        # The URL first: starting the embedded server is not a connection error. The redactor is
        # built on an error only (it reads the embedded server's password).
        return transaction(self.connection_url(), purpose, lambda text: self.redactor()(text))

    # --- names --------------------------------------------------------------------------------
    def _schemas(self) -> tuple[str, str]:
        return (
            validate_identifier(self.warehouse_schema, "TAXI_WAREHOUSE_SCHEMA"),
            validate_identifier(self.staging_schema, "TAXI_STAGING_SCHEMA"),
        )

    def _final(self, spec: DatasetSpec) -> sql.Identifier:
        return sql.Identifier(self._schemas()[0], spec.table_name)

    def _partition(self, spec: DatasetSpec, month: date) -> sql.Identifier:
        return sql.Identifier(self._schemas()[0], f"{spec.table_name}_{month_suffix(month)}")

    def _staging(self, spec: DatasetSpec, month: date) -> sql.Identifier:
        return sql.Identifier(self._schemas()[1], f"{spec.table_name}_{month_suffix(month)}")

    @staticmethod
    def month_table_name(spec: DatasetSpec, month: date) -> str:
        return f"{spec.table_name}_{month_suffix(month)}"

    def warehouse_schema_name(self) -> str:
        return self._schemas()[0]

    def staging_schema_name(self) -> str:
        return self._schemas()[1]

    @staticmethod
    def pg_type(type_: ColumnType) -> str:
        return PG_TYPES[type_]

    def engine_spill_dir(self) -> str | None:
        """Where the engine spills (TAXI_HOME/engine), or the system's temporary folder."""
        if not self.home:
            return None
        path = Path(self.home) / "engine"
        os.makedirs(path, exist_ok=True)
        return str(path)

    def final_table(self, spec: DatasetSpec) -> str:
        return f"{self._schemas()[0]}.{spec.table_name}"

    def staging_table(self, spec: DatasetSpec, month: date) -> str:
        return f"{self._schemas()[1]}.{spec.table_name}_{month_suffix(month)}"

    # --- DDL ----------------------------------------------------------------------------------
    def _setup(self, cur, spec: DatasetSpec) -> None:
        """Schemas and the partitioned final table (idempotent)."""
        setup_trip_table(cur, spec, *self._schemas(), lock_namespace=LOCK_NAMESPACE)

    def ensure_trip_tables(self, specs: Sequence[DatasetSpec]) -> None:
        with self.connect("create the trip tables") as conn, conn.cursor() as cur:
            for spec in specs:
                self._setup(cur, spec)

    # --- staging and final -------------------------------------------------------------------
    def load_staging(
        self, spec: DatasetSpec, month: date, lake_file: LakeFile, log: Log, run_id: str = ""
    ) -> StagingResult:
        started = time.monotonic()
        file_name = spec.file_name(month)
        era: dict[str, str] = {}
        with self.connect(f"staging {file_name}") as conn, conn.cursor() as cur:
            self._setup(cur, spec)
            conn.commit()
            if spec.file_extension == "parquet":
                staged, found = stage_parquet_month(self, spec, month, lake_file, run_id, log)
                era = {"schema_era": found.q.era.name, "schema_fingerprint": found.schema.fingerprint}
            else:
                staged = stage_month(self, cur, spec, month, lake_file, run_id, log)
        log(
            f"{file_name}: {staged.read:,} rows read, {staged.read - staged.rows:,} duplicates dropped, "
            f"{staged.rows:,} rows staged in {self.staging_table(spec, month)}"
        )
        return StagingResult(
            table=self.staging_table(spec, month),
            rows=staged.rows,
            seconds=time.monotonic() - started,
            rows_read=staged.read,
            sha256=staged.sha256,
            schema_era=era.get("schema_era"),
            schema_fingerprint=era.get("schema_fingerprint"),
        )

    def replace_month(
        self, spec: DatasetSpec, month: date, log: Log, run_id: str = "", staged_sha256: str | None = None
    ) -> ReplaceResult:
        started = time.monotonic()
        file_name = spec.file_name(month)
        with self.connect(f"replace {file_name}") as conn, conn.cursor() as cur:
            self._setup(cur, spec)
            conn.commit()
            swapped = swap_month(self, conn, spec, month, run_id, staged_sha256, log)
        staged = swapped.staged
        if not swapped.swapped:
            log(
                f"{file_name}: the rows staged by run {staged.run_id or '?'} are attached already "
                f"(another load of the month swapped them in); nothing left to swap"
            )
        log(
            f"{file_name}: {staged.rows:,} trips in {self.final_table(spec)} "
            f"({staged.read - staged.rows:,} duplicates dropped, {swapped.previous_rows:,} rows replaced)"
        )
        # The engine grouped every id of the file (`distinct`); the server counted the rows it
        # kept (`rows`): a difference is a duplicate left in the table, and fails the check.
        return ReplaceResult(
            table=self.final_table(spec),
            staged_rows=staged.read,
            final_rows=staged.rows,
            previous_rows=swapped.previous_rows,
            seconds=time.monotonic() - started,
            ids=IdProfile(rows=staged.rows, distinct_ids=min(staged.distinct, staged.rows)),
            pickups=None
            if staged.in_month is None
            else PickupProfile(rows=staged.rows, in_month_rows=staged.in_month),
            sha256=staged.sha256,
            staged_by_run=staged.run_id or None,
        )

    def _month_query(self, spec: DatasetSpec, month: date, select: str, params=()) -> tuple | None:
        """Run `SELECT <select> FROM <partition>`; None when the month was never loaded."""
        with self.connect(f"check {spec.file_name(month)}") as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT to_regclass(%s)", (f"{self._schemas()[0]}.{spec.table_name}_{month_suffix(month)}",)
            )
            if one_row(cur)[0] is None:
                return None
            cur.execute(
                sql.SQL("SELECT {} FROM {}").format(
                    sql.SQL(select).format(pickup=sql.Identifier(spec.pickup_column)),
                    self._partition(spec, month),
                ),
                params,
            )
            return cur.fetchone()

    def id_profile(self, spec: DatasetSpec, month: date) -> IdProfile:
        row = self._month_query(spec, month, "count(*), count(DISTINCT unique_row_id)")
        return IdProfile(*row) if row else IdProfile(rows=0, distinct_ids=0)

    def id_summary(self, spec: DatasetSpec, month: date) -> IdSummary | None:
        row = self._month_query(
            spec, month, "count(*), coalesce(sum(('x' || substr(unique_row_id, 1, 15))::bit(60)::bigint), 0)"
        )
        return None if row is None else IdSummary(rows=int(row[0]), id_sum=int(row[1]))

    def pickup_profile(self, spec: DatasetSpec, month: date) -> PickupProfile:
        row = self._month_query(
            spec,
            month,
            "count(*), count(*) FILTER (WHERE {pickup} >= %s AND {pickup} < %s)",
            (month, next_month(month)),
        )
        return PickupProfile(*row) if row else PickupProfile(rows=0, in_month_rows=0)

    # --- reference tables and dbt --------------------------------------------------------------
    def load_reference(self, ref: ReferenceSpec, lake_file: LakeFile, log: Log) -> ReferenceResult:
        return load_reference(self, ref, lake_file, log)

    def dbt_model_figures(
        self, model: str, sums: Sequence[str], month_column: str | None = None, months: Sequence[date] = ()
    ) -> dict[date | None, tuple]:
        return postgres_dbt.dbt_model_figures(self, model, sums, month_column, months)

    def top_pickup_zones(self, months: Sequence[date], limit: int = 10) -> list[ZoneRevenue]:
        return postgres_dbt.top_pickup_zones(self, months, limit)

    def dbt_build_lock(self) -> AbstractContextManager:
        return postgres_dbt.dbt_build_lock(self)

    def dbt_env(self) -> dict[str, str]:
        return postgres_dbt.dbt_env(self)
