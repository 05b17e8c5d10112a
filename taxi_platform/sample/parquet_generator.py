"""Generated TLC Parquet months: any dataset, in the schema era of its month, at any size.

A file has exactly the era's columns in file order and the physical types the TLC wrote that
month (`SchemaEra.arrow_types`), gzip before 2023-02 and zstd after (as the TLC's writers did), and
the real quirks in known amounts: out-of-month pickups and exact duplicate rows. Output is a pure
function of (spec, month, era, rows, seed, row_group_rows): the same arguments give the same bytes.

Layout: row groups of `row_group_rows` rows, each covering a consecutive slice of the month (so the
file runs roughly in pickup order), generated two at a time in threads and written one by one, so
memory stays bounded whatever the size (a 20 M-row fhvhv month). No two generated trips share a
pickup and dropoff time (distinct within a row group, disjoint windows across them, out-of-month
trips drawn together outside the month), so the trips are distinct by every dataset's identity
columns and the duplicate count is exact.
"""

from __future__ import annotations

import csv
import hashlib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from taxi_platform.datasets import ColumnType, DatasetSpec
from taxi_platform.eras import SchemaEra, era_of_month
from taxi_platform.partitions import add_months
from taxi_platform.sample import _parquet_values as values
from taxi_platform.sample._trips import Trips
from taxi_platform.sample.zones import write_zone_lookup

DEFAULT_ROWS = 1_000
ROW_GROUP_ROWS = 1_000_000
WORKERS = 2  # row groups generated at once (numpy and pyarrow release the GIL)
OUT_OF_MONTH_SHARE = 0.002
DUPLICATE_SHARE = 0.0005
ZSTD_FROM = date(2023, 2, 1)  # the TLC's writer switched from gzip to zstd with the 2023-02 files
# Rows of a recent month (TLC_PARQUET.md) for months the listing does not hold.
TYPICAL_ROWS = {"yellow": 3_300_000, "green": 55_000, "fhv": 1_300_000, "fhvhv": 20_000_000}
# The per-file listing of the live bucket (rows, bytes, Last-Modified), 2009-01 .. 2024-05.
LISTING_DIR = Path(__file__).resolve().parents[3] / "shared" / "reference" / "tlc_release_metadata"

Rows = int | Literal["real"] | None


@dataclass(frozen=True)
class GeneratedParquet:
    """What `generate_parquet_month` wrote, with exact counts and sums."""

    path: Path
    dataset: str
    month: date
    era: str  # SchemaEra.name
    rows: int  # including duplicates
    distinct_rows: int  # distinct by the dataset's identity columns
    duplicate_rows: int  # exact copies of an earlier row of the file (rows - distinct_rows)
    out_of_month_rows: int  # pickup outside the month (duplicates of such rows included)
    row_groups: int
    compression: str
    sums: dict[str, Decimal]  # money columns (file names) over all rows, to the cent; NULL skipped
    distinct_sums: dict[str, Decimal]  # the same over distinct rows (what a loader keeps)


@dataclass(frozen=True)
class ListedFile:
    """One file of the TLC's listing."""

    rows: int
    size: int
    modified: datetime


def parquet_name(spec: DatasetSpec, month: date) -> str:
    """`yellow_tripdata_2024-01.parquet`: the TLC's file name of a month."""
    return f"{spec.name}_tripdata_{month:%Y-%m}.parquet"


@cache
def release_listing(listing_dir: Path = LISTING_DIR) -> dict[str, ListedFile]:
    """The listing's files by name ({} when the listing folder is absent)."""
    listed: dict[str, ListedFile] = {}
    for path in sorted(Path(listing_dir).glob("*_tripmetadata_*.csv")):
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                modified = datetime.fromisoformat(row["file_modification_time"])
                listed[row["file_name"]] = ListedFile(
                    int(row["file_num_rows"]), int(row["file_size_bytes"]), modified
                )
    return listed


def real_rows(spec: DatasetSpec, month: date) -> int:
    """The month's row count in the listing, else the typical size of a recent month."""
    listed = release_listing().get(parquet_name(spec, month))
    return listed.rows if listed else TYPICAL_ROWS.get(spec.name, 1_000_000)


