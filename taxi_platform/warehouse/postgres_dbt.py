"""PostgreSQL and the dbt project: the connection dbt's profile gets, the lock that keeps two dbt
builds apart, and the reads of the models dbt built (figures for the UI, the demo's report)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from urllib.parse import unquote, urlsplit

from psycopg2 import sql

from taxi_platform.settings import validate_identifier
from taxi_platform.target import LOCAL
from taxi_platform.warehouse.base import ZONE_REVENUE_MODEL, ZoneRevenue
from taxi_platform.warehouse.postgres_month import LOCK_NAMESPACE


def dbt_schema_name(wh) -> str:
    return validate_identifier(wh.dbt_schema, "TAXI_DBT_SCHEMA")


def dbt_env(wh) -> dict[str, str]:
    """The `postgres` output of profiles.yml, from the warehouse's connection URL."""
    url = urlsplit(wh.connection_url())
    return {
        "TAXI_DBT_TARGET": LOCAL.dbt_target,
        "TAXI_DBT_PG_HOST": url.hostname or "127.0.0.1",
        "TAXI_DBT_PG_PORT": str(url.port or 5432),
        "TAXI_DBT_PG_USER": unquote(url.username or ""),
        "TAXI_DBT_PG_PASSWORD": unquote(url.password or ""),
        "TAXI_DBT_PG_DBNAME": unquote(url.path.lstrip("/")) or "postgres",
        "TAXI_WAREHOUSE_SCHEMA": wh.warehouse_schema_name(),
        "TAXI_DBT_SCHEMA": dbt_schema_name(wh),
    }


@contextmanager
def dbt_build_lock(wh) -> Iterator[None]:
    """A session advisory lock, held on its own connection while dbt runs in a subprocess."""
    key = f"dbt:{wh.dbt_schema}"
    with wh.connect("dbt build lock") as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (LOCK_NAMESPACE, key))
        try:
            yield
        finally:
            cur.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (LOCK_NAMESPACE, key))


def dbt_model_figures(
    wh, model: str, sums: Sequence[str], month_column: str | None, months: Sequence[date]
) -> dict[date | None, tuple]:
    """See `TripWarehouse.dbt_model_figures`."""
    table = sql.Identifier(dbt_schema_name(wh), validate_identifier(model, "dbt model"))
    figures = sql.SQL("").join(
        sql.SQL(", sum({})").format(sql.Identifier(validate_identifier(c, "dbt model column"))) for c in sums
    )
    params: tuple = ()
    if month_column is None:
        query = sql.SQL("SELECT NULL, count(*){} FROM {}").format(figures, table)
    else:
        month = sql.Identifier(validate_identifier(month_column, "dbt model column"))
        query = sql.SQL("SELECT {m}, count(*){f} FROM {t} WHERE {m} = ANY(%s) GROUP BY 1").format(
            m=month, f=figures, t=table
        )
        params = (list(months),)
    with wh.connect(f"read {model}") as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return {row[0]: tuple(row[1:]) for row in cur.fetchall()}


def top_pickup_zones(wh, months: Sequence[date], limit: int) -> list[ZoneRevenue]:
    """See `TripWarehouse.top_pickup_zones`: the months and the limit travel as parameters."""
    if not months:
        return []  # (an empty array has no type in SQL)
    query = sql.SQL(
        "SELECT revenue_zone, revenue_borough, service_type, coalesce(sum(revenue_monthly_total_amount), 0), "
        "sum(total_monthly_trips) FROM {} WHERE revenue_month = ANY(%s) "
        "GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3 LIMIT %s"
    ).format(sql.Identifier(dbt_schema_name(wh), ZONE_REVENUE_MODEL))
    with wh.connect("top pickup zones") as conn, conn.cursor() as cur:
        cur.execute(query, (list(months), int(limit)))
        return [
            ZoneRevenue(zone, borough, service, Decimal(revenue), int(trips))
            for zone, borough, service, revenue, trips in cur.fetchall()
        ]
