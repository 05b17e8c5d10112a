"""A TLC Parquet month into PostgreSQL's staging table, written by DuckDB (binary COPY).

DuckDB reads the file (`engine/parquet_select.py`: the era, the casts, the trip id) in three passes:
  1. the identity fields only: a 64-bit hash of each row's identity, grouped: the rows, the rows
     picked up in the month, and the hashes seen more than once (duplicates are rare);
  2. only the rows of those hashes: their trip ids, and which are later occurrences of an id
     (file order: the first occurrence of a trip is kept, as the CSV path keeps it);
  3. every column of the other rows, sent by DuckDB's postgres extension (binary COPY) into the
     month's staging table, created in the same transaction (so written without WAL on the
     embedded server), with the same shape, comment and lock as the CSV path's (postgres_month.py):
     the swap that attaches it is the same.
A value that does not fit fails in pass 1 or 3, naming the file, row and column; the transaction
rolls back and no table changes.
"""

from __future__ import annotations

import hashlib
import re
import threading
from datetime import date
from pathlib import Path
from urllib.parse import unquote, urlsplit

import duckdb
import pyarrow.parquet as pq

from taxi_platform.datasets import DatasetSpec
from taxi_platform.engine.duckdb_extensions import load_postgres_extension
from taxi_platform.engine.parquet_select import (
    ROW,
    FileSchema,
    ParquetMonthSql,
    ParquetSchemaError,
    parquet_month_sql,
)
from taxi_platform.lake.base import LakeFile
from taxi_platform.warehouse.base import BadInputError, Log, WarehouseError, refuse_wrong_month
from taxi_platform.warehouse.postgres_month import LOCK_NAMESPACE, StagedMonth

_DUCKDB_ERROR_PREFIX = re.compile(r"^[A-Za-z ]*Error: ")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def file_schema(path: Path, file_name: str) -> FileSchema:
    """The file's columns and physical types, from its footer."""
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # noqa: BLE001 - any reader error means the same: not a readable file
        raise BadInputError(f"{file_name}: the Parquet footer cannot be read: {exc}") from None
    return FileSchema(tuple((field.name, str(field.type)) for field in schema))


def local_path(lake_file: LakeFile) -> Path:
    parts = urlsplit(lake_file.uri)
    if parts.scheme != "file":
        raise WarehouseError(f"PostgreSQL loads Parquet from the local lake, not {lake_file.uri}")
    return Path(unquote(parts.path))


