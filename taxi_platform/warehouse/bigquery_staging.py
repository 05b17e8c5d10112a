"""A month's staging table in BigQuery.

A course CSV month: a load job reads gs://<bucket>/<tag>/<file> into <table>_load (load jobs cannot
compute columns), then CREATE OR REPLACE TABLE ... AS SELECT adds the trip id and the file name, and
the load table is dropped. A TLC Parquet month: typed and deduplicated by DuckDB here, then one load
job (`bigquery_parquet.py`); what the replace reports travels in the table's description.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

from taxi_platform.datasets import DatasetSpec
from taxi_platform.lake.handles import LakeFile
from taxi_platform.warehouse.base import Log, StagingResult, WarehouseError
from taxi_platform.warehouse.bigquery_jobs import BQ_TYPES, JobCost, checked_file_name, job_message, load_rows
from taxi_platform.warehouse.bigquery_parquet import load_staging_parquet, scratch_dir, staging_parquet
from taxi_platform.warehouse.bigquery_trip_id import bigquery_trip_id_sql
from taxi_platform.warehouse.sql import bq_ident
from taxi_platform.warehouse.staged_month import StagedMonth


def load_staging(
    wh, spec: DatasetSpec, month: date, lake_file: LakeFile, log: Log, run_id: str = ""
) -> StagingResult:
    """Replace the month's staging table (`wh` is the BigQueryWarehouse)."""
    from google.cloud import bigquery

    started = time.monotonic()
    if spec.file_extension == "parquet":
        return _load_staging_parquet(wh, spec, month, lake_file, log, started, run_id)
    file_name = checked_file_name(spec.file_name(month))
    if not lake_file.uri.startswith("gs://"):
        raise WarehouseError(
            f"BigQuery loads {file_name} from Cloud Storage, but the lake "
            f"holds it at {lake_file.uri}: use the GCS lake (TAXI_TARGET=gcp)"
        )
    cost = JobCost()
    staging_name = wh.month_table_name(spec, month)
    with wh.client(f"staging {file_name}") as client:
        wh.ensure_datasets(client)
        staging_ds = wh.datasets()[1]
        load_ref = wh.table_ref(client, staging_ds, staging_name + "_load")
        config = bigquery.LoadJobConfig(
            schema=wh.schema_fields([spec.column(name) for name in spec.csv_columns]),
            source_format=bigquery.SourceFormat.CSV,
            skip_leading_rows=1,
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
            create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
            max_bad_records=0,
            allow_jagged_rows=False,
            allow_quoted_newlines=False,
            encoding="UTF-8",
            field_delimiter=",",
        )
        job = client.load_table_from_uri(lake_file.uri, load_ref, job_config=config)
        rows = load_rows(job, file_name, cost)
        log(f"{file_name}: {rows:,} rows loaded from {lake_file.uri} into {load_ref}")
        # The file's columns, and NULL for the columns of other eras (one schema per dataset).
        columns = ", ".join(
            bq_ident(c.name)
            if c.name in spec.csv_columns
            else f"CAST(NULL AS {BQ_TYPES[c.type]}) AS {bq_ident(c.name)}"
            for c in spec.columns
        )
        # The id and the file name: computed here, since a load job cannot compute columns.
        wh.run_query(
            client,
            (
                f"CREATE OR REPLACE TABLE {wh.quoted_table_ref(client, staging_ds, staging_name)} AS "
                f"SELECT {bigquery_trip_id_sql(spec)} AS unique_row_id, '{file_name}' AS filename, "
                f"{columns} FROM {wh.quoted_table_ref(client, staging_ds, staging_name + '_load')}"
            ),
            cost,
        )
        client.delete_table(load_ref, not_found_ok=True)
    log(f"{file_name}: {rows:,} rows staged in {wh.staging_table(spec, month)}")
    return StagingResult(
        table=wh.staging_table(spec, month),
        rows=rows,
        seconds=time.monotonic() - started,
        bytes_processed=cost.processed,
        bytes_billed=cost.billed,
    )


def _staging_schema(wh, spec: DatasetSpec) -> list:
    from google.cloud import bigquery

    return [
        bigquery.SchemaField("unique_row_id", "STRING"),
        bigquery.SchemaField("filename", "STRING"),
        *wh.schema_fields(spec.columns),
    ]


def _load_staging_parquet(
    wh, spec: DatasetSpec, month: date, lake_file: LakeFile, log: Log, started: float, run_id: str
) -> StagingResult:
    """A TLC Parquet month: typed and deduplicated by DuckDB here, then one load job
    (bigquery_parquet.py)."""
    file_name = checked_file_name(spec.file_name(month))
    cost = JobCost()
    with scratch_dir() as scratch:
        path, found = staging_parquet(
            spec,
            month,
            lake_file,
            Path(scratch),
            memory_limit=wh.engine_memory,
            redact=lambda message: message,  # DuckDB sees no credential on this path
            log=log,
        )
        with wh.client(f"staging {file_name}") as client:
            wh.ensure_datasets(client)
            ref = wh.table_ref(client, wh.datasets()[1], wh.month_table_name(spec, month))
            job = load_staging_parquet(
                client,
                ref,
                _staging_schema(wh, spec),
                path,
                lambda exc, job: f"{file_name}: {job_message(exc, job)}",
            )
            cost.add(job)
            rows = int(job.output_rows or 0)
            if rows != found.kept:
                raise WarehouseError(
                    f"{file_name}: the load job wrote {rows:,} rows of the {found.kept:,} sent"
                )
            # What the replace reports (rows read, duplicates dropped) travels with the table,
            # in the same words as PostgreSQL's staging comment.
            table = client.get_table(ref)
            table.description = StagedMonth(
                rows=rows,
                distinct=rows,
                read=found.read,
                in_month=found.in_month,
                run_id=run_id,
                sha256=found.sha256,
            ).comment(file_name)
            client.update_table(table, ["description"])
    log(
        f"{file_name}: {found.read:,} rows read, {found.dropped:,} duplicates dropped, "
        f"{rows:,} rows staged in {wh.staging_table(spec, month)} by a load job"
    )
    return StagingResult(
        table=wh.staging_table(spec, month),
        rows=rows,
        seconds=time.monotonic() - started,
        bytes_processed=cost.processed,
        bytes_billed=cost.billed,
        rows_read=found.read,
        sha256=found.sha256,
        schema_era=found.q.era.name,
        schema_fingerprint=found.schema.fingerprint,
    )
