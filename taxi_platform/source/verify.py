"""Inspection of a release file while it streams: gzip completeness, header, field counts, rows."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from taxi_platform.datasets import DatasetSpec
from taxi_platform.engine.csv_blocks import BOM, MAX_LINE_BYTES, expected_header, header_mismatch
from taxi_platform.source.gzip_stream import GzipDecompressor, TruncatedGzipError, iter_decompressed

MAX_REFERENCE_BYTES = 16 << 20


class InvalidReleaseFile(ValueError):
    """A release file that must not be loaded; the message names the file (and line)."""


@dataclass(frozen=True)
class Inspection:
    rows: int  # data rows, header excluded (Parquet: the footer's row count)
    decompressed_bytes: int  # Parquet: the row groups' uncompressed size
    line_ending: str  # "" for a Parquet file
    file_format: str = "csv.gz"  # "csv.gz", "csv" (reference files) or "parquet"
    # Parquet only: a short hash of the column names and physical types (parquet_verify.py), the
    # number of row groups, and the (name, Arrow type) of each column in file order.
    schema_fingerprint: str | None = None
    row_groups: int | None = None
    columns: tuple[tuple[str, str], ...] = ()


class Inspector(Protocol):
    """Verifies a file from the chunks of one download attempt."""

    def feed(self, data: bytes) -> None: ...

    def finish(self, local_copy: Path | None = None) -> Inspection: ...


class CsvInspector:
    """Fed with compressed chunks as they arrive; `finish()` verifies the whole file.

    The rules are the ingest engine's (engine/csv_blocks.py), so a file verified here loads: a
    UTF-8 BOM before the header and blank lines are accepted, quoted fields are read as CSV, and a
    file needs at least one data row (a month without trips is never a real release). Trip files
    rarely hold quotes or blank lines, so a comma count per file tells whether every line has the
    header's number of fields; only when it does not, or the file holds a quote, is the file read
    again, as CSV, to count its rows or to name the first bad line.
    """

    def __init__(self, spec: DatasetSpec, file_name: str) -> None:
        self.spec = spec
        self.file_name = file_name
        self._gz = GzipDecompressor()
        self._head = bytearray()  # bytes up to the end of the header line
        self._header_done = False
        self._newlines = 0
        self._commas = 0
        self._quotes = 0
        self._last_byte = b""
        self._crlf = False

    def feed(self, compressed: bytes) -> None:
        try:
            for piece in self._gz.feed(compressed):
                self._consume(piece)
        except ValueError as exc:
            if isinstance(exc, InvalidReleaseFile):
                raise
            raise InvalidReleaseFile(f"{self.file_name}: {exc}") from None

    def _consume(self, data: bytes) -> None:
        if not data:
            return
        if not self._header_done:
            self._head += data[:MAX_LINE_BYTES]
            if b"\n" in self._head:
                line = bytes(self._head[: self._head.index(b"\n")])
                self._crlf = line.endswith(b"\r")
                self._check_header(line)
                self._header_done = True
            elif len(self._head) >= MAX_LINE_BYTES:
                raise InvalidReleaseFile(
                    f"{self.file_name} line 1: no line end in the first "
                    f"{MAX_LINE_BYTES >> 20} MB (not a CSV file?)"
                )
        self._newlines += data.count(b"\n")
        self._commas += data.count(b",")
        self._quotes += data.count(b'"')
        self._last_byte = data[-1:]

    def _check_header(self, line: bytes) -> None:
        text = line.removeprefix(BOM).rstrip(b"\r")
        if text != expected_header(self.spec.csv_columns):
            raise InvalidReleaseFile(
                f"{self.file_name} line 1: the header does not match the {self.spec.name} spec "
                f"({header_mismatch(text, self.spec.csv_columns)}); expected: "
                f"{','.join(self.spec.csv_columns)}"
            )

    def finish(self, local_copy: Path | None = None) -> Inspection:
        try:
            self._consume(self._gz.finish())
        except TruncatedGzipError as exc:
            raise InvalidReleaseFile(f"{self.file_name}: {exc}") from None
        if not self._header_done:
            if self._head.strip():
                self._check_header(bytes(self._head))
                raise InvalidReleaseFile(
                    f"{self.file_name}: the file holds a header and no rows "
                    "(a month without trips is not a release)"
                )
            raise InvalidReleaseFile(f"{self.file_name}: the file is empty (no header line)")
        lines = self._newlines + (1 if self._last_byte not in (b"\n", b"") else 0)
        rows = lines - 1
        if self._quotes or self._commas != lines * (len(self.spec.csv_columns) - 1):
            rows = self._rescan(local_copy)
        if rows == 0:
            raise InvalidReleaseFile(
                f"{self.file_name}: the file holds a header and no rows "
                "(a month without trips is not a release)"
            )
        return Inspection(
            rows=rows,
            decompressed_bytes=self._gz.decompressed_bytes,
            line_ending="\r\n" if self._crlf else "\n",
        )

    def _rescan(self, local_copy: Path | None) -> int:
        """The data rows of a file whose comma count is off: blank lines skipped, quoted fields
        read as CSV; the first line with another number of fields is named."""
        expected = len(self.spec.csv_columns)
        if local_copy is None:
            raise InvalidReleaseFile(f"{self.file_name}: some line does not have {expected} fields")
        rows = 0
        with open(local_copy, "rb") as fh:
            for number, line in _numbered_lines(iter_decompressed(fh), self.file_name):
                if number == 1:
                    continue
                fields = _field_count(line, self.file_name, number)
                if fields == 0:
                    continue  # a blank line
                if fields != expected:
                    raise InvalidReleaseFile(
                        f"{self.file_name} line {number}: {fields} fields, expected {expected} "
                        f"({'too few' if fields < expected else 'too many'}; a truncated or malformed row)"
                    )
                rows += 1
        return rows


def _numbered_lines(chunks: Iterator[bytes], file_name: str) -> Iterator[tuple[int, bytes]]:
    number, pending = 0, b""
    for chunk in chunks:
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            number += 1
            yield number, line
        if len(pending) > MAX_LINE_BYTES:  # bounded memory, whatever the file holds
            raise InvalidReleaseFile(
                f"{file_name} line {number + 1}: a line longer than "
                f"{MAX_LINE_BYTES >> 20} MB (not a trip file?)"
            )
    if pending:
        yield number + 1, pending


def _field_count(line: bytes, file_name: str, number: int) -> int:
    """Fields of one line (0 for a blank line); quotes are CSV quotes. Trip files hold no line
    breaks inside fields, so a quote left open at the end of its line is an error of that line."""
    line = line.rstrip(b"\r")
    if not line:
        return 0
    if b'"' not in line:
        return line.count(b",") + 1
    if line.count(b'"') % 2:
        raise InvalidReleaseFile(f"{file_name} line {number}: a quoted field is not closed on its line")
    text = line[:MAX_LINE_BYTES].decode("utf-8", "replace")
    return len(next(csv.reader([text])))


class PlainCsvInspector:
    """For small uncompressed reference files (the zone lookup): header check and row count."""

    def __init__(self, file_name: str, expected_header: list[str]) -> None:
        self.file_name = file_name
        self.expected_header = expected_header
        self._data = bytearray()

    def feed(self, data: bytes) -> None:
        self._data += data
        if len(self._data) > MAX_REFERENCE_BYTES:
            raise InvalidReleaseFile(
                f"{self.file_name}: larger than {MAX_REFERENCE_BYTES >> 20} MB "
                "(the zone lookup holds about 12 KB): not the reference file"
            )

    def finish(self, local_copy: Path | None = None) -> Inspection:
        text = self._data.decode("utf-8-sig", errors="replace")
        rows = list(csv.reader(io.StringIO(text, newline="")))
        if not rows or rows[0] != self.expected_header:
            raise InvalidReleaseFile(
                f"{self.file_name} line 1: the header is {rows[0] if rows else 'missing'}, expected "
                f"{self.expected_header}"
            )
        for number, row in enumerate(rows[1:], start=2):
            if len(row) != len(self.expected_header):
                raise InvalidReleaseFile(
                    f"{self.file_name} line {number}: {len(row)} fields, expected {len(self.expected_header)}"
                )
        return Inspection(
            rows=len(rows) - 1,
            decompressed_bytes=len(self._data),
            line_ending="\r\n" if b"\r\n" in self._data[:4096] else "\n",
            file_format="csv",
        )
