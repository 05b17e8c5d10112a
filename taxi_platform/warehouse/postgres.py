"""PostgreSQL warehouse: embedded by default, external with TAXI_POSTGRES_URL.

Tables (schemas from settings):
  <staging>.<colour>_tripdata_<YYYY_MM>   one UNLOGGED table per month: file columns + unique_row_id
                                          (generated column: computed by the COPY itself), filename
                                          (virtual on PostgreSQL 18), source_part + source_row (the
                                          file order)
  <warehouse>.<colour>_tripdata           partitioned BY LIST (filename): one partition per month,
                                          <warehouse>.<colour>_tripdata_<YYYY_MM>

Staging replaces the month's table atomically: a small file is one transaction (DROP, CREATE, COPY
FREEZE); a large one loads as parts through parallel COPY streams into a new table that replaces
the old one in one short transaction at the end (see `copy_split`).

A month's replace is one transaction: the distinct staged trips (the first occurrence of each id in
file order) fill a new table, which then takes the place of the month's partition (DETACH the old,
ATTACH the new: milliseconds under the parent's lock, no scan thanks to a CHECK on filename).
Readers see the old rows or the new ones and are not blocked while the new ones are written; a
failure rolls back to the old ones; other months' partitions are not touched. Advisory locks
serialise two loads of the same month.

Performance (bench/RESULTS.md): the id is computed by the COPY itself (no second pass), with the
timestamp text from a direct alias of to_char where we may create one (superuser), not a SQL
function called twice per row; large files load through two COPY streams; the duplicates are
found by a second connection sorting the ids while the replace copies the rows, and that sort also
proves the new rows' ids unique (no second grouping of 7.7 M ids for the uniqueness check).
"""

from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
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
from taxi_platform.warehouse.copy_split import CopyCancelled, PartReader, gzip_uncompressed_size
from taxi_platform.warehouse.embedded import EmbeddedPostgres

