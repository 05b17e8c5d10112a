"""PostgreSQL warehouse: embedded by default, external with TAXI_POSTGRES_URL.

Tables (schemas from settings):
  <staging>.<colour>_tripdata_<YYYY_MM>   one UNLOGGED table per month: file columns + unique_row_id
                                          (generated column: computed by the COPY itself),
                                          filename (default), source_row (file order)
  <warehouse>.<colour>_tripdata           partitioned BY LIST (filename): one partition per month,
                                          <warehouse>.<colour>_tripdata_<YYYY_MM>

A month's replace is one transaction: TRUNCATE its partition and INSERT the distinct staged trips.
Readers see the old rows or the new ones; a failure rolls back to the old ones; other months'
partitions are not touched. Advisory locks serialise two loads of the same month.
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlsplit

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from taxi_platform.datasets import ColumnType, DatasetSpec, ReferenceSpec
from taxi_platform.lake.base import LakeFile
from taxi_platform.partitions import next_month
from taxi_platform.redact import Redactor, url_password
from taxi_platform.settings import validate_identifier
from taxi_platform.source.gzip_stream import DecompressingReader
from taxi_platform.trip_id import postgres_trip_id_sql
from taxi_platform.warehouse.base import (
    BadInputError,
    ConnectionLostError,
    Log,
    IdProfile,
    PickupProfile,
    ReferenceResult,
    ReplaceResult,
    StagingResult,
    TripWarehouse,
    WarehouseError,
)
from taxi_platform.warehouse.embedded import EmbeddedPostgres

PG_TYPES = {
    ColumnType.INTEGER: "integer",
    ColumnType.TIMESTAMP: "timestamp",
    ColumnType.DECIMAL: "numeric",
    ColumnType.TEXT: "text",
}
TS_FUNCTION = "taxi_timestamp_text"
LOCK_NAMESPACE = 0x7A11  # first key of every advisory lock we take
COPY_CHUNK = 1 << 20
PROGRESS_EVERY_SECONDS = 10.0


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
    def connect(self, purpose: str) -> Iterator["psycopg2.extensions.connection"]:
        """A connection in a transaction; committed on success, rolled back and closed always."""
        redact = self.redactor()
        try:
            conn = psycopg2.connect(self.connection_url(), connect_timeout=15,
                                    application_name=f"taxi_platform:{purpose}"[:63])
        except psycopg2.Error as exc:
            raise WarehouseError(f"cannot connect to PostgreSQL: {redact(str(exc)).strip()}") from None
        redact = self.redactor()  # the embedded password exists now
        try:
            yield conn
            conn.commit()
        except psycopg2.Error as exc:
            self._rollback(conn)
            lost = conn.closed or isinstance(exc, psycopg2.errors.AdminShutdown)
            if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) and lost:
                raise ConnectionLostError(
                    f"lost the connection to PostgreSQL during {purpose}; nothing of it was committed "
                    f"(the previous rows are intact): {redact(str(exc)).strip()}"
                ) from None
            raise WarehouseError(f"{purpose} failed: {redact(str(exc)).strip()}") from None
        except BaseException:
            self._rollback(conn)
            raise
        finally:
            conn.close()

    @staticmethod
    def _rollback(conn) -> None:
        try:
            if not conn.closed:
                conn.rollback()
        except psycopg2.Error:
            pass

    # --- names --------------------------------------------------------------------------------
    def _schemas(self) -> tuple[str, str]:
        return (validate_identifier(self.warehouse_schema, "TAXI_WAREHOUSE_SCHEMA"),
                validate_identifier(self.staging_schema, "TAXI_STAGING_SCHEMA"))

    def _final(self, spec: DatasetSpec) -> sql.Composed:
        return sql.Identifier(self._schemas()[0], spec.table_name)

    def _partition(self, spec: DatasetSpec, month: date) -> sql.Composed:
        return sql.Identifier(self._schemas()[0], f"{spec.table_name}_{month_suffix(month)}")

    def _staging(self, spec: DatasetSpec, month: date) -> sql.Composed:
        return sql.Identifier(self._schemas()[1], f"{spec.table_name}_{month_suffix(month)}")

    def final_table(self, spec: DatasetSpec) -> str:
        return f"{self._schemas()[0]}.{spec.table_name}"

    def staging_table(self, spec: DatasetSpec, month: date) -> str:
        return f"{self._schemas()[1]}.{spec.table_name}_{month_suffix(month)}"

    @staticmethod
    def _columns(spec: DatasetSpec) -> sql.Composed:
        return sql.SQL(", ").join(sql.Identifier(c) for c in spec.column_names)

    @staticmethod
    def _column_defs(spec: DatasetSpec) -> sql.Composed:
        return sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(PG_TYPES[c.type]))
            for c in spec.columns
        )

    # --- DDL ----------------------------------------------------------------------------------
    def _setup(self, cur, spec: DatasetSpec) -> None:
        """Schemas, the id helper function and the partitioned final table (idempotent)."""
        warehouse, staging = self._schemas()
        cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext('setup'))", (LOCK_NAMESPACE,))
        for schema in (warehouse, staging):
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        cur.execute("SELECT to_regprocedure(%s)", (f"{staging}.{TS_FUNCTION}(timestamp)",))
        if cur.fetchone()[0] is None:
            # to_char is only STABLE; with this fixed, locale-free format it is immutable, which a
            # generated column (computed during COPY) requires.
            cur.execute(sql.SQL(
                "CREATE FUNCTION {}(timestamp) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE "
                "AS $$ SELECT to_char($1, 'YYYY-MM-DD HH24:MI:SS') $$"
            ).format(sql.Identifier(staging, TS_FUNCTION)))
        cur.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (unique_row_id text NOT NULL, filename text NOT NULL, {}) "
            "PARTITION BY LIST (filename)"
        ).format(self._final(spec), self._column_defs(spec)))
        cur.execute("SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relname = %s", (warehouse, spec.table_name))
        if cur.fetchone()[0] != "p":
            raise WarehouseError(
                f"{warehouse}.{spec.table_name} exists but is not partitioned by file (not created by "
                "taxi_platform?): rename it, or set TAXI_WAREHOUSE_SCHEMA to another schema"
            )

    # --- staging ------------------------------------------------------------------------------
    def load_staging(self, spec: DatasetSpec, month: date, lake_file: LakeFile, log: Log) -> StagingResult:
        started = time.monotonic()
        file_name = spec.file_name(month)
        staging = self._staging(spec, month)
        id_sql = postgres_trip_id_sql(
            spec, ts_function=f'"{self._schemas()[1]}"."{TS_FUNCTION}"')
        with self.connect(f"staging {file_name}") as conn, conn.cursor() as cur:
            self._setup(cur, spec)
            conn.commit()
            cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                        (LOCK_NAMESPACE, f"staging:{file_name}"))
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(staging))
            # UNLOGGED and created in this transaction: the COPY writes no WAL.
            cur.execute(sql.SQL(
                "CREATE UNLOGGED TABLE {} ({}, "
                "unique_row_id text GENERATED ALWAYS AS ({}) STORED, "
                "filename text NOT NULL DEFAULT {}, "
                "source_row bigint GENERATED ALWAYS AS IDENTITY)"
            ).format(staging, self._column_defs(spec), sql.SQL(id_sql), sql.Literal(file_name)))
            header = "MATCH" if conn.server_version >= 150000 else "true"
            copy = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER {})").format(
                staging, self._columns(spec), sql.SQL(header)).as_string(conn)
            reader = DecompressingReader(lake_file.open(), on_progress=_progress_logger(file_name, log))
            try:
                cur.copy_expert(copy, reader, size=COPY_CHUNK)
            except psycopg2.Error as exc:
                if reader.error is not None:
                    raise BadInputError(f"{file_name}: {reader.error}") from None
                if isinstance(exc, (psycopg2.DataError, psycopg2.errors.BadCopyFileFormat)):
                    raise BadInputError(_copy_error_message(file_name, exc)) from None
                raise
            rows = cur.rowcount
        log(f"{file_name}: {rows:,} rows staged in {self.staging_table(spec, month)}")
        return StagingResult(table=self.staging_table(spec, month), rows=rows,
                             seconds=time.monotonic() - started)

    # --- final --------------------------------------------------------------------------------
    def replace_month(self, spec: DatasetSpec, month: date, log: Log) -> ReplaceResult:
        started = time.monotonic()
        file_name = spec.file_name(month)
        staging, partition = self._staging(spec, month), self._partition(spec, month)
        with self.connect(f"replace {file_name}") as conn, conn.cursor() as cur:
            self._setup(cur, spec)
            conn.commit()
            cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                        (LOCK_NAMESPACE, f"final:{file_name}"))
            cur.execute("SELECT to_regclass(%s)", (self.staging_table(spec, month),))
            if cur.fetchone()[0] is None:
                raise WarehouseError(
                    f"no staging table {self.staging_table(spec, month)}: materialize the "
                    f"{spec.name} staging asset for {month:%Y-%m} first")
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(staging))
            staged = cur.fetchone()[0]
            if staged == 0:
                raise WarehouseError(
                    f"staging table {self.staging_table(spec, month)} is empty (an UNLOGGED table "
                    "is emptied by a server crash): re-materialize the staging asset for this month")
            cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES IN ({})")
                        .format(partition, self._final(spec), sql.Literal(file_name)))
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(partition))
            previous = cur.fetchone()[0]
            cur.execute(sql.SQL("TRUNCATE {}").format(partition))
            # First occurrence in file order wins among rows sharing an id.
            cur.execute(sql.SQL(
                "INSERT INTO {part} (unique_row_id, filename, {cols}) "
                "SELECT DISTINCT ON (unique_row_id) unique_row_id, filename, {cols} FROM {stg} "
                "ORDER BY unique_row_id, source_row"
            ).format(part=partition, cols=self._columns(spec), stg=staging))
            final_rows = cur.rowcount
            cur.execute(sql.SQL("ANALYZE {}").format(partition))
        log(f"{file_name}: {final_rows:,} trips in {self.final_table(spec)} "
            f"({staged - final_rows:,} duplicates dropped, {previous:,} rows replaced)")
        return ReplaceResult(table=self.final_table(spec), staged_rows=staged, final_rows=final_rows,
                             previous_rows=previous, seconds=time.monotonic() - started)

    def _month_query(self, spec: DatasetSpec, month: date, select: str, params=()) -> tuple:
        """Run `SELECT <select> FROM <partition>`; None when the month was never loaded."""
        with self.connect(f"check {spec.file_name(month)}") as conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)",
                        (f"{self._schemas()[0]}.{spec.table_name}_{month_suffix(month)}",))
            if cur.fetchone()[0] is None:
                return None
            cur.execute(sql.SQL("SELECT {} FROM {}").format(
                sql.SQL(select).format(pickup=sql.Identifier(spec.pickup_column)),
                self._partition(spec, month)), params)
            return cur.fetchone()

    def id_profile(self, spec: DatasetSpec, month: date) -> IdProfile:
        row = self._month_query(spec, month, "count(*), count(DISTINCT unique_row_id)")
        return IdProfile(*row) if row else IdProfile(rows=0, distinct_ids=0)

    def pickup_profile(self, spec: DatasetSpec, month: date) -> PickupProfile:
        row = self._month_query(
            spec, month, "count(*), count(*) FILTER (WHERE {pickup} >= %s AND {pickup} < %s)",
            (month, next_month(month)))
        return PickupProfile(*row) if row else PickupProfile(rows=0, in_month_rows=0)

    # --- reference tables and dbt --------------------------------------------------------------
    def load_reference(self, ref: ReferenceSpec, lake_file: LakeFile, log: Log) -> ReferenceResult:
        started = time.monotonic()
        warehouse = self._schemas()[0]
        table = sql.Identifier(warehouse, ref.name)
        columns = sql.SQL(", ").join(sql.Identifier(c.name) for c in ref.columns)
        with self.connect(f"load {ref.file_name}") as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(warehouse)))
            cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))").format(
                table,
                sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(PG_TYPES[c.type]))
                                   for c in ref.columns),
                sql.Identifier(ref.key_column)))
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
            previous = cur.fetchone()[0]
            # TRUNCATE + COPY in one transaction: readers see the old rows or the new ones.
            cur.execute(sql.SQL("TRUNCATE {}").format(table))
            with lake_file.open() as fh:
                try:
                    cur.copy_expert(sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true)")
                                    .format(table, columns).as_string(conn), fh, size=COPY_CHUNK)
                except (psycopg2.DataError, psycopg2.IntegrityError,
                        psycopg2.errors.BadCopyFileFormat) as exc:
                    raise BadInputError(_copy_error_message(ref.file_name, exc)) from None
            rows = cur.rowcount
        log(f"{ref.file_name}: {rows:,} rows in {warehouse}.{ref.name}")
        return ReferenceResult(table=f"{warehouse}.{ref.name}", rows=rows, previous_rows=previous,
                               seconds=time.monotonic() - started)

    @contextmanager
    def dbt_build_lock(self) -> Iterator[None]:
        """A session advisory lock, held on its own connection while dbt runs in a subprocess."""
        with self.connect("dbt build lock") as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s, hashtext(%s))",
                        (LOCK_NAMESPACE, f"dbt:{self.dbt_schema}"))
            try:
                yield
            finally:
                cur.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))",
                            (LOCK_NAMESPACE, f"dbt:{self.dbt_schema}"))

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


_CONTEXT = re.compile(r"line (\d+)(?:, column (\w+))?")


def _copy_error_message(file_name: str, exc: psycopg2.Error) -> str:
    """`yellow_tripdata_2019-01.csv.gz line 5, column fare_amount: invalid input syntax ...`"""
    primary = (exc.diag.message_primary or str(exc)).strip()
    match = _CONTEXT.search(exc.diag.context or "")
    if not match:
        return f"{file_name}: {primary}"
    where = f"line {match.group(1)}" + (f", column {match.group(2)}" if match.group(2) else "")
    return f"{file_name} {where}: {primary}"


def _progress_logger(file_name: str, log: Log):
    state = {"last": time.monotonic()}

    def report(reader: DecompressingReader) -> None:
        now = time.monotonic()
        if now - state["last"] >= PROGRESS_EVERY_SECONDS:
            state["last"] = now
            log(f"{file_name}: {reader.bytes_out / 1e6:,.0f} MB loaded, about "
                f"{max(reader.newlines - 1, 0):,} rows")

    return report
