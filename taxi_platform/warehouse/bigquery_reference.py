"""A reference table (the zone lookup) replaced whole in BigQuery by one WRITE_TRUNCATE load job:
atomic, the table keeps its old rows if the load fails."""

from __future__ import annotations

import time

from taxi_platform.datasets import ReferenceSpec
from taxi_platform.lake.handles import LakeFile
from taxi_platform.warehouse.base import Log, ReferenceResult, WarehouseError
from taxi_platform.warehouse.bigquery_jobs import JobCost, load_rows


def load_reference(wh, ref: ReferenceSpec, lake_file: LakeFile, log: Log) -> ReferenceResult:
    """Replace `<dataset>.<ref.name>` with the file's rows; `wh` is the BigQueryWarehouse."""
    from google.api_core import exceptions as gexc
    from google.cloud import bigquery

    started = time.monotonic()
    if not lake_file.uri.startswith("gs://"):
        raise WarehouseError(
            f"BigQuery loads {ref.file_name} from Cloud Storage, but the lake "
            f"holds it at {lake_file.uri}: use the GCS lake (TAXI_TARGET=gcp)"
        )
    cost = JobCost()
    with wh.client(f"load {ref.file_name}") as client:
        wh.ensure_datasets(client)
        table_ref = wh.table_ref(client, wh.datasets()[0], ref.name)
        try:
            previous = int(client.get_table(table_ref).num_rows or 0)
        except gexc.NotFound:
            previous = 0
        # WRITE_TRUNCATE: the load replaces the table atomically when it succeeds.
        config = bigquery.LoadJobConfig(
            schema=wh.schema_fields(ref.columns),
            source_format=bigquery.SourceFormat.CSV,
            skip_leading_rows=1,
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
            max_bad_records=0,
            encoding="UTF-8",
        )
        job = client.load_table_from_uri(lake_file.uri, table_ref, job_config=config)
        rows = load_rows(job, ref.file_name, cost)
    log(f"{ref.file_name}: {rows:,} rows in {table_ref}")
    return ReferenceResult(
        table=table_ref,
        rows=rows,
        previous_rows=previous,
        seconds=time.monotonic() - started,
        bytes_processed=cost.processed,
        bytes_billed=cost.billed,
    )
