"""A TLC Parquet month read by DuckDB, before any warehouse sees it.

`parquet_month_sql` (the era, the casts, the trip id) gives the SQL; this module runs the passes
that every target shares:
  1. the identity fields only: a 64-bit hash of each row's identity, grouped: the rows, the rows
     picked up in the month, and the hashes seen more than once (duplicates are rare);
  2. only the rows of those hashes: their trip ids, and which are later occurrences of an id
     (file order: the first occurrence of a trip is kept, as the CSV path keeps it).
`ReadMonth.kept_rows` is then the SELECT of the rows to load, which each target sends its own way
(PostgreSQL: binary COPY through DuckDB's postgres extension; BigQuery: a Parquet file for a load
job). A value that does not fit fails in pass 1 or in the target's pass, naming the file, row and
column (`named_errors`).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from taxi_platform.datasets import DatasetSpec
from taxi_platform.engine.parquet_select import (
    ROW,
    FileSchema,
    ParquetMonthSql,
    ParquetSchemaError,
    parquet_month_sql,
)
from taxi_platform.warehouse.base import BadInputError, WarehouseError, refuse_wrong_month
from taxi_platform.warehouse.sql import one_row

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


class _FileHash(threading.Thread):
    """The file's sha256, computed beside DuckDB's passes (hashlib releases the GIL)."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True, name="sha256")
        self.path, self.digest = path, ""
        self.error: OSError | None = None

    def run(self) -> None:
        sha = hashlib.sha256()
        try:
            with open(self.path, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    sha.update(chunk)
        except OSError as exc:
            self.error = exc
        self.digest = sha.hexdigest()


@dataclass(frozen=True)
class ReadMonth:
    """What passes 1 and 2 found in the file."""

    file_name: str
    q: ParquetMonthSql
    schema: FileSchema
    read: int  # rows of the file
    in_month: int  # rows kept whose pickup lies in the month
    dropped: int  # later occurrences of a trip id, left out
    sha256: str

    @property
    def kept(self) -> int:
        return self.read - self.dropped

    def kept_rows(self, spec: DatasetSpec) -> str:
        """SELECT unique_row_id, filename, <the dataset's columns> of the rows kept, in file order
        (the temporary table `dropped` holds the rows left out)."""
        names = ", ".join(quote_ident(c.name) for c in spec.columns)
        keep = f" WHERE {ROW} NOT IN (SELECT r FROM dropped)" if self.dropped else ""
        return (
            f"SELECT {self.q.trip_id} AS unique_row_id, {quote_text(self.file_name)} AS filename, "
            f"{names} FROM ({self.q.typed}){keep}"
        )


@contextmanager
def read_parquet_month(
    spec: DatasetSpec,
    month: date,
    path: Path,
    *,
    memory_limit: str,
    spill_dir: str | None,
    redact: Callable[[str], str],
) -> Iterator[tuple[duckdb.DuckDBPyConnection, ReadMonth]]:
    """Passes 1 and 2 over the month's file; yields the DuckDB connection (with the temporary
    table `dropped`) for the target's own pass, and what was found."""
    file_name = spec.file_name(month)
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
            "memory_limit": memory_limit,
            "temp_directory": spill_dir or "",
            "preserve_insertion_order": False,
        }
    )
    try:
        with named_errors(file_name, redact):
            rows, in_month, repeated = _count(con, q)
            later = _later_occurrences(con, q) if repeated else []
        if rows != file_rows:  # never expected: DuckDB reads what the footer announces
            raise WarehouseError(f"{file_name}: {rows:,} rows read, the footer says {file_rows:,}")
        hasher.join()
        if hasher.error is not None:
            raise WarehouseError(f"{file_name}: cannot read {path}: {hasher.error.strerror}")
        con.execute("CREATE TEMP TABLE dropped (r BIGINT)")
        if later:
            con.executemany("INSERT INTO dropped VALUES (?)", [(r,) for r, _ in later])
        found = ReadMonth(
            file_name=file_name,
            q=q,
            schema=schema,
            read=rows,
            in_month=in_month - sum(1 for _, m in later if m),
            dropped=len(later),
            sha256=hasher.digest,
        )
        refuse_wrong_month(file_name, month, found.kept, found.in_month)
        yield con, found
    finally:
        con.close()


def _count(con: duckdb.DuckDBPyConnection, q: ParquetMonthSql) -> tuple[int, int, int]:
    """Pass 1: rows, rows picked up in the month, and the identity hashes seen more than once
    (kept in the temporary table `repeated`)."""
    con.execute(
        f"CREATE TEMP TABLE grouped AS SELECT h, n, m, g FROM ("
        f"SELECT h, count(*) AS n, count(*) FILTER (WHERE m) AS m, GROUPING(h) AS g "
        f"FROM (SELECT {q.identity_hash} AS h, {q.in_month} AS m FROM ({q.typed})) "
        f"GROUP BY GROUPING SETS ((h), ())) WHERE n > 1 OR g = 1"
    )
    rows, in_month = one_row(con.execute("SELECT n, m FROM grouped WHERE g = 1"))
    con.execute("CREATE TEMP TABLE repeated AS SELECT h FROM grouped WHERE g = 0")
    repeated = one_row(con.execute("SELECT count(*) FROM repeated"))[0]
    return int(rows), int(in_month), int(repeated)


def _later_occurrences(con: duckdb.DuckDBPyConnection, q: ParquetMonthSql) -> list[tuple[int, bool]]:
    """Pass 2: (row, picked up in the month) of every later occurrence of a trip id."""
    return con.execute(
        f"SELECT r, m FROM (SELECT {ROW} AS r, {q.trip_id} AS id, {q.in_month} AS m "
        f"FROM ({q.typed}) WHERE {q.identity_hash} IN (SELECT h FROM repeated)) "
        f"QUALIFY row_number() OVER (PARTITION BY id ORDER BY r) > 1"
    ).fetchall()


class named_errors:
    """DuckDB's errors as BadInputError (a value refused: the message names row and column) or
    WarehouseError (secrets masked by `redact`)."""

    def __init__(self, file_name: str, redact: Callable[[str], str]) -> None:
        self.file_name, self.redact = file_name, redact

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> None:
        if exc is None or not isinstance(exc, duckdb.Error):
            return None
        message = _DUCKDB_ERROR_PREFIX.sub("", str(exc).strip().splitlines()[0])
        if isinstance(exc, duckdb.InvalidInputException) and message.startswith(self.file_name):
            raise BadInputError(message) from None
        if isinstance(exc, (duckdb.InvalidInputException, duckdb.IOException)):
            raise BadInputError(f"{self.file_name}: {self.redact(message)}") from None
        raise WarehouseError(f"{self.file_name}: {self.redact(message)}") from None
