"""What the COPY of a month's file needs around it: the file hashed as it is read, COPY's errors
named by the file's own line, and a progress line every few seconds."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from typing import BinaryIO

import psycopg2

from taxi_platform.engine.copy_stream import StreamStats
from taxi_platform.warehouse.base import Log

PROGRESS_EVERY_SECONDS = 10.0


class HashingReader:
    """A binary file whose bytes are hashed (sha256) as they are read."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._sha.update(data)
        return data

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


_COPY_CONTEXT = re.compile(r"line (\d+)(?:, column (\w+))?")


def copy_error_message(file_name: str, exc: psycopg2.Error, stats: StreamStats | None = None) -> str:
    """`yellow_tripdata_2019-01.csv.gz line 5, column fare_amount: invalid input syntax ...`:
    COPY's line number turned into the file's (the header and blank lines are not sent)."""
    primary = (exc.diag.message_primary or str(exc)).strip()
    match = _COPY_CONTEXT.search(exc.diag.context or "")
    if not match:
        return f"{file_name}: {primary}"
    line = int(match.group(1))
    line = stats.file_line(line) if stats is not None else line
    where = f"line {line}" + (f", column {match.group(2)}" if match.group(2) else "")
    return f"{file_name} {where}: {primary}"


def progress_reporter(file_name: str, log: Log) -> Callable[[StreamStats], None]:
    """A callback for each block the engine sends: logs the MB and rows so far, at most every
    PROGRESS_EVERY_SECONDS (a month takes minutes; the run's log should show it moving)."""
    state = {"last": time.monotonic()}

    def report(stats: StreamStats) -> None:
        now = time.monotonic()
        if now - state["last"] >= PROGRESS_EVERY_SECONDS:
            state["last"] = now
            log(f"{file_name}: {stats.bytes_in / 1e6:,.0f} MB loaded, about {stats.rows:,} rows")

    return report