class _FileHash(threading.Thread):
    """The file's sha256, computed beside DuckDB's passes (hashlib releases the GIL)."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True, name="sha256")
        self.path, self.digest, self.error = path, "", None

    def run(self) -> None:
        sha = hashlib.sha256()
        try:
            with open(self.path, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    sha.update(chunk)
        except OSError as exc:
            self.error = exc
        self.digest = sha.hexdigest()


def stage_parquet_month(
    wh, spec: DatasetSpec, month: date, lake_file: LakeFile, run_id: str, log: Log
) -> tuple[StagedMonth, ParquetMonthSql, FileSchema]:
    """Fill the month's staging table from a Parquet file (see the module's docstring)."""
    file_name = spec.file_name(month)
    path = local_path(lake_file)
    schema = file_schema(path, file_name)
    try:
        q = parquet_month_sql(spec, schema, str(path), file_name, month)
    except ParquetSchemaError as exc:
        raise BadInputError(str(exc)) from None
    file_rows = pq.ParquetFile(path).metadata.num_rows
    hasher = _FileHash(path)
    hasher.start()
    con = duckdb.connect(
        config={
            "threads": 2,
            "memory_limit": wh.engine_memory,
            "temp_directory": wh.engine_spill_dir() or "",
            "preserve_insertion_order": False,
        }
    )
    try:
        with _named_errors(file_name, wh):
            rows, in_month, repeated = _count(con, q)
            later = _later_occurrences(con, q) if repeated else []
        if rows != file_rows:  # never expected: DuckDB reads what the footer announces
            raise WarehouseError(f"{file_name}: {rows:,} rows read, the footer says {file_rows:,}")
        hasher.join()
        if hasher.error is not None:
            raise WarehouseError(f"{file_name}: cannot read {path}: {hasher.error.strerror}")
        kept = rows - len(later)
        staged = StagedMonth(
            rows=kept,
            distinct=kept,
            read=rows,
            in_month=in_month - sum(1 for _, m in later if m),
            run_id=run_id,
            sha256=hasher.digest,
        )
        refuse_wrong_month(file_name, month, staged.rows, staged.in_month)
        with _named_errors(file_name, wh):
            _write(con, wh, spec, month, q, staged, [r for r, _ in later], file_name)
    finally:
        con.close()
    log(f"{file_name}: era {q.era.name} (schema {schema.fingerprint}), {rows:,} rows read")
    return staged, q, schema


def _count(con: duckdb.DuckDBPyConnection, q: ParquetMonthSql) -> tuple[int, int, int]:
    """Pass 1: rows, rows picked up in the month, and the identity hashes seen more than once
    (kept in the temporary table `repeated`)."""
    con.execute(
        f"CREATE TEMP TABLE grouped AS SELECT h, n, m, g FROM ("
        f"SELECT h, count(*) AS n, count(*) FILTER (WHERE m) AS m, GROUPING(h) AS g "
        f"FROM (SELECT {q.identity_hash} AS h, {q.in_month} AS m FROM ({q.typed})) "
        f"GROUP BY GROUPING SETS ((h), ())) WHERE n > 1 OR g = 1"
    )
    rows, in_month = con.execute("SELECT n, m FROM grouped WHERE g = 1").fetchone()
    con.execute("CREATE TEMP TABLE repeated AS SELECT h FROM grouped WHERE g = 0")
    repeated = con.execute("SELECT count(*) FROM repeated").fetchone()[0]
    return int(rows), int(in_month), int(repeated)


def _later_occurrences(con: duckdb.DuckDBPyConnection, q: ParquetMonthSql) -> list[tuple[int, bool]]:
    """Pass 2: (row, picked up in the month) of every later occurrence of a trip id."""
    return con.execute(
        f"SELECT r, m FROM (SELECT {ROW} AS r, {q.trip_id} AS id, {q.in_month} AS m "
        f"FROM ({q.typed}) WHERE {q.identity_hash} IN (SELECT h FROM repeated)) "
        f"QUALIFY row_number() OVER (PARTITION BY id ORDER BY r) > 1"
    ).fetchall()


def _write(
    con: duckdb.DuckDBPyConnection,
    wh,
    spec: DatasetSpec,
    month: date,
    q: ParquetMonthSql,
    staged: StagedMonth,
    dropped: list[int],
    file_name: str,
) -> None:
    """Pass 3: the staging table, in one PostgreSQL transaction."""
    staging_schema = wh.staging_schema_name()
    table = f"{quote_ident(staging_schema)}.{quote_ident(wh.month_table_name(spec, month))}"
    check = quote_ident(f"{wh.month_table_name(spec, month)}_filename")
    columns = ", ".join(f"{quote_ident(c.name)} {wh.pg_type(c.type)}" for c in spec.columns)
    load_postgres_extension(con)
    # The URL is a literal (ATTACH takes no parameters); errors that echo it are masked.
    con.execute(f"ATTACH {quote_text(wh.connection_url())} AS pg (TYPE postgres)")
    con.execute("CREATE TEMP TABLE dropped (r BIGINT)")
    if dropped:
        con.executemany("INSERT INTO dropped VALUES (?)", [(r,) for r in dropped])
    con.execute("BEGIN")
    for statement in (
        f"SELECT pg_advisory_xact_lock({LOCK_NAMESPACE}, hashtext({quote_text('staging:' + file_name)}))",
        f"DROP TABLE IF EXISTS {table}",
        f"CREATE TABLE {table} (unique_row_id text NOT NULL, filename text NOT NULL DEFAULT "
        f"{quote_text(file_name)} CONSTRAINT {check} CHECK (filename = {quote_text(file_name)}), {columns})",
    ):
        con.execute("CALL postgres_execute('pg', ?)", [statement])
    names = ", ".join(quote_ident(c.name) for c in spec.columns)
    keep = f" WHERE {ROW} NOT IN (SELECT r FROM dropped)" if dropped else ""
    con.execute(
        f"INSERT INTO pg.{quote_ident(staging_schema)}.{quote_ident(wh.month_table_name(spec, month))} "
        f"SELECT {q.trip_id}, {quote_text(file_name)}, {names} FROM ({q.typed}){keep}"
    )
    for statement in (
        f"ANALYZE {table}",
        f"COMMENT ON TABLE {table} IS {quote_text(staged.comment(file_name))}",
    ):
        con.execute("CALL postgres_execute('pg', ?)", [statement])
    con.execute("COMMIT")


class _named_errors:
    """DuckDB's errors as BadInputError (a value refused: the message names row and column) or
    WarehouseError (secrets masked), the transaction rolled back."""

    def __init__(self, file_name: str, wh) -> None:
        self.file_name, self.wh = file_name, wh

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or not isinstance(exc, duckdb.Error):
            return False
        message = _DUCKDB_ERROR_PREFIX.sub("", str(exc).strip().splitlines()[0])
        if isinstance(exc, duckdb.InvalidInputException) and message.startswith(self.file_name):
            raise BadInputError(message) from None
        if isinstance(exc, (duckdb.InvalidInputException, duckdb.IOException)):
            raise BadInputError(f"{self.file_name}: {self.wh.redactor()(message)}") from None
        raise WarehouseError(f"{self.file_name}: {self.wh.redactor()(message)}") from None
