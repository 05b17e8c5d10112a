"""BigQuery and the dbt project: the `bigquery` output dbt's profile gets (auth included), and the
reads of the models dbt built (figures for the UI, the demo's report)."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Sequence
from datetime import date
from decimal import Decimal

from taxi_platform.settings import validate_identifier
from taxi_platform.target import GCP
from taxi_platform.warehouse.base import ZONE_REVENUE_MODEL, ZoneRevenue
from taxi_platform.warehouse.bigquery_jobs import JobCost
from taxi_platform.warehouse.sql import bq_ident


def dbt_dataset_name(wh) -> str:
    return validate_identifier(wh.dbt_dataset, "TAXI_DBT_SCHEMA")


def dbt_env(wh) -> dict[str, str]:
    """The `bigquery` output of profiles.yml: project, location, datasets, endpoint, auth.

    Auth: a key file as `service-account`; the base64 key decoded into a private temporary
    key file (mode 600, removed at exit) as `service-account`; anonymous (emulators) as
    `oauth-secrets` with a placeholder token; else `oauth` (application-default credentials).
    """
    bq = wh.bigquery
    env = {
        "TAXI_DBT_TARGET": GCP.dbt_target,
        "TAXI_GCP_PROJECT": bq.project or "",
        "TAXI_GCP_LOCATION": bq.location or "US",
        "TAXI_WAREHOUSE_SCHEMA": wh.datasets()[0],
        "TAXI_DBT_SCHEMA": dbt_dataset_name(wh),
        "TAXI_BQ_API_ENDPOINT": getattr(bq, "api_endpoint", None) or "",
        "TAXI_DBT_BQ_METHOD": "oauth",
        "TAXI_DBT_BQ_KEYFILE": "",
        "TAXI_DBT_BQ_TOKEN": "",
        "TAXI_DBT_BQ_MAX_BYTES_BILLED": str(wh.max_bytes_billed),
    }
    if bq.gcp_credentials:
        env.update(TAXI_DBT_BQ_METHOD="service-account", TAXI_DBT_BQ_KEYFILE=_b64_keyfile(bq.gcp_credentials))
    elif getattr(bq, "credentials_file", None):
        env.update(TAXI_DBT_BQ_METHOD="service-account", TAXI_DBT_BQ_KEYFILE=bq.credentials_file)
    elif getattr(bq, "anonymous", False):
        env.update(TAXI_DBT_BQ_METHOD="oauth-secrets", TAXI_DBT_BQ_TOKEN="anonymous-emulator")
    return env


_KEYFILES: dict[str, str] = {}


def _b64_keyfile(b64: str) -> str:
    """dbt-bigquery reads a key from a file or from YAML; the decoded key goes to a 600 file in a
    700 folder of this process, once, deleted at exit."""
    import atexit
    import json
    import shutil

    from taxi_platform.gcp.credentials import read_credentials_b64

    if b64 not in _KEYFILES:
        info = read_credentials_b64(b64)
        folder = tempfile.mkdtemp(prefix="taxi-dbt-key-")
        path = os.path.join(folder, "key.json")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w") as fh:
            json.dump(info, fh)
        atexit.register(shutil.rmtree, folder, True)
        _KEYFILES[b64] = path
    return _KEYFILES[b64]


def dbt_model_figures(
    wh, model: str, sums: Sequence[str], month_column: str | None, months: Sequence[date]
) -> dict[date | None, tuple]:
    """See `TripWarehouse.dbt_model_figures`."""
    from google.cloud import bigquery

    figures = "".join(f", SUM({bq_ident(validate_identifier(c, 'dbt model column'))})" for c in sums)
    with wh.client(f"read {model}") as client:
        table = wh.quoted_table_ref(client, dbt_dataset_name(wh), validate_identifier(model, "dbt model"))
        if month_column is None:
            rows = wh.run_query(client, f"SELECT NULL, COUNT(*){figures} FROM {table}", JobCost())
        else:
            month = bq_ident(validate_identifier(month_column, "dbt model column"))
            rows = wh.run_query(
                client,
                f"SELECT {month}, COUNT(*){figures} FROM {table} WHERE {month} IN UNNEST(@months) GROUP BY 1",
                JobCost(),
                [bigquery.ArrayQueryParameter("months", "DATE", list(months))],
            )
    return {row[0]: tuple(row.values()[1:]) for row in rows}


def top_pickup_zones(wh, months: Sequence[date], limit: int) -> list[ZoneRevenue]:
    """See `TripWarehouse.top_pickup_zones`: the months and the limit travel as parameters."""
    if not months:
        return []  # (an empty array has no type in SQL)
    from google.cloud import bigquery

    with wh.client("top pickup zones") as client:
        table = wh.quoted_table_ref(client, dbt_dataset_name(wh), ZONE_REVENUE_MODEL)
        rows = wh.run_query(
            client,
            "SELECT revenue_zone, revenue_borough, service_type, "
            "COALESCE(SUM(revenue_monthly_total_amount), 0), SUM(total_monthly_trips) "
            f"FROM {table} WHERE revenue_month IN UNNEST(@months) "
            "GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3 LIMIT @limit",
            JobCost(),
            [
                bigquery.ArrayQueryParameter("months", "DATE", list(months)),
                bigquery.ScalarQueryParameter("limit", "INT64", int(limit)),
            ],
        )
    # NUMERIC arrives as Decimal (a float on the emulator): Decimal either way, as PostgreSQL's.
    return [
        ZoneRevenue(zone, borough, service, Decimal(str(revenue)), int(trips))
        for zone, borough, service, revenue, trips in (tuple(row.values()) for row in rows)
    ]