PG_TYPES = {
    ColumnType.INTEGER: "integer",
    ColumnType.TIMESTAMP: "timestamp",
    ColumnType.DECIMAL: "numeric",
    ColumnType.TEXT: "text",
}
TS_FUNCTION = "taxi_timestamp_text"  # SQL wrapper of to_char: any user may create it
# The same text without the per-row cost of calling a SQL function: to_char's C implementation under
# an IMMUTABLE name (LANGUAGE internal: only a superuser may create it; used when it exists).
TS_FUNCTION_FAST = "taxi_timestamp_text_c"
TS_FORMAT = "YYYY-MM-DD HH24:MI:SS"
LOCK_NAMESPACE = 0x7A11  # first key of every advisory lock we take
COPY_CHUNK = 1 << 20
# Files at least this large (uncompressed) load through COPY_STREAMS parallel COPY streams.
COPY_STREAMS = 2
PARALLEL_COPY_MIN_BYTES = 64 << 20
COPY_PART_SETTING = "taxi.copy_part"  # session setting: the file part a COPY stream loads
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
            f"(the previous rows are intact): {self.redactor()(str(exc)).strip()}")

    def _open_connection(self, purpose: str) -> "psycopg2.extensions.connection":
        try:
            return psycopg2.connect(self.connection_url(), connect_timeout=15,
                                    application_name=f"taxi_platform:{purpose}"[:63])
        except psycopg2.Error as exc:
            raise WarehouseError(f"cannot connect to PostgreSQL: {self.redactor()(str(exc)).strip()}") from None

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
    def _setup(self, cur, spec: DatasetSpec) -> str:
        """Schemas, the id helper functions and the partitioned final table (idempotent).

        Returns the qualified name of the timestamp-text function the id expression uses.
        """
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
                "AS $$ SELECT to_char($1, {}) $$"
            ).format(sql.Identifier(staging, TS_FUNCTION), sql.Literal(TS_FORMAT)))
        fast = f"{staging}.{TS_FUNCTION_FAST}(timestamp,text)"
        cur.execute("SELECT to_regprocedure(%s), (SELECT rolsuper FROM pg_roles "
                    "WHERE rolname = current_user)", (fast,))
        exists, superuser = cur.fetchone()
        if exists is None and superuser:
            # The same C function as to_char(timestamp, text), called directly: a SQL wrapper costs
            # about a microsecond per call, two calls per row (the largest part of the COPY's
            # time). The format argument defaults to the id's format, so the call reads f(col).
            cur.execute(sql.SQL(
                "CREATE FUNCTION {}(timestamp, text DEFAULT {}) RETURNS text LANGUAGE internal "
                "IMMUTABLE STRICT PARALLEL SAFE AS 'timestamp_to_char'"
            ).format(sql.Identifier(staging, TS_FUNCTION_FAST), sql.Literal(TS_FORMAT)))
            exists = True
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
        return f'"{staging}"."{TS_FUNCTION_FAST if exists else TS_FUNCTION}"'

    # --- staging ------------------------------------------------------------------------------
    def load_staging(self, spec: DatasetSpec, month: date, lake_file: LakeFile, log: Log) -> StagingResult:
        started = time.monotonic()
        file_name = spec.file_name(month)
        staging = self._staging(spec, month)
        with self.connect(f"staging {file_name}") as conn, conn.cursor() as cur:
            ts_function = self._setup(cur, spec)
            conn.commit()
            # The file name is the same in every row: PostgreSQL 18 computes it when read
            # (VIRTUAL) instead of storing it 7.7 M times.
            filename = ("filename text GENERATED ALWAYS AS ({}) VIRTUAL"
                        if conn.server_version >= 180000 else "filename text NOT NULL DEFAULT {}")
            id_sql = sql.SQL(postgres_trip_id_sql(spec, ts_function))

            def create(table: sql.Composed, parts: int) -> sql.Composed:
                # File order is (source_part, source_row): the part of the file a COPY stream
                # loads (a session setting when there are several), and the row's order within
                # the stream (CACHE: a session takes its numbers 1000 at a time, still ascending).
                part = (sql.SQL("current_setting({})::smallint").format(sql.Literal(COPY_PART_SETTING))
                        if parts > 1 else sql.SQL("0"))
                return sql.SQL(
                    "CREATE UNLOGGED TABLE {} ({}, unique_row_id text GENERATED ALWAYS AS ({}) STORED, "
                    + filename + ", source_part smallint NOT NULL DEFAULT {}, "
                    "source_row bigint GENERATED ALWAYS AS IDENTITY (CACHE 1000)) "
                    # Written once, read once by the replace: vacuuming it would only compete
                    # with that replace for the CPU.
                    "WITH (autovacuum_enabled = false)"
                ).format(table, self._column_defs(spec), id_sql, sql.Literal(file_name), part)

            size = gzip_uncompressed_size(lake_file.open)
            if size is not None and size >= PARALLEL_COPY_MIN_BYTES and COPY_STREAMS > 1:
                rows = self._stage_in_parts(conn, cur, spec, month, lake_file, create, size, log)
            else:
                cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                            (LOCK_NAMESPACE, f"staging:{file_name}"))
                cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(staging))
                # UNLOGGED, and created in this transaction: the COPY writes no WAL, and FREEZE
                # writes the rows already frozen (no hint-bit writes when they are first read).
                cur.execute(create(staging, parts=1))
                with lake_file.open() as fh:
                    reader = DecompressingReader(fh, on_progress=_progress_logger(file_name, log))
                    self._copy(cur, staging, spec, reader, file_name, header=True, freeze=True)
                rows = cur.rowcount
        log(f"{file_name}: {rows:,} rows staged in {self.staging_table(spec, month)}")
        return StagingResult(table=self.staging_table(spec, month), rows=rows,
                             seconds=time.monotonic() - started)

    def _copy(self, cur, table: sql.Composed, spec: DatasetSpec, reader: DecompressingReader,
              file_name: str, *, header: bool, freeze: bool) -> None:
        """COPY the reader's CSV into `table`; bad input becomes a BadInputError naming the line
        (of the file: a part of a split file starts `lines_before` lines into it)."""
        conn = cur.connection
        options = ["FORMAT csv"]
        if header:
            options.append("HEADER MATCH" if conn.server_version >= 150000 else "HEADER true")
        if freeze:
            options.append("FREEZE")
        copy = sql.SQL("COPY {} ({}) FROM STDIN WITH ({})").format(
            table, self._columns(spec), sql.SQL(", ".join(options))).as_string(conn)
        try:
            cur.copy_expert(copy, reader, size=COPY_CHUNK)
        except psycopg2.Error as exc:
            if isinstance(reader.error, CopyCancelled):
                raise reader.error from None
            if reader.error is not None:
                raise BadInputError(f"{file_name}: {reader.error}") from None
            if isinstance(exc, (psycopg2.DataError, psycopg2.errors.BadCopyFileFormat)):
                raise BadInputError(_copy_error_message(
                    file_name, exc, getattr(reader, "lines_before", 0))) from None
            raise

    def _stage_in_parts(self, conn, cur, spec: DatasetSpec, month: date, lake_file: LakeFile,
                        create, size: int, log: Log) -> int:
        """COPY_STREAMS parts of the file through as many connections into a new table, which then
        replaces the month's staging table in one short transaction; nothing changes on failure."""
        file_name = spec.file_name(month)
        staging = self._staging(spec, month)
        name = f"{spec.table_name}_{month_suffix(month)}"
        loading = sql.Identifier(self._schemas()[1], f"{name}_load")
        # A session lock: this load spans several transactions of this connection.
        cur.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (LOCK_NAMESPACE, f"staging:{file_name}"))
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(loading))  # left by a crashed load
        cur.execute(create(loading, parts=COPY_STREAMS))
        conn.commit()
        stop = threading.Event()
        progress = _progress_logger(file_name, log)
        readers: list[PartReader] = []
        helpers: list[tuple] = []
        try:
            for part in range(COPY_STREAMS):
                # Progress is reported from the main thread only (the first part's reads).
                readers.append(PartReader(
                    lake_file.open(), part, COPY_STREAMS, size, stop=stop,
                    on_progress=(lambda _r: progress(_Combined(readers))) if part == 0 else None))
            errors: dict[int, BaseException] = {}  # failures that were not caused by another's
            counts: dict[int, int] = {}
            connections = {0: conn}

            def load(part: int, part_conn) -> None:
                try:
                    with part_conn.cursor() as part_cur:
                        part_cur.execute("SELECT set_config(%s, %s, true)", (COPY_PART_SETTING, str(part)))
                        self._copy(part_cur, loading, spec, readers[part], file_name, header=part == 0,
                                   freeze=False)
                        counts[part] = part_cur.rowcount
                except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                    if not stop.is_set():  # not a consequence of another part's failure
                        errors[part] = exc
                    stop.set()

            for part in range(1, COPY_STREAMS):
                part_conn = self._open_connection(f"staging {file_name} (part {part + 1}/{COPY_STREAMS})")
                connections[part] = part_conn
                thread = threading.Thread(target=load, args=(part, part_conn), daemon=True,
                                          name=f"copy-part-{part}")
                helpers.append((part_conn, thread))
                thread.start()
            load(0, conn)
            for part_conn, thread in helpers:
                while thread.is_alive():
                    if stop.is_set():
                        try:
                            part_conn.cancel()
                        except psycopg2.Error:
                            pass
                    thread.join(timeout=1.0)
                    progress(_Combined(readers))
            if errors:  # the earliest part's failure names the earliest bad line
                part = min(errors)
                if isinstance(errors[part], psycopg2.Error) and _is_lost(connections[part], errors[part]):
                    raise self._connection_lost(f"staging {file_name}", errors[part])
                raise errors[part]
            if stop.is_set():  # pragma: no cover - a part stopped without a failure of its own
                raise WarehouseError(f"staging {file_name}: a COPY stream stopped early")
            for part_conn, _thread in helpers:
                part_conn.commit()
            conn.commit()
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(staging))
            cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(loading, sql.Identifier(name)))
            conn.commit()
            return sum(counts.values())
        except BaseException:
            stop.set()
            self._rollback(conn)
            for part_conn, thread in helpers:
                self._rollback(part_conn)
            self._drop_quietly(loading)
            raise
        finally:
            for reader in readers:
                reader.close()
            for part_conn, thread in helpers:
                thread.join(timeout=30)
                part_conn.close()
            try:
                if not conn.closed:
                    cur.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))",
                                (LOCK_NAMESPACE, f"staging:{file_name}"))
                    conn.commit()
            except psycopg2.Error:
                pass  # the connection is gone, and its session lock with it

    def _drop_quietly(self, table: sql.Composed) -> None:
        try:
            conn = self._open_connection("staging cleanup")
        except WarehouseError:
            return  # the server is unreachable: the next load drops the table
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        except psycopg2.Error:
            pass
        finally:
            conn.close()

    # --- final --------------------------------------------------------------------------------
    def replace_month(self, spec: DatasetSpec, month: date, log: Log) -> ReplaceResult:
        started = time.monotonic()
        file_name = spec.file_name(month)
        name = f"{spec.table_name}_{month_suffix(month)}"
        warehouse = self._schemas()[0]
        staging, partition = self._staging(spec, month), self._partition(spec, month)
        # The month's new rows are written to a new table (created in this transaction: with
        # wal_level=minimal they skip the WAL), which replaces the month's partition at the end.
        # Readers of the old partition are not blocked while it fills.
        filling = sql.Identifier(warehouse, f"{name}_new")
        finder = None
        try:
            with self.connect(f"replace {file_name}") as conn, conn.cursor() as cur:
                self._setup(cur, spec)
                conn.commit()
                cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                            (LOCK_NAMESPACE, f"final:{file_name}"))
                # The old partition, and its row count as its replace recorded it (exact; else counted).
                cur.execute("SELECT to_regclass(%s), to_regclass(%s), obj_description(to_regclass(%s), 'pg_class')",
                            (self.staging_table(spec, month), f"{warehouse}.{name}", f"{warehouse}.{name}"))
                staged_table, old_partition, comment = cur.fetchone()
                recorded = _recorded_rows(comment)
                if staged_table is None:
                    raise WarehouseError(
                        f"no staging table {self.staging_table(spec, month)}: materialize the "
                        f"{spec.name} staging asset for {month:%Y-%m} first")
                # Held to the end: a staging load of the month replaces the table only after this.
                cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(staging))
                # First occurrence in file order wins among rows sharing an id. While this
                # transaction copies every staged row, a second connection counts the old
                # partition's rows and finds the ids that occur more than once and where each first
                # occurs (one sort of narrow tuples: the two use both cores); all copies of those
                # ids are then replaced by the first occurrence. The result is the same as copying
                # only the first occurrences.
                dups = sql.Identifier(self._schemas()[1], f"{name}_dups")
                finder = _DuplicateFinder(self, staging, dups, f"replace {file_name} (duplicates)",
                                          old_partition=partition if old_partition and recorded is None
                                          else None)
                cols = self._columns(spec)
                # Column for column the parent's (no LIKE: it would lock the parent for the whole
                # transaction, and two months swapping at once would deadlock). The CHECK lets
                # ATTACH skip scanning the rows for the partition constraint.
                cur.execute(sql.SQL(
                    "CREATE TABLE {} (unique_row_id text NOT NULL, filename text NOT NULL "
                    "CONSTRAINT {} CHECK (filename = {}), {})"
                ).format(filling, sql.Identifier(f"{name}_filename"), sql.Literal(file_name),
                         self._column_defs(spec)))
                cur.execute(sql.SQL("INSERT INTO {} (unique_row_id, filename, {}) "
                                    "SELECT unique_row_id, filename, {} FROM {}")
                            .format(filling, cols, cols, staging))
                staged = cur.rowcount
                if staged == 0:
                    raise WarehouseError(
                        f"staging table {self.staging_table(spec, month)} is empty (an UNLOGGED table "
                        "is emptied by a server crash): re-materialize the staging asset for this month")
                found = finder.wait()
                if found.duplicated_ids:
                    cur.execute(sql.SQL("DELETE FROM {} p USING {} d WHERE p.unique_row_id = d.unique_row_id")
                                .format(filling, dups))
                    cur.execute(sql.SQL(
                        "INSERT INTO {} (unique_row_id, filename, {}) "
                        "SELECT s.unique_row_id, s.filename, {} FROM {} s JOIN {} d "
                        "ON s.source_part = d.source_part AND s.source_row = d.source_row"
                    ).format(filling, cols, sql.SQL(", ").join(sql.Identifier("s", c) for c in spec.column_names),
                             staging, dups))
                ids = self._verify_ids(cur, filling, dups, staged, found)
                final_rows = ids.rows
                if found.duplicated_ids:
                    cur.execute(sql.SQL("DROP TABLE {}").format(dups))
                cur.execute(sql.SQL("ANALYZE {}").format(filling))
                # The swap: both statements take the parent's lock; held for milliseconds.
                if old_partition:
                    cur.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(self._final(spec), partition))
                    cur.execute(sql.SQL("DROP TABLE {}").format(partition))
                cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(filling, sql.Identifier(name)))
                cur.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES IN ({})")
                            .format(self._final(spec), partition, sql.Literal(file_name)))
                # Read back by the next replace of the month: counting 7.7 M rows again costs a second.
                cur.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(
                    partition, sql.Literal(f"{ROWS_COMMENT}{final_rows} ({file_name}, loaded by taxi_platform)")))
                previous = recorded if recorded is not None else found.previous_rows
        except BaseException:
            if finder is not None:  # the replace's transaction is rolled back by now
                finder.close(drop_table=True)
            raise
        finder.close(drop_table=False)
        log(f"{file_name}: {final_rows:,} trips in {self.final_table(spec)} "
            f"({staged - final_rows:,} duplicates dropped, {previous:,} rows replaced)")
        return ReplaceResult(table=self.final_table(spec), staged_rows=staged, final_rows=final_rows,
                             previous_rows=previous, seconds=time.monotonic() - started, ids=ids)

    @staticmethod
    def _verify_ids(cur, table: sql.Composed, dups: sql.Composed, staged: int,
                    found: "_Duplicates") -> IdProfile:
        """The new rows' id profile, without grouping them all again: the finder grouped every
        staged id, so only the few ids it saw repeated can be repeated here, counted exactly; the
        others occurred once in staging, and more rows of them than there are ids are duplicates."""
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
        rows = cur.fetchone()[0]
        repeated_rows = repeated_ids = 0
        if found.duplicated_ids:
            cur.execute(sql.SQL("SELECT count(*), count(DISTINCT unique_row_id) FROM {} "
                                "JOIN {} USING (unique_row_id)").format(table, dups))
            repeated_rows, repeated_ids = cur.fetchone()
        single_ids = staged - found.surplus_rows - found.duplicated_ids  # ids staged once
        single_rows = rows - repeated_rows
        if single_rows < single_ids or repeated_ids < found.duplicated_ids:  # never expected
            raise WarehouseError(
                f"replace of {table.as_string(cur)} lost rows: {rows:,} rows, "
                f"{staged - found.surplus_rows:,} distinct ids staged")
        duplicates = (repeated_rows - repeated_ids) + (single_rows - single_ids)
        return IdProfile(rows=rows, distinct_ids=rows - duplicates)

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
ROWS_COMMENT = "rows="  # a month partition's comment starts with its row count at load


