"""PostgreSQL warehouse: embedded by default, external with TAXI_POSTGRES_URL.

Tables (schemas from settings):
  <staging>.<colour>_tripdata_<YYYY_MM>   the month's rows as staged, shaped like a partition of
                                          the final table, until the swap attaches it
  <warehouse>.<colour>_tripdata           partitioned BY LIST (filename): one partition per month,
                                          <warehouse>.<colour>_tripdata_<YYYY_MM>

The month's load and swap are in `postgres_month.py` (the rows cross to the server once, in one
COPY fed by the ingest engine); this module holds the connection, the names and the DDL, the
check queries, the reference tables and dbt's connection.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from taxi_platform.datasets import ColumnType, DatasetSpec, ReferenceSpec
from taxi_platform.lake.base import LakeFile
from taxi_platform.partitions import next_month
from taxi_platform.redact import Redactor, url_password
from taxi_platform.settings import validate_identifier
from taxi_platform.warehouse.base import (
    BadInputError,
    ConnectionLostError,
    IdProfile,
    IdSummary,
    Log,
    PickupProfile,
    ReferenceResult,
    ReplaceResult,
    StagingResult,
    TripWarehouse,
    WarehouseError,
)
from taxi_platform.warehouse.embedded import EmbeddedPostgres
from taxi_platform.warehouse.postgres_month import LOCK_NAMESPACE, copy_error_message, stage_month, swap_month
from taxi_platform.warehouse.postgres_parquet import stage_parquet_month

PG_TYPES = {
    ColumnType.INTEGER: "integer",
    ColumnType.TIMESTAMP: "timestamp",
    ColumnType.DECIMAL: "numeric",
    ColumnType.TEXT: "text",
    ColumnType.DOUBLE: "double precision",
}
COPY_CHUNK = 1 << 20


def month_suffix(month: date) -> str:
    return f"{month:%Y_%m}"


class PostgresWarehouse(TripWarehouse):
    """Trip tables in PostgreSQL (the embedded server under `home` unless `url` is set)."""

    url: str | None = None  # pass as EnvVar("TAXI_POSTGRES_URL"): the UI then shows no secret
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

    @contextmanager
    def connect(self, purpose: str) -> Iterator[psycopg2.extensions.connection]:
        """A connection in a transaction; committed on success, rolled back and closed always."""
        conn = self._open_connection(purpose)
        try:
            yield conn
            conn.commit()
        except psycopg2.Error as exc:
            self._rollback(conn)
            if _is_lost(conn, exc):
                raise self._connection_lost(purpose, exc) from None
            raise WarehouseError(f"{purpose} failed: {self.redactor()(str(exc)).strip()}") from None
        except BaseException:
            self._rollback(conn)
            raise
        finally:
            conn.close()

    def _connection_lost(self, purpose: str, exc: psycopg2.Error) -> ConnectionLostError:
        return ConnectionLostError(
            f"lost the connection to PostgreSQL during {purpose}; nothing of it was committed "
            f"(the previous rows are intact): {self.redactor()(str(exc)).strip()}"
        )

    def _open_connection(self, purpose: str) -> psycopg2.extensions.connection:
        try:
            return psycopg2.connect(
                self.connection_url(), connect_timeout=15, application_name=f"taxi_platform:{purpose}"[:63]
            )
        except psycopg2.Error as exc:
            raise WarehouseError(
                f"cannot connect to PostgreSQL: {self.redactor()(str(exc)).strip()}"
            ) from None

    @staticmethod
    def _rollback(conn) -> None:
        try:
            if not conn.closed:
                conn.rollback()
        except psycopg2.Error:
            pass

    # --- names --------------------------------------------------------------------------------
    def _schemas(self) -> tuple[str, str]:
        return (
            validate_identifier(self.warehouse_schema, "TAXI_WAREHOUSE_SCHEMA"),
            validate_identifier(self.staging_schema, "TAXI_STAGING_SCHEMA"),
        )

    def _final(self, spec: DatasetSpec) -> sql.Composed:
        return sql.Identifier(self._schemas()[0], spec.table_name)

    def _partition(self, spec: DatasetSpec, month: date) -> sql.Composed:
        return sql.Identifier(self._schemas()[0], f"{spec.table_name}_{month_suffix(month)}")

    def _staging(self, spec: DatasetSpec, month: date) -> sql.Composed:
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

    @staticmethod
    def _csv_columns(spec: DatasetSpec) -> sql.Composed:
        """The columns of the course's CSV files, in file order: the COPY's column list."""
        return sql.SQL(", ").join(sql.Identifier(c) for c in spec.csv_columns)

    @staticmethod
    def _column_defs(spec: DatasetSpec) -> sql.Composed:
        return sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(PG_TYPES[c.type])) for c in spec.columns
        )

    # --- DDL ----------------------------------------------------------------------------------
    def _setup(self, cur, spec: DatasetSpec) -> None:
        """Schemas and the partitioned final table (idempotent)."""
        warehouse, staging = self._schemas()
        cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext('setup'))", (LOCK_NAMESPACE,))
        for schema in (warehouse, staging):
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        cur.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (unique_row_id text NOT NULL, filename text NOT NULL, {}) "
                "PARTITION BY LIST (filename)"
            ).format(self._final(spec), self._column_defs(spec))
        )
        cur.execute(
            "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            (warehouse, spec.table_name),
        )
        if cur.fetchone()[0] != "p":
            raise WarehouseError(
                f"{warehouse}.{spec.table_name} exists but is not partitioned by file (not created by "
                "taxi_platform?): rename it, or set TAXI_WAREHOUSE_SCHEMA to another schema"
            )
        # A table created by an older version lacks the columns of later eras: added (NULL, no
        # rewrite: a nullable column without a default is a catalog change).
        cur.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            (warehouse, spec.table_name),
        )
        present = {name for (name,) in cur.fetchall()}
        for column in spec.columns:
            if column.name not in present:
                cur.execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                        self._final(spec), sql.Identifier(column.name), sql.SQL(PG_TYPES[column.type])
                    )
                )

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
        era = {}
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
            **era,
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

    def _month_query(self, spec: DatasetSpec, month: date, select: str, params=()) -> tuple:
        """Run `SELECT <select> FROM <partition>`; None when the month was never loaded."""
        with self.connect(f"check {spec.file_name(month)}") as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT to_regclass(%s)", (f"{self._schemas()[0]}.{spec.table_name}_{month_suffix(month)}",)
            )
            if cur.fetchone()[0] is None:
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
        started = time.monotonic()
        warehouse = self._schemas()[0]
        table = sql.Identifier(warehouse, ref.name)
        columns = sql.SQL(", ").join(sql.Identifier(c.name) for c in ref.columns)
        with self.connect(f"load {ref.file_name}") as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(warehouse)))
            cur.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))").format(
                    table,
                    sql.SQL(", ").join(
                        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(PG_TYPES[c.type]))
                        for c in ref.columns
                    ),
                    sql.Identifier(ref.key_column),
                )
            )
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
            previous = cur.fetchone()[0]
            # TRUNCATE + COPY in one transaction: readers see the old rows or the new ones.
            cur.execute(sql.SQL("TRUNCATE {}").format(table))
            with lake_file.open() as fh:
                try:
                    cur.copy_expert(
                        sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true)")
                        .format(table, columns)
                        .as_string(conn),
                        fh,
                        size=COPY_CHUNK,
                    )
                except (
                    psycopg2.DataError,
                    psycopg2.IntegrityError,
                    psycopg2.errors.BadCopyFileFormat,
                ) as exc:
                    raise BadInputError(copy_error_message(ref.file_name, exc)) from None
            rows = cur.rowcount
        log(f"{ref.file_name}: {rows:,} rows in {warehouse}.{ref.name}")
        return ReferenceResult(
            table=f"{warehouse}.{ref.name}",
            rows=rows,
            previous_rows=previous,
            seconds=time.monotonic() - started,
        )

    def dbt_model_figures(
        self, model: str, sums: Sequence[str], month_column: str | None = None, months: Sequence[date] = ()
    ) -> dict[date | None, tuple]:
        table = sql.Identifier(
            validate_identifier(self.dbt_schema, "TAXI_DBT_SCHEMA"), validate_identifier(model, "dbt model")
        )
        figures = sql.SQL("").join(
            sql.SQL(", sum({})").format(sql.Identifier(validate_identifier(c, "dbt model column")))
            for c in sums
        )
        if month_column is None:
            query, params = sql.SQL("SELECT NULL, count(*){} FROM {}").format(figures, table), ()
        else:
            month = sql.Identifier(validate_identifier(month_column, "dbt model column"))
            query = sql.SQL("SELECT {m}, count(*){f} FROM {t} WHERE {m} = ANY(%s) GROUP BY 1").format(
                m=month, f=figures, t=table
            )
            params = (list(months),)
        with self.connect(f"read {model}") as conn, conn.cursor() as cur:
            cur.execute(query, params)
            return {row[0]: tuple(row[1:]) for row in cur.fetchall()}

    @contextmanager
    def dbt_build_lock(self) -> Iterator[None]:
        """A session advisory lock, held on its own connection while dbt runs in a subprocess."""
        with self.connect("dbt build lock") as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT pg_advisory_lock(%s, hashtext(%s))", (LOCK_NAMESPACE, f"dbt:{self.dbt_schema}")
            )
            try:
                yield
            finally:
                cur.execute(
                    "SELECT pg_advisory_unlock(%s, hashtext(%s))", (LOCK_NAMESPACE, f"dbt:{self.dbt_schema}")
                )

    def dbt_env(self) -> dict[str, str]:
        url = urlsplit(self.connection_url())
        return {
            "TAXI_DBT_TARGET": "postgres",
            "TAXI_DBT_PG_HOST": url.hostname or "127.0.0.1",
            "TAXI_DBT_PG_PORT": str(url.port or 5432),
            "TAXI_DBT_PG_USER": unquote(url.username or ""),
            "TAXI_DBT_PG_PASSWORD": unquote(url.password or ""),
            "TAXI_DBT_PG_DBNAME": unquote(url.path.lstrip("/")) or "postgres",
            "TAXI_WAREHOUSE_SCHEMA": self._schemas()[0],
            "TAXI_DBT_SCHEMA": validate_identifier(self.dbt_schema, "TAXI_DBT_SCHEMA"),
        }


def _is_lost(conn, exc: psycopg2.Error) -> bool:
    """Whether `exc` means the connection is gone (server shut it down, or it broke)."""
    return isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) and (
        conn.closed or isinstance(exc, psycopg2.errors.AdminShutdown)
    )
