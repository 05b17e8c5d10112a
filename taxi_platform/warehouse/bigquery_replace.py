"""A month's replace in BigQuery: ONE multi-statement transaction DELETEs the file's rows and INSERTs
the distinct staged trips, then COMMITs; a failure rolls it back and leaves the table as it was.

Rows sharing an id: PostgreSQL keeps the first in file order; a BigQuery load job keeps no row
order, so here the kept row is the smallest by all columns (deterministic). Exact duplicate rows,
the ones the files hold, give the same result on both.
"""

from __future__ import annotations

import time
from datetime import date

from taxi_platform.datasets import DatasetSpec
from taxi_platform.partitions import next_month
from taxi_platform.warehouse.base import IdProfile, Log, ReplaceResult, WarehouseError, refuse_wrong_month
from taxi_platform.warehouse.bigquery_jobs import JobCost, checked_file_name
from taxi_platform.warehouse.sql import bq_ident
from taxi_platform.warehouse.staged_month import StagedMonth


def replace_month(
    wh, spec: DatasetSpec, month: date, log: Log, run_id: str = "", staged_sha256: str | None = None
) -> ReplaceResult:
    """Replace the month's rows of the final table with the distinct staged trips, in ONE
    multi-statement transaction (`wh` is the BigQueryWarehouse)."""
    from google.api_core import exceptions as gexc
    from google.cloud import bigquery

    started = time.monotonic()
    file_name = checked_file_name(spec.file_name(month))
    cost = JobCost()
    file_param = [bigquery.ScalarQueryParameter("file", "STRING", file_name)]
    with wh.client(f"replace {file_name}") as client:
        wh.ensure_datasets(client)
        final = wh.ensure_final_table(client, spec)
        staging_ds = wh.datasets()[1]
        staging_name = wh.month_table_name(spec, month)
        try:
            staged_month = StagedMonth.parse(
                client.get_table(wh.table_ref(client, staging_ds, staging_name)).description
            )
        except gexc.NotFound:
            raise WarehouseError(
                f"no staging table {wh.staging_table(spec, month)}: materialize the "
                f"{spec.name} staging asset for {month:%Y-%m} first"
            ) from None
        staging = wh.quoted_table_ref(client, staging_ds, staging_name)
        quoted_final = f"`{final}`"
        pickup = bq_ident(spec.pickup_column)
        month_params = [
            *file_param,
            bigquery.ScalarQueryParameter("start", "TIMESTAMP", f"{month:%Y-%m-%d} 00:00:00"),
            bigquery.ScalarQueryParameter("end", "TIMESTAMP", f"{next_month(month):%Y-%m-%d} 00:00:00"),
        ]
        ((staged, in_month, previous),) = [
            tuple(r.values())
            for r in wh.run_query(
                client,
                (
                    f"SELECT (SELECT COUNT(*) FROM {staging}), "
                    f"(SELECT COUNTIF({pickup} >= @start AND {pickup} < @end) FROM {staging}), "
                    f"(SELECT COUNT(*) FROM {quoted_final} WHERE filename = @file)"
                ),
                cost,
                month_params,
            )
        ]
        if staged == 0:
            raise WarehouseError(
                f"staging table {wh.staging_table(spec, month)} is empty: "
                "re-materialize the staging asset for this month"
            )
        refuse_wrong_month(file_name, month, staged, in_month)
        columns = ", ".join(bq_ident(c) for c in spec.column_names)
        insert = (
            f"INSERT INTO {quoted_final} (unique_row_id, filename, {columns})\n"
            f"SELECT unique_row_id, filename, {columns} FROM {staging}\n"
            f"QUALIFY ROW_NUMBER() OVER (PARTITION BY unique_row_id ORDER BY {columns}) = 1"
        )
        estimated = wh.estimate_bytes(client, insert)
        # One transaction: a failure anywhere rolls back to the month's previous rows. Among
        # rows sharing an id the smallest by all columns is kept (load jobs keep no file order).
        wh.run_query(
            client,
            (
                "BEGIN TRANSACTION;\n"
                f"DELETE FROM {quoted_final} WHERE filename = '{file_name}';\n"
                f"{insert};\n"
                "COMMIT TRANSACTION;"
            ),
            cost,
        )
        ((final_rows, distinct_ids),) = [
            tuple(r.values())
            for r in wh.run_query(
                client,
                f"SELECT COUNT(*), COUNT(DISTINCT unique_row_id) FROM {quoted_final} WHERE filename = @file",
                cost,
                file_param,
            )
        ]
    log(
        f"{file_name}: {final_rows:,} trips in {wh.final_table(spec)} "
        f"({staged - final_rows:,} duplicates dropped, {previous:,} rows replaced)"
    )
    return ReplaceResult(
        table=wh.final_table(spec),
        # A Parquet month's staging kept each trip's first row already: the file's rows read.
        staged_rows=staged_month.read if staged_month else staged,
        final_rows=final_rows,
        previous_rows=previous,
        seconds=time.monotonic() - started,
        bytes_processed=cost.processed,
        bytes_billed=cost.billed,
        bytes_estimated=estimated,
        ids=IdProfile(rows=final_rows, distinct_ids=distinct_ids),
    )