def _recorded_rows(comment: str | None) -> int | None:
    match = re.match(re.escape(ROWS_COMMENT) + r"(\d+) ", comment or "")
    return int(match.group(1)) if match else None


def _copy_error_message(file_name: str, exc: psycopg2.Error, first_line: int = 0) -> str:
    """`yellow_tripdata_2019-01.csv.gz line 5, column fare_amount: invalid input syntax ...`

    `first_line`: lines of the file before the COPY's input (a later part of a split file).
    """
    primary = (exc.diag.message_primary or str(exc)).strip()
    match = _CONTEXT.search(exc.diag.context or "")
    if not match:
        return f"{file_name}: {primary}"
    line = int(match.group(1)) + first_line
    where = f"line {line}" + (f", column {match.group(2)}" if match.group(2) else "")
    return f"{file_name} {where}: {primary}"


def _is_lost(conn, exc: psycopg2.Error) -> bool:
    """Whether `exc` means the connection is gone (server shut it down, or it broke)."""
    return (isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError))
            and (conn.closed or isinstance(exc, psycopg2.errors.AdminShutdown)))


@dataclass(frozen=True)
class _Duplicates:
    duplicated_ids: int  # ids that occur more than once among the staged rows
    surplus_rows: int  # staged rows beyond the first occurrence of each id
    previous_rows: int  # rows of the month's partition before the replace


