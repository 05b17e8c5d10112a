"""Inspection of a release file while it streams: gzip completeness, header, field counts, rows."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from taxi_platform.datasets import DatasetSpec
from taxi_platform.source.gzip_stream import GzipDecompressor, TruncatedGzipError, iter_decompressed


class InvalidReleaseFile(ValueError):
    """A release file that must not be loaded; the message names the file (and line)."""


@dataclass(frozen=True)
class Inspection:
    rows: int  # data rows, header excluded
    decompressed_bytes: int
    line_ending: str


class Inspector(Protocol):
    """Verifies a file from the chunks of one download attempt."""

    def feed(self, data: bytes) -> None: ...

    def finish(self, local_copy: Path | None = None) -> Inspection: ...


class CsvInspector:
    """Fed with compressed chunks as they arrive; `finish()` verifies the whole file.

    Trip files hold no quoted fields, so a comma count per file tells whether every line has the
    header's number of fields; only when it does not is the file scanned again to name the line.
    """

    def __init__(self, spec: DatasetSpec, file_name: str) -> None:
        self.spec = spec
        self.file_name = file_name
        self._gz = GzipDecompressor()
        self._head = bytearray()  # bytes up to the end of the header line
        self._header: list[str] | None = None
        self._newlines = 0
        self._commas = 0
        self._last_byte = b""
        self._crlf = False

    def feed(self, compressed: bytes) -> None:
        try:
            self._consume(self._gz.feed(compressed))
        except ValueError as exc:
            raise InvalidReleaseFile(f"{self.file_name}: {exc}") from None

    def _consume(self, data: bytes) -> None:
        if not data:
            return
        if self._header is None:
            self._head += data[:65536]
            if b"\n" in self._head:
                line = bytes(self._head[: self._head.index(b"\n")])
                self._crlf = line.endswith(b"\r")
                self._check_header(line.rstrip(b"\r").decode("utf-8", errors="replace"))
        self._newlines += data.count(b"\n")
        self._commas += data.count(b",")
        self._last_byte = data[-1:]

    def _check_header(self, line: str) -> None:
        found = line.lstrip("\ufeff").split(",")
        expected = list(self.spec.column_names)
        if found != expected:
            missing = [c for c in expected if c not in found]
            unexpected = [c for c in found if c not in expected]
            detail = []
            if missing:
                detail.append(f"missing {', '.join(missing)}")
            if unexpected:
                detail.append(f"unexpected {', '.join(unexpected)}")
            if not detail:
                detail.append("columns in a different order")
            raise InvalidReleaseFile(
                f"{self.file_name} line 1: the header does not match the {self.spec.name} spec "
                f"({'; '.join(detail)}); expected: {','.join(expected)}"
            )
        self._header = found

    def finish(self, local_copy: Path | None = None) -> Inspection:
        try:
            self._consume(self._gz.finish())
        except TruncatedGzipError as exc:
            raise InvalidReleaseFile(f"{self.file_name}: {exc}") from None
        if self._header is None:
            if self._head:
                self._check_header(self._head.rstrip(b"\r\n").decode("utf-8", errors="replace"))
            raise InvalidReleaseFile(f"{self.file_name}: the file is empty or holds only a header")
        lines = self._newlines + (1 if self._last_byte not in (b"\n", b"") else 0)
        rows = lines - 1
        per_line = len(self.spec.columns) - 1
        if self._commas != lines * per_line:
            raise self._locate_bad_line(local_copy)
        return Inspection(rows=rows, decompressed_bytes=self._gz.decompressed_bytes,
                          line_ending="\r\n" if self._crlf else "\n")

    def _locate_bad_line(self, local_copy: Path | None) -> InvalidReleaseFile:
        expected = len(self.spec.columns)
        if local_copy is not None:
            with open(local_copy, "rb") as fh:
                number, pending = 0, b""
                for chunk in iter_decompressed(fh):
                    lines = (pending + chunk).split(b"\n")
                    pending = lines.pop()
                    for line in lines:
                        number += 1
                        fields = line.count(b",") + 1
                        if fields != expected:
                            return self._bad_line(number, fields, expected)
                if pending:
                    number += 1
                    fields = pending.count(b",") + 1
                    if fields != expected:
                        return self._bad_line(number, fields, expected)
        return InvalidReleaseFile(
            f"{self.file_name}: some line does not have {expected} fields"
        )

    def _bad_line(self, number: int, fields: int, expected: int) -> InvalidReleaseFile:
        return InvalidReleaseFile(
            f"{self.file_name} line {number}: {fields} fields, expected {expected} "
            f"({'too few' if fields < expected else 'too many'}; a truncated or malformed row)"
        )


class PlainCsvInspector:
    """For small uncompressed reference files (the zone lookup): header check and row count."""

    def __init__(self, file_name: str, expected_header: list[str]) -> None:
        self.file_name = file_name
        self.expected_header = expected_header
        self._data = bytearray()

    def feed(self, data: bytes) -> None:
        self._data += data

    def finish(self, local_copy: Path | None = None) -> Inspection:
        text = self._data.decode("utf-8-sig", errors="replace")
        rows = list(csv.reader(io.StringIO(text, newline="")))
        if not rows or rows[0] != self.expected_header:
            raise InvalidReleaseFile(
                f"{self.file_name} line 1: the header is {rows[0] if rows else 'missing'}, expected "
                f"{self.expected_header}")
        for number, row in enumerate(rows[1:], start=2):
            if len(row) != len(self.expected_header):
                raise InvalidReleaseFile(
                    f"{self.file_name} line {number}: {len(row)} fields, expected {len(self.expected_header)}")
        return Inspection(rows=len(rows) - 1, decompressed_bytes=len(self._data),
                          line_ending="\r\n" if b"\r\n" in self._data[:4096] else "\n")
