"""The PostgreSQL tables' shapes: column types, the trip tables' column lists, and the DDL that
creates (or completes) the schemas and a dataset's final table, partitioned by file."""

from __future__ import annotations

from psycopg2 import sql

from taxi_platform.datasets import ColumnType, DatasetSpec
from taxi_platform.warehouse.base import WarehouseError

PG_TYPES = {
    ColumnType.INTEGER: "integer",
    ColumnType.TIMESTAMP: "timestamp",
    ColumnType.DECIMAL: "numeric",
    ColumnType.TEXT: "text",
    ColumnType.DOUBLE: "double precision",
}


def csv_column_list(spec: DatasetSpec) -> sql.Composed:
    """The columns of the course's CSV files, in file order: the COPY's column list."""
    return sql.SQL(", ").join(sql.Identifier(c) for c in spec.csv_columns)


def column_defs(columns) -> sql.Composed:
    """`name type, ...` for CREATE TABLE, from a spec's columns."""
    return sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(PG_TYPES[c.type])) for c in columns
    )


def setup_trip_table(cur, spec: DatasetSpec, warehouse: str, staging: str, lock_namespace: int) -> None:
    """The schemas and the dataset's partitioned final table (idempotent), under an advisory lock
    so that concurrent loads do not race to create them."""
    final = sql.Identifier(warehouse, spec.table_name)
    cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext('setup'))", (lock_namespace,))
    for schema in (warehouse, staging):
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    cur.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (unique_row_id text NOT NULL, filename text NOT NULL, {}) "
            "PARTITION BY LIST (filename)"
        ).format(final, column_defs(spec.columns))
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
                    final, sql.Identifier(column.name), sql.SQL(PG_TYPES[column.type])
                )
            )