def generate_parquet_month(
    spec: DatasetSpec,
    month: date,
    dest: Path,
    *,
    rows: Rows = None,
    seed: int = 0,
    row_group_rows: int = ROW_GROUP_ROWS,
    era: SchemaEra | None = None,
    compression: str | None = None,
) -> GeneratedParquet:
    """Write a month of `spec` trips as the TLC's Parquet file of that month to `dest`."""
    month = month.replace(day=1)
    era = era or era_of_month(spec.eras, month)
    n = DEFAULT_ROWS if rows is None else real_rows(spec, month) if rows == "real" else int(rows)
    if n < 0 or row_group_rows < 1:
        raise ValueError("rows must be >= 0 and row_group_rows >= 1")
    compression = compression or ("zstd" if month >= ZSTD_FROM else "gzip")
    rng = _rng(seed, spec, month, era)
    plan = _plan(n, month, row_group_rows)
    oom_rng, *group_rngs = rng.spawn(1 + len(plan))
    oom = values.draw_out_of_month(oom_rng, spec.name, month, sum(g.out_of_month for g in plan))
    money = tuple(c.name for c in era.columns if _is_money(spec, c.target))
    jobs, used = [], 0
    for group, group_rng in zip(plan, group_rngs):
        group_oom = oom[used : used + group.out_of_month]
        jobs.append((group_rng, spec.name, month, era, group, group_oom, money))
        used += group.out_of_month
    sums = dict.fromkeys(money, 0)
    distinct_sums = dict.fromkeys(money, 0)
    out_of_month = 0
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    # gzip at level 1: the same codec as the TLC's files, ten times faster than pyarrow's default.
    level = 1 if compression == "gzip" else None
    try:
        with pq.ParquetWriter(
            tmp, values.schema(era, month), compression=compression, compression_level=level
        ) as writer:
            for table, group_oom, group_sums, group_distinct in _ordered_map(_row_group, jobs):
                writer.write_table(table, row_group_size=len(table))
                out_of_month += group_oom
                for name in money:
                    sums[name] += group_sums[name]
                    distinct_sums[name] += group_distinct[name]
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    duplicates = sum(g.duplicates for g in plan)
    return GeneratedParquet(
        path=dest,
        dataset=spec.name,
        month=month,
        era=era.name,
        rows=n,
        distinct_rows=n - duplicates,
        duplicate_rows=duplicates,
        out_of_month_rows=out_of_month,
        row_groups=len(plan),
        compression=compression,
        sums={k: Decimal(v).scaleb(-2) for k, v in sums.items()},
        distinct_sums={k: Decimal(v).scaleb(-2) for k, v in distinct_sums.items()},
    )


def write_tlc_tree(
    root: Path,
    specs: Iterable[DatasetSpec],
    months: Iterable[date],
    *,
    rows: Rows | Callable[[DatasetSpec, date], Rows] = None,
    seed: int = 0,
    row_group_rows: int = ROW_GROUP_ROWS,
    listing_mtimes: bool = True,
) -> list[GeneratedParquet]:
    """Write the CloudFront layout: `root/trip-data/<ds>_tripdata_<YYYY-MM>.parquet` and
    `root/misc/taxi_zone_lookup.csv`; months before a dataset's first month are skipped."""
    root = Path(root)
    months = [m.replace(day=1) for m in months]
    written = []
    for spec in specs:
        for month in months:
            if month < spec.first_month:
                continue
            n = rows(spec, month) if callable(rows) else rows
            path = root / "trip-data" / parquet_name(spec, month)
            written.append(
                generate_parquet_month(spec, month, path, rows=n, seed=seed, row_group_rows=row_group_rows)
            )
            listed = release_listing().get(path.name)
            if listing_mtimes and listed:  # HEAD then answers the real Last-Modified
                os.utime(path, (listed.modified.timestamp(), listed.modified.timestamp()))
    write_zone_lookup(root / "misc" / "taxi_zone_lookup.csv")
    return written


@dataclass(frozen=True)
class _Group:
    """One row group: `rows` lines, fresh trips drawn in [lo, hi), plus out-of-month and copies."""

    rows: int
    lo: int
    hi: int
    out_of_month: int
    duplicates: int


def _rng(seed: int, spec: DatasetSpec, month: date, era: SchemaEra) -> np.random.Generator:
    # A stable hash (hash() is salted per process), so every run draws the same values.
    digest = hashlib.sha256(f"parquet:{seed}:{spec.name}:{month:%Y-%m}:{era.name}".encode()).digest()
    return np.random.default_rng(np.random.SeedSequence(int.from_bytes(digest[:16], "big")))


