"""A TLC Parquet month into BigQuery's staging table, by a load job.

The raw file comes from the lake (streamed to a scratch folder in chunks); DuckDB reads it in the
same two passes as for PostgreSQL (`engine/parquet_month.py`: the era, the casts, the duplicates)
and writes the rows kept, already in the staging table's shape (unique_row_id, filename, the
dataset's columns in canonical types), as one Parquet file; a load job (free, unlike DML) puts it
into the month's staging table. So a trip has the same id on both targets, the same rows are kept
(the first occurrence in file order), and a value that does not fit fails naming the file, row and
column before BigQuery is touched.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from taxi_platform.datasets import ColumnType, DatasetSpec
from taxi_platform.engine.parquet_month import (
    ReadMonth,
    named_errors,
    quote_ident,
    quote_text,
    read_parquet_month,
)
from taxi_platform.lake.handles import LakeFile
from taxi_platform.warehouse.base import BadInputError, Log

COPY_CHUNK = 8 << 20  # bytes per read while copying the raw file out of the lake


def staging_parquet(
    spec: DatasetSpec,
    month: date,
    lake_file: LakeFile,
    scratch: Path,
    *,
    memory_limit: str,
    redact: Callable[[str], str],
    log: Log,
) -> tuple[Path, ReadMonth]:
    """The month's staging rows as a Parquet file in `scratch`, and what the passes found."""
    file_name = spec.file_name(month)
    source = _local_copy(lake_file, scratch)
    out = scratch / f"{spec.table_name}_{month:%Y_%m}.staging.parquet"
    with read_parquet_month(
        spec, month, source, memory_limit=memory_limit, spill_dir=str(scratch), redact=redact
    ) as (con, found):
        # Timestamps leave as UTC instants (Parquet's isAdjustedToUTC), which BigQuery loads into
        # TIMESTAMP unambiguously; the CSV path's load job reads the same wall times as UTC.
        columns = ", ".join(
            f"CAST({quote_ident(c.name)} AS TIMESTAMPTZ) AS {quote_ident(c.name)}"
            if c.type is ColumnType.TIMESTAMP
            else quote_ident(c.name)
            for c in spec.columns
        )
        with named_errors(file_name, redact):
            con.execute("SET TimeZone = 'UTC'")
            con.execute(
                f"COPY (SELECT unique_row_id, filename, {columns} FROM ({found.kept_rows(spec)})) "
                f"TO {quote_text(str(out))} (FORMAT PARQUET, COMPRESSION zstd)"
            )
    log(f"{file_name}: era {found.q.era.name} (schema {found.schema.fingerprint}), {found.read:,} rows read")
    return out, found


def _local_copy(lake_file: LakeFile, scratch: Path) -> Path:
    """The raw file on local disk: the lake's own path, or a copy streamed from Cloud Storage."""
    parts = urlsplit(lake_file.uri)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    target = scratch / lake_file.file_name
    with lake_file.open() as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, COPY_CHUNK)
    if target.stat().st_size != lake_file.size:
        raise BadInputError(
            f"{lake_file.file_name}: {target.stat().st_size:,} bytes read from {lake_file.uri}, "
            f"the lake says {lake_file.size:,}"
        )
    return target


def load_staging_parquet(
    client: Any, staging_ref: str, schema: list, path: Path, on_error: Callable[[Exception, Any], str]
) -> Any:
    """The load job: the file into `staging_ref` (replaced), with the staging table's schema."""
    from google.api_core import exceptions as gexc
    from google.cloud import bigquery

    config = bigquery.LoadJobConfig(
        schema=schema,
        source_format=bigquery.SourceFormat.PARQUET,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
    )
    with open(path, "rb") as fh:
        job = client.load_table_from_file(fh, staging_ref, job_config=config, rewind=True)
    try:
        job.result()
    except gexc.GoogleAPICallError as exc:
        raise BadInputError(on_error(exc, job)) from None
    return job


def scratch_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="taxi-bq-parquet-")
