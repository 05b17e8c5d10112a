"""What the trip and reference assets record per partition: the metadata of a download, a staged
month and a replaced month, and the table schema the UI shows."""

from datetime import date
from typing import Any

import dagster as dg

from taxi_platform.datasets import DatasetSpec
from taxi_platform.lake.handles import LakeFile
from taxi_platform.redact import mask_url
from taxi_platform.source.download import DownloadResult
from taxi_platform.warehouse.base import ReplaceResult, StagingResult, cost_metadata

# The sha256 of the file whose rows a staging / final partition holds.
STAGED_SHA256 = "source_sha256"
# Dagster's standard metadata keys: the UI shows the table's name and its columns.
TABLE_NAME = "dagster/table_name"
COLUMN_SCHEMA = "dagster/column_schema"
ROW_COUNT = "dagster/row_count"


def trip_table_schema(spec: DatasetSpec) -> dg.TableSchema:
    """The columns of a staging / final table: the id, the file, then the file's columns."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                "unique_row_id",
                "text",
                description="MD5 of the trip's identity fields "
                f"({', '.join(spec.identity_columns)}), canonical texts joined by '|'",
            ),
            dg.TableColumn("filename", "text", description="the release file the row was loaded from"),
            *(dg.TableColumn(c.name, c.type.value) for c in spec.columns),
        ]
    )


def source_url_metadata(url: str) -> dg.MetadataValue:
    """A link only where it leads somewhere later: a local mirror's port or a file:// path is dead
    or meaningless in the UI after the run, so those are plain text."""
    masked = mask_url(url)
    return dg.MetadataValue.url(masked) if masked.startswith("https://") else dg.MetadataValue.text(masked)


# Numbers that would only make meaningless per-month charts (the UI plots every numeric entry):
# `previous_rows` (what the month held before, 0 on a first load) and the download's attempts are
# text; the attempts are in the run's log too.
def download_metadata(result: DownloadResult) -> dict:
    """`rows` is the file's own count: the Parquet footer's, or the CSV's data lines."""
    if result.file_format == "parquet":
        shape: dict[str, Any] = {
            "schema_fingerprint": dg.MetadataValue.text(result.schema_fingerprint or ""),
            "row_groups": dg.MetadataValue.text(str(result.row_groups)),
        }
    else:
        shape = {
            "uncompressed_bytes": dg.MetadataValue.int(result.decompressed_bytes),
            "line_ending": "CRLF" if result.line_ending == "\r\n" else "LF",
        }
    return {
        "source_url": source_url_metadata(result.url),
        "file_format": dg.MetadataValue.text(result.file_format),
        "bytes": dg.MetadataValue.int(result.bytes),
        "sha256": result.sha256,
        "rows": dg.MetadataValue.int(result.rows),
        **shape,
        "download_attempts": dg.MetadataValue.text(str(result.attempts)),
        "duration_seconds": round(result.seconds, 2),
    }


def staging_metadata(result: StagingResult, lake_file: LakeFile) -> dict:
    """A staged month (`TripWarehouse.load_staging`'s result): its table, rows, and the file."""
    read: dict[str, Any] = (
        {}
        if result.rows_read is None
        else {
            "rows_read": dg.MetadataValue.int(result.rows_read),
            "duplicates_dropped": dg.MetadataValue.int(result.rows_read - result.rows),
        }
    )
    if result.sha256:
        read[STAGED_SHA256] = result.sha256
    if result.schema_era:  # Parquet: the era the file matched, and its schema's fingerprint
        read["schema_era"] = dg.MetadataValue.text(result.schema_era)
        read["schema_fingerprint"] = dg.MetadataValue.text(result.schema_fingerprint or "")
    return {
        TABLE_NAME: result.table,
        ROW_COUNT: dg.MetadataValue.int(result.rows),
        **read,
        "source_file": lake_file.uri,
        "duration_seconds": round(result.seconds, 2),
        **cost_metadata(result),
    }


def replace_metadata(spec: DatasetSpec, month: date, result: ReplaceResult) -> dict:
    """A month replaced in the final table (`TripWarehouse.replace_month`'s result)."""
    return {
        TABLE_NAME: result.table,
        "filename": spec.file_name(month),
        ROW_COUNT: dg.MetadataValue.int(result.final_rows),
        "staged_rows": dg.MetadataValue.int(result.staged_rows),
        "duplicates_dropped": dg.MetadataValue.int(result.duplicates_dropped),
        "previous_rows": dg.MetadataValue.text(str(result.previous_rows)),
        "duration_seconds": round(result.seconds, 2),
        **({STAGED_SHA256: result.sha256} if result.sha256 else {}),
        **({"staged_by_run": result.staged_by_run} if result.staged_by_run else {}),
        **cost_metadata(result),
    }
