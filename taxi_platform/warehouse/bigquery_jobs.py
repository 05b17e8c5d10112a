"""BigQuery jobs: their column types, their cost (bytes processed / billed), their error texts, and
the file names allowed into their SQL text."""

from __future__ import annotations

import re
from typing import Any

from taxi_platform.datasets import ColumnType
from taxi_platform.warehouse.base import BadInputError, WarehouseError

BQ_TYPES = {
    ColumnType.INTEGER: "INT64",
    ColumnType.TIMESTAMP: "TIMESTAMP",
    ColumnType.DECIMAL: "NUMERIC",
    ColumnType.TEXT: "STRING",
    ColumnType.DOUBLE: "FLOAT64",
}
# File names reach the replace script as literals (the emulator binds no parameters inside a
# script): only names of this shape are accepted.
_SAFE_FILE_NAME = re.compile(r"^[a-z0-9_]+_tripdata_[0-9]{4}-[0-9]{2}\.(csv\.gz|parquet)$")


class JobCost:
    """Bytes processed / billed, summed over the jobs of one operation (None: none reported)."""

    def __init__(self) -> None:
        self.processed: int | None = None
        self.billed: int | None = None

    def add(self, job: Any) -> Any:
        for attr, mine in (("total_bytes_processed", "processed"), ("total_bytes_billed", "billed")):
            value = getattr(job, attr, None)
            if value is not None:
                setattr(self, mine, (getattr(self, mine) or 0) + int(value))
        return job


def checked_file_name(file_name: str) -> str:
    """`file_name`, if it has the shape of a month's file name (it may then appear in SQL text)."""
    if not _SAFE_FILE_NAME.fullmatch(file_name):
        raise WarehouseError(f"refusing file name {file_name!r} in BigQuery SQL")
    return file_name


def raise_if_over_budget(exc: Exception, job: Any, limit: int) -> None:
    """BigQuery refused a query for costing more than maximum_bytes_billed: say which setting."""
    reasons = {e.get("reason") for e in (getattr(exc, "errors", None) or []) if isinstance(e, dict)}
    if "bytesBilledLimitExceeded" in reasons:
        raise WarehouseError(
            f"a query would bill more than TAXI_BQ_MAX_BYTES_BILLED={limit:,} bytes and was not run "
            f"({job_message(exc, job)}); raise the setting if the cost is expected"
        ) from None


def job_message(exc: Exception, job: Any = None) -> str:
    """The job's own error texts (BigQuery lists one per bad row/field), else the API message."""
    texts = []
    for error in getattr(job, "errors", None) or getattr(exc, "errors", None) or []:
        message = error.get("message") if isinstance(error, dict) else None
        if message and message not in texts:
            texts.append(message)
    text = "; ".join(texts[:5]) or getattr(exc, "message", None) or str(exc)
    return " ".join(text.split())[:2000]


def load_rows(job: Any, file_name: str, cost: JobCost) -> int:
    """Waits for a load job from a file; its rows. A refused file is bad input, named with the job's
    own error texts (the bad row and field)."""
    from google.api_core import exceptions as gexc

    try:
        job.result()
    except gexc.GoogleAPICallError as exc:
        raise BadInputError(f"{file_name}: {job_message(exc, job)}") from None
    cost.add(job)
    return int(job.output_rows or 0)
