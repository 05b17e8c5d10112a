"""TLC Parquet files for the loader's tests: the real files and rows beside the repository, a
file written back from the real 2020-04 rows, a green table to damage, the loader's two calls
(stage, then replace) on any target, and the trips a file holds computed independently with
pyarrow and the reference id definition."""

from __future__ import annotations

import csv
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from support.paths import REPO
from taxi_platform.datasets import ALL_DATASETS, DatasetSpec
from taxi_platform.eras import era_of_month
from taxi_platform.lake.handles import LakeFile
from taxi_platform.trip_id import trip_id_from_values

SHARED = REPO.parent / "shared" / "data"
REAL_PARQUET = SHARED / "real_parquet"
REAL_ROWS = SHARED / "real_samples" / "tlc_2020-04_rows"
APRIL = date(2020, 4, 1)


def parquet_spec(name: str) -> DatasetSpec:
    return replace(ALL_DATASETS[name], file_extension="parquet")


def lake_file(path: Path) -> LakeFile:
    return LakeFile(
        uri=path.as_uri(), file_name=path.name, size=path.stat().st_size, opener=lambda: open(path, "rb")
    )


def load(env, spec: DatasetSpec, month: date, path: Path):
    wh = env.warehouse()
    staged = wh.load_staging(spec, month, lake_file(path), lambda _m: None, run_id="t")
    replaced = wh.replace_month(spec, month, lambda _m: None, run_id="t", staged_sha256=staged.sha256)
    return staged, replaced


def canonical_values(spec: DatasetSpec, row: dict, era_columns) -> dict:
    """A file row's identity values as the loader reads them (rename and decimals by the rules)."""
    values = {}
    for col in era_columns:
        if col.target in spec.identity_columns:
            value = row[col.name]
            if isinstance(value, float):
                value = (
                    Decimal(str(round(value, 6)))
                    if spec.column(col.target).type.value == "decimal"
                    else int(value)
                )
            values[col.target] = value
    return {name: values.get(name) for name in spec.identity_columns}


def expected_trips(spec: DatasetSpec, path: Path, money: str | None) -> tuple[set[str], int, Decimal]:
    """(distinct ids, rows, sum of `money` over the first occurrence of each id), in file order."""
    table = pq.read_table(path)
    era = next(e for e in spec.eras if set(e.column_names) == set(table.column_names))
    ids: set[str] = set()
    total = Decimal(0)
    for row in table.to_pylist():
        trip = trip_id_from_values(spec, canonical_values(spec, row, era.columns))
        if trip in ids:
            continue
        ids.add(trip)
        if money and row[money] is not None:
            total += Decimal(str(round(row[money], 6)))
    return ids, table.num_rows, total


def rows_as_parquet(spec: DatasetSpec, dest: Path) -> Path:
    """The real 2020-04 rows (CSV exported from the TLC's Parquet) written back as the Parquet
    file of their era, with its physical types."""
    era = era_of_month(spec.eras, APRIL)
    types = era.arrow_types(APRIL)
    with open(REAL_ROWS / f"{spec.name}_tripdatasample_2020-04.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        records = list(reader)
    arrays = []
    for col in era.columns:
        texts = [r[col.name] if r[col.name] != "" else None for r in records]
        type_ = types[col.name]
        if type_ == "null":
            arrays.append(pa.nulls(len(texts)))
        elif type_.startswith("timestamp"):
            values = [None if t is None else datetime.fromisoformat(t) for t in texts]
            arrays.append(pa.array(values, pa.timestamp("us")))
        else:
            arrays.append(pa.array(texts, pa.string()).cast(pa.type_for_alias(type_)))
    path = dest / spec.file_name(APRIL)
    pq.write_table(pa.table(arrays, names=list(era.column_names)), path)
    return path


def green_table(**changes) -> pa.Table:
    table = pq.read_table(REAL_PARQUET / "green_tripdata_2023-04.parquet").slice(0, 500)
    for name, array in changes.items():
        index = table.column_names.index(name)
        table = table.set_column(index, name, array)
    return table


def write(table: pa.Table, tmp_path: Path, name: str = "green_tripdata_2023-04.parquet") -> Path:
    path = tmp_path / name
    pq.write_table(table, path)
    return path
