"""Independent expectations computed from a release file with Python's csv module (no SQL)."""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass
from pathlib import Path

from taxi_platform.datasets import DatasetSpec
from taxi_platform.trip_id import trip_id_from_csv_row


@dataclass
class Expected:
    rows: int  # data rows in the file
    ids: dict[str, list[str]]  # distinct trip id -> first row with that id (file order)

    @property
    def distinct(self) -> int:
        return len(self.ids)

    @property
    def duplicates(self) -> int:
        return self.rows - self.distinct


def expected_from_file(spec: DatasetSpec, path: Path) -> Expected:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        ids: dict[str, list[str]] = {}
        rows = 0
        for row in reader:
            rows += 1
            ids.setdefault(trip_id_from_csv_row(spec, row), row)
    return Expected(rows=rows, ids=ids)


def gzip_csv(src: Path, dest: Path, transform=None) -> Path:
    """Gzip a CSV (optionally rewriting its text) into `dest`."""
    data = src.read_bytes()
    if transform is not None:
        data = transform(data)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(dest, "wb") as out:
        out.write(data)
    return dest


def read_gz(path: Path) -> bytes:
    with gzip.open(path, "rb") as fh:
        return fh.read()


def write_gz(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as out:
        out.write(data)


def csv_lines(data: bytes) -> list[bytes]:
    return io.BytesIO(data).read().splitlines(keepends=True)


# --- damaged release files: the bad input the tests feed the platform -------------------------


def truncate_gzip(path: Path) -> None:
    """Cut the compressed file at two thirds: the gzip stream ends early."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def cut_row(path: Path, line: int, keep: int) -> None:
    """Keep only the first `keep` fields of file line `line` (1-based, the header is line 1)."""
    lines = csv_lines(read_gz(path))
    lines[line - 1] = b",".join(lines[line - 1].split(b",")[:keep]) + b"\n"
    write_gz(path, b"".join(lines))


def set_value(path: Path, spec: DatasetSpec, line: int, column: str, value: bytes) -> None:
    """Replace the value of `column` on file line `line` (1-based, the header is line 1)."""
    lines = csv_lines(read_gz(path))
    fields = lines[line - 1].split(b",")
    fields[spec.csv_columns.index(column)] = value
    lines[line - 1] = b",".join(fields)
    write_gz(path, b"".join(lines))
