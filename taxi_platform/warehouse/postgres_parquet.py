"""A TLC Parquet month into PostgreSQL's staging table, written by DuckDB (binary COPY).

DuckDB reads the file in two passes (`engine/parquet_month.py`: the rows, the duplicates); the
third sends every column of the rows kept, through DuckDB's postgres extension (binary COPY), into
the month's staging table, created in the same transaction (so written without WAL on the
embedded server), with the same shape, comment and lock as the CSV path's (postgres_month.py): the
swap that attaches it is the same. A value that does not fit fails naming the file, row and column;
the transaction rolls back and no table changes.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from urllib.parse import unquote, urlsplit

import duckdb

from taxi_platform.datasets import DatasetSpec
from taxi_platform.engine.duckdb_extensions import load_postgres_extension
from taxi_platform.engine.parquet_month import (
    ReadMonth,
    named_errors,
    quote_ident,
    quote_text,
    read_parquet_month,
)
from taxi_platform.lake.handles import LakeFile
from taxi_platform.warehouse.base import Log, WarehouseError
from taxi_platform.warehouse.postgres_month import LOCK_NAMESPACE
from taxi_platform.warehouse.staged_month import StagedMonth


def local_path(lake_file: LakeFile) -> Path:
    parts = urlsplit(lake_file.uri)
    if parts.scheme != "file":
        raise WarehouseError(f"PostgreSQL loads Parquet from the local lake, not {lake_file.uri}")
    return Path(unquote(parts.path))


def stage_parquet_month(
    wh, spec: DatasetSpec, month: date, lake_file: LakeFile, run_id: str, log: Log
) -> tuple[StagedMonth, ReadMonth]:
    """Fill the month's staging table from a Parquet file (see the module's docstring)."""
    file_name = spec.file_name(month)
    with read_parquet_month(
        spec,
        month,
        local_path(lake_file),
        memory_limit=wh.engine_memory,
        spill_dir=wh.engine_spill_dir(),
        redact=wh.redactor(),
    ) as (con, found):
        staged = StagedMonth(
            rows=found.kept,
            distinct=found.kept,
            read=found.read,
            in_month=found.in_month,
            run_id=run_id,
            sha256=found.sha256,
        )
        with named_errors(file_name, wh.redactor()):
            _write(con, wh, spec, month, found, staged)
    log(f"{file_name}: era {found.q.era.name} (schema {found.schema.fingerprint}), {found.read:,} rows read")
    return staged, found


def _write(
    con: duckdb.DuckDBPyConnection, wh, spec: DatasetSpec, month: date, found: ReadMonth, staged: StagedMonth
) -> None:
    """Pass 3: the staging table, in one PostgreSQL transaction."""
    file_name = found.file_name
    staging_schema = wh.staging_schema_name()
    table = f"{quote_ident(staging_schema)}.{quote_ident(wh.month_table_name(spec, month))}"
    check = quote_ident(f"{wh.month_table_name(spec, month)}_filename")
    columns = ", ".join(f"{quote_ident(c.name)} {wh.pg_type(c.type)}" for c in spec.columns)
    load_postgres_extension(con)
    # The URL is a literal (ATTACH takes no parameters); errors that echo it are masked.
    con.execute(f"ATTACH {quote_text(wh.connection_url())} AS pg (TYPE postgres)")
    con.execute("BEGIN")
    for statement in (
        f"SELECT pg_advisory_xact_lock({LOCK_NAMESPACE}, hashtext({quote_text('staging:' + file_name)}))",
        f"DROP TABLE IF EXISTS {table}",
        f"CREATE TABLE {table} (unique_row_id text NOT NULL, filename text NOT NULL DEFAULT "
        f"{quote_text(file_name)} CONSTRAINT {check} CHECK (filename = {quote_text(file_name)}), {columns})",
    ):
        con.execute("CALL postgres_execute('pg', ?)", [statement])
    con.execute(
        f"INSERT INTO pg.{quote_ident(staging_schema)}.{quote_ident(wh.month_table_name(spec, month))} "
        f"{found.kept_rows(spec)}"
    )
    for statement in (
        f"ANALYZE {table}",
        f"COMMENT ON TABLE {table} IS {quote_text(staged.comment(file_name))}",
    ):
        con.execute("CALL postgres_execute('pg', ?)", [statement])
    con.execute("COMMIT")
