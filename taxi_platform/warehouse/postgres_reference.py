"""A reference table (the zone lookup) replaced whole in PostgreSQL: TRUNCATE and COPY in one
transaction, so readers see the old rows or the new ones."""

from __future__ import annotations

import time

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from taxi_platform.datasets import ReferenceSpec
from taxi_platform.lake.handles import LakeFile
from taxi_platform.warehouse.base import BadInputError, Log, ReferenceResult
from taxi_platform.warehouse.postgres_copy import copy_error_message
from taxi_platform.warehouse.postgres_ddl import column_defs

COPY_CHUNK = 1 << 20


def load_reference(wh, ref: ReferenceSpec, lake_file: LakeFile, log: Log) -> ReferenceResult:
    """Replace `<warehouse schema>.<ref.name>` with the file's rows; `wh` is the PostgresWarehouse."""
    started = time.monotonic()
    warehouse = wh.warehouse_schema_name()
    table = sql.Identifier(warehouse, ref.name)
    columns = sql.SQL(", ").join(sql.Identifier(c.name) for c in ref.columns)
    with wh.connect(f"load {ref.file_name}") as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(warehouse)))
        cur.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))").format(
                table, column_defs(ref.columns), sql.Identifier(ref.key_column)
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