def _plan(rows: int, month: date, group_rows: int) -> list[_Group]:
    """Row groups over consecutive slices of the month, with their share of the quirks."""
    k = -(-rows // group_rows)
    sizes = [min(group_rows, rows - i * group_rows) for i in range(k)]
    lo, hi = values.epoch(month), values.epoch(add_months(month, 1))
    oom = _apportion(round(rows * OUT_OF_MONTH_SHARE) or min(2, rows // 200), sizes)
    dup = _apportion(round(rows * DUPLICATE_SHARE) or min(3, rows // 200), sizes)
    groups = []
    for i, (n, k_oom, k_dup) in enumerate(zip(sizes, oom, dup)):
        # The first row of a group stays a fresh trip: a duplicate copies an earlier row.
        k_oom = min(k_oom, max(n - 1, 0))
        k_dup = min(k_dup, max(n - 1 - k_oom, 0))
        groups.append(_Group(n, lo + (hi - lo) * i // k, lo + (hi - lo) * (i + 1) // k, k_oom, k_dup))
    return groups


def _apportion(total: int, weights: list[int]) -> list[int]:
    """Integers proportional to weights that sum to total."""
    cum = np.cumsum(weights, dtype=np.float64)
    if not len(cum) or cum[-1] == 0:
        return [0] * len(weights)
    return np.diff(np.rint(total * cum / cum[-1]).astype(np.int64), prepend=0).tolist()


def _row_group(
    rng: np.random.Generator,
    dataset: str,
    month: date,
    era: SchemaEra,
    group: _Group,
    oom: Trips,
    money: tuple[str, ...],
) -> tuple[pa.Table, int, dict[str, int], dict[str, int]]:
    """A row group's table, its out-of-month rows, and its money sums (cents) over all its rows
    and over its distinct rows."""
    fresh = group.rows - group.out_of_month - group.duplicates
    lo = np.full(fresh, group.lo, dtype=np.int64)
    hi = np.full(fresh, group.hi, dtype=np.int64)
    trips = Trips.concat([values.draw_trips(rng, dataset, month, lo, hi), oom])
    unique = values.columns(rng, dataset, month, era, trips)
    order = _line_order(rng, group.rows, fresh, group.out_of_month, group.duplicates)
    table = unique.take(pa.array(order))
    sums = {name: _cents(table[name]) for name in money}
    distinct = {name: _cents(unique[name]) for name in money}
    return table, int(np.count_nonzero(order >= fresh)), sums, distinct


def _line_order(rng: np.random.Generator, n: int, fresh: int, k_oom: int, k_dup: int) -> np.ndarray:
    """Which distinct row each line shows: fresh ones in order, out-of-month ones and copies at
    random lines (never the first); a copy repeats the nearest earlier original line."""
    slots = rng.choice(n - 1, k_oom + k_dup, replace=False) + 1 if k_oom + k_dup else np.zeros(0, int)
    oom_at, dup_at = slots[:k_oom], slots[k_oom:]
    original = np.ones(n, dtype=bool)
    original[dup_at] = False
    is_fresh = original.copy()
    is_fresh[oom_at] = False
    order = np.empty(n, dtype=np.int64)
    order[is_fresh] = np.arange(fresh)
    order[oom_at] = fresh + np.arange(k_oom)
    last_original = np.maximum.accumulate(np.where(original, np.arange(n), 0))
    order[dup_at] = order[last_original[dup_at]]
    return order


def _is_money(spec: DatasetSpec, target: str) -> bool:
    # Decimal columns are money, but for the distances.
    return spec.column(target).type is ColumnType.DECIMAL and target not in ("trip_distance", "trip_miles")


def _cents(column: pa.ChunkedArray) -> int:
    if pa.types.is_null(column.type) or column.null_count == len(column):
        return 0
    return int(pc.sum(pc.round(pc.multiply(column, 100))).as_py())


def _ordered_map(fn: Callable[..., tuple], jobs: list[tuple], workers: int = WORKERS) -> Iterator[tuple]:
    """fn(*job) for each job, in order, `workers` at a time with a bounded look-ahead."""
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[tuple]] = deque()
        for job in jobs:
            pending.append(pool.submit(fn, *job))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