class _DuplicateFinder:
    """On its own connection and thread: the old partition's row count, and `dups` := the ids
    that occur more than once in `staging`, each with the position (source_part, source_row) of
    its first occurrence in file order."""

    def __init__(self, warehouse: "PostgresWarehouse", staging: sql.Composed, dups: sql.Composed,
                 purpose: str, old_partition: sql.Composed | None) -> None:
        self._warehouse, self._purpose = warehouse, purpose
        self._conn = warehouse._open_connection(purpose)
        self._conn.autocommit = True
        self._staging, self._dups, self._old = staging, dups, old_partition
        self._result: _Duplicates | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="duplicate-finder")
        self._thread.start()

    def _run(self) -> None:
        try:
            with self._conn.cursor() as cur:
                previous = 0
                if self._old is not None:
                    cur.execute(sql.SQL("SELECT count(*) FROM {}").format(self._old))
                    previous = cur.fetchone()[0]
                cur.execute("SET max_parallel_workers_per_gather = 0")  # the INSERT has the other core
                # Grouping 7.7 M ids costs less by sorting than by hashing them (measured).
                cur.execute("SET enable_hashagg = off")
                cur.execute(sql.SQL(
                    "CREATE TEMP TABLE taxi_duplicated_ids AS SELECT unique_row_id, count(*) AS n "
                    "FROM {} GROUP BY unique_row_id HAVING count(*) > 1").format(self._staging))
                duplicated = cur.rowcount
                cur.execute("SELECT coalesce(sum(n - 1), 0) FROM taxi_duplicated_ids")
                surplus = cur.fetchone()[0]
                cur.execute("ANALYZE taxi_duplicated_ids")
                cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._dups))  # left by a crash
                if duplicated:  # else no second scan, and no table
                    cur.execute(sql.SQL(
                        "CREATE UNLOGGED TABLE {dups} AS "
                        "SELECT DISTINCT ON (s.unique_row_id) s.unique_row_id, s.source_part, s.source_row "
                        "FROM {stg} s JOIN taxi_duplicated_ids USING (unique_row_id) "
                        "ORDER BY s.unique_row_id, s.source_part, s.source_row"
                    ).format(dups=self._dups, stg=self._staging))
                    cur.execute(sql.SQL("ANALYZE {}").format(self._dups))
                self._result = _Duplicates(duplicated_ids=duplicated, surplus_rows=int(surplus),
                                           previous_rows=previous)
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread by wait()
            self._error = exc

    def wait(self) -> _Duplicates:
        """What the finder found; re-raises its error in the caller's thread."""
        self._thread.join()
        if isinstance(self._error, psycopg2.Error) and _is_lost(self._conn, self._error):
            raise self._warehouse._connection_lost(self._purpose, self._error)
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def close(self, drop_table: bool) -> None:
        """Stop (cancel) the search if it still runs; `drop_table` after a failed replace (whose
        transaction must be over: it may hold a lock on the table)."""
        if self._thread.is_alive():
            try:
                self._conn.cancel()
            except psycopg2.Error:
                pass
            self._thread.join(timeout=30)
        if drop_table:
            try:
                with self._conn.cursor() as cur:
                    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._dups))
            except psycopg2.Error:
                pass  # the server is gone: the next replace of the month drops it
        self._conn.close()


class _Combined:
    """The progress of all parts of a split file, read like one reader."""

    def __init__(self, readers) -> None:
        self.bytes_out = sum(r.bytes_out for r in readers)
        self.newlines = sum(r.newlines for r in readers)


def _progress_logger(file_name: str, log: Log):
    state = {"last": time.monotonic()}

    def report(reader: DecompressingReader) -> None:
        now = time.monotonic()
        if now - state["last"] >= PROGRESS_EVERY_SECONDS:
            state["last"] = now
            log(f"{file_name}: {reader.bytes_out / 1e6:,.0f} MB loaded, about "
                f"{max(reader.newlines - 1, 0):,} rows")

    return report
