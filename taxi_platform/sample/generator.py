"""Realistic monthly trip files, byte-compatible with the release files of the TLC CSV mirror.

A generated `<tag>_tripdata_<YYYY-MM>.csv.gz` has the spec's header and columns, the real value
formats, and the real quirks in known amounts: out-of-month pickups, exact duplicate rows, the
unattributed tail block of 2020+ months, an empty congestion_surcharge in 2019-01, LF or CRLF line
ends. Output is a pure function of (spec, month, rows, seed, line_ending).

File layout: a main block of attributed trips, split into chunks that each cover a consecutive
slice of the month (so the file runs roughly in pickup order), then the tail block. Out-of-month
rows are generated up front and scattered over the main block; duplicates copy an earlier row of
their own chunk. No two generated trips coincide (distinct pickup/dropoff pairs within a chunk,
disjoint time windows across chunks, empty columns setting the tail apart), so the reported
duplicate count is exact. Chunks are rendered two at a time in threads: numpy releases the GIL.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TypeVar

import numpy as np
from isal import igzip

from taxi_platform.datasets import DatasetSpec
from taxi_platform.partitions import add_months
from taxi_platform.sample import _render as render
from taxi_platform.sample._csv_fields import csv_fields
from taxi_platform.sample._trips import DEFAULT_PROFILE, PROFILES, Profile, Trips, simulate

CHUNK_ROWS = 250_000  # bounds memory (~400 MB at two workers) whatever the month size
WORKERS = 2  # chunks rendered at once
OUT_OF_MONTH_SHARE = 0.002
DUPLICATE_SHARE = 0.0005
UNATTRIBUTED_SHARE = 0.03
UNATTRIBUTED_FROM = date(2020, 1, 1)  # months from here on end with the unattributed block
CONGESTION_FROM = date(2019, 2, 1)  # the surcharge began 2019-02-01: empty column before
YEARS_OFF = (2008, 2009, 2088)  # far-off pickup years seen in the real files
LINE_ENDINGS = ("\n", "\r\n")

Result = TypeVar("Result")


@dataclass(frozen=True)
class GeneratedFile:
    """What `generate_month` wrote, with exact counts of the quirks it put in."""

    path: Path
    dataset: str
    month: date
    rows: int  # data rows written (excluding header, including duplicates)
    duplicate_rows: int  # rows that are exact byte copies of an earlier row in the same file
    out_of_month_rows: int  # rows whose pickup is outside the month
    unattributed_rows: int  # rows of the empty-VendorID tail block
    line_ending: str


@dataclass(frozen=True)
class _Chunk:
    """A run of consecutive lines generated together."""

    attributed: bool  # False: the unattributed tail block
    rows: int
    lo: int  # pickup window of its fresh trips, epoch seconds [lo, hi)
    hi: int
    out_of_month: int  # pre-generated out-of-month rows placed in it
    duplicates: int


@dataclass(frozen=True)
class _Context:
    spec: DatasetSpec
    month: date
    congestion: bool

    @property
    def profile(self) -> Profile:
        return PROFILES.get(self.spec.name, DEFAULT_PROFILE)


def generate_month(
    spec: DatasetSpec,
    month: date,
    dest: Path,
    *,
    rows: int,
    seed: int = 0,
    line_ending: str = "\n",
    compresslevel: int = 1,
) -> GeneratedFile:
    """Write a month of `spec` trips with `rows` data rows to the `.csv.gz` file `dest`."""
    if line_ending not in LINE_ENDINGS:
        raise ValueError(f"line_ending must be one of {LINE_ENDINGS!r}")
    if rows < 0:
        raise ValueError("rows must be >= 0")
    month = month.replace(day=1)
    ctx = _Context(spec, month, congestion=month >= CONGESTION_FROM)
    rng = _rng(seed, spec, month)
    chunks = _plan(spec, month, rows)
    oom_rng, *chunk_rngs = rng.spawn(1 + len(chunks))
    oom_trips = _out_of_month_trips(oom_rng, ctx, sum(c.out_of_month for c in chunks))
    days = _day_table(month, oom_trips)
    eol = line_ending.encode()
    main_layout = render.Layout(csv_fields(spec, ctx.congestion, days, attributed=True), eol)
    tail_layout = render.Layout(csv_fields(spec, ctx.congestion, days, attributed=False), eol)

    jobs = []
    used = 0
    for chunk, chunk_rng in zip(chunks, chunk_rngs):
        layout = main_layout if chunk.attributed else tail_layout
        jobs.append((chunk_rng, ctx, chunk, layout, oom_trips[used : used + chunk.out_of_month]))
        used += chunk.out_of_month
    out_of_month = 0

    def blocks() -> Iterator[np.ndarray]:
        nonlocal out_of_month
        for block, chunk_out_of_month in _ordered_map(_chunk_block, jobs):
            out_of_month += chunk_out_of_month
            yield block

    header = ",".join(spec.csv_columns).encode() + eol
    _write_gzip(Path(dest), header, blocks(), compresslevel)
    return GeneratedFile(
        path=Path(dest),
        dataset=spec.name,
        month=month,
        rows=rows,
        duplicate_rows=sum(c.duplicates for c in chunks),
        out_of_month_rows=out_of_month,
        unattributed_rows=sum(c.rows for c in chunks if not c.attributed),
        line_ending=line_ending,
    )


def _rng(seed: int, spec: DatasetSpec, month: date) -> np.random.Generator:
    # A stable hash (not hash(), which is salted per process) so every run draws the same values.
    digest = hashlib.sha256(f"{seed}:{spec.name}:{month:%Y-%m}".encode()).digest()
    return np.random.default_rng(np.random.SeedSequence(int.from_bytes(digest[:16], "big")))


def _epoch(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def _plan(spec: DatasetSpec, month: date, rows: int) -> list[_Chunk]:
    """Split the file into chunks and share out the out-of-month rows and duplicates."""
    has_tail = month >= UNATTRIBUTED_FROM and bool(spec.unattributed_columns)
    tail = 0
    if has_tail:
        tail = max(round(rows * UNATTRIBUTED_SHARE), 1 if rows >= 100 else 0)
    main = rows - tail
    lo, hi = _epoch(month), _epoch(add_months(month, 1))
    shapes = [(True, n, w) for n, w in _windows(main, lo, hi)]
    shapes += [(False, n, w) for n, w in _windows(tail, lo, hi)]

    out_of_month = round(main * OUT_OF_MONTH_SHARE) or (1 if main >= 500 else 0)
    oom = _apportion(out_of_month, [n if attributed else 0 for attributed, n, _ in shapes])
    duplicates = round(rows * DUPLICATE_SHARE) or (1 if rows >= 1000 else 0)
    dup = _apportion(duplicates, [n - 1 for _, n, _ in shapes])
    chunks = []
    for (attributed, n, (w_lo, w_hi)), k_oom, k_dup in zip(shapes, oom, dup):
        # Every chunk keeps its first row original: duplicates need an earlier row to copy.
        k_oom = min(k_oom, n - 1)
        k_dup = min(k_dup, n - 1 - k_oom)
        chunks.append(_Chunk(attributed, n, w_lo, w_hi, k_oom, k_dup))
    return chunks


def _windows(rows: int, lo: int, hi: int) -> list[tuple[int, tuple[int, int]]]:
    """(rows, pickup window) per chunk: consecutive, disjoint slices of [lo, hi)."""
    k = -(-rows // CHUNK_ROWS)
    span = hi - lo
    return [
        (min(CHUNK_ROWS, rows - i * CHUNK_ROWS), (lo + span * i // k, lo + span * (i + 1) // k))
        for i in range(k)
    ]


def _apportion(total: int, weights: list[int]) -> list[int]:
    """Integers proportional to weights that sum to total (when any weight is positive)."""
    cum = np.cumsum([max(w, 0) for w in weights], dtype=np.float64)
    if not len(cum) or cum[-1] == 0:
        return [0] * len(weights)
    bounds = np.rint(total * cum / cum[-1]).astype(np.int64)
    return np.diff(bounds, prepend=0).tolist()


def _out_of_month_trips(rng: np.random.Generator, ctx: _Context, n: int) -> Trips:
    """The out-of-month trips, shuffled: mostly the previous month, a few after, a few years off."""
    after = min(n // 4, 1 + n // 1000)
    years_off = min(n // 4, 1 + n // 2000)
    before = n - after - years_off
    start = _epoch(ctx.month)
    prev = _epoch(add_months(ctx.month, -1))
    nxt = _epoch(add_months(ctx.month, 1))
    # Half of the early ones start on the evening before the month, like trips spanning midnight.
    late = before // 2
    windows = [(start - 6 * 3600, start, late), (prev, start, before - late), (nxt, nxt + 86_400, after)]
    for year in rng.choice(YEARS_OFF, years_off):
        far = ctx.month.replace(year=int(year))
        windows.append((_epoch(far), _epoch(add_months(far, 1)), 1))
    lo = np.concatenate([np.full(k, a, dtype=np.int64) for a, _, k in windows])
    hi = np.concatenate([np.full(k, b, dtype=np.int64) for _, b, k in windows])
    trips = simulate(rng, lo, hi, profile=ctx.profile, attributed=True, congestion=ctx.congestion)
    return trips.take(rng.permutation(n))


def _day_table(month: date, oom: Trips) -> render.DayTable:
    """Date strings for every day a pickup or dropoff of the file can fall on."""
    first = _epoch(add_months(month, -1)) // render.SECONDS_PER_DAY
    last = _epoch(add_months(month, 1)) // render.SECONDS_PER_DAY + 1
    if len(oom):
        first = min(first, int(oom.pickup.min()) // render.SECONDS_PER_DAY)
        last = max(last, int(oom.dropoff.max()) // render.SECONDS_PER_DAY)
    return render.DayTable.covering(first, last)


def _ordered_map(fn: Callable[..., Result], jobs: list[tuple], workers: int = WORKERS) -> Iterator[Result]:
    """fn(*job) for each job, in order, computed `workers` at a time (numpy releases the GIL)."""
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[Result]] = deque()
        for job in jobs:
            pending.append(pool.submit(fn, *job))
            if len(pending) > workers:  # bounded look-ahead keeps memory bounded
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _chunk_block(
    rng: np.random.Generator, ctx: _Context, chunk: _Chunk, layout: render.Layout, out_of_month: Trips
) -> tuple[np.ndarray, int]:
    """The CSV bytes of a chunk and how many of its rows are out-of-month rows."""
    lines, count = _chunk_lines(rng, ctx, chunk, layout, out_of_month)
    return render.compact(lines), count


def _chunk_lines(
    rng: np.random.Generator, ctx: _Context, chunk: _Chunk, layout: render.Layout, out_of_month: Trips
) -> tuple[np.ndarray, int]:
    """The rendered lines of a chunk and how many of them are out-of-month rows."""
    n, k_oom, k_dup = chunk.rows, chunk.out_of_month, chunk.duplicates
    fresh = n - k_oom - k_dup
    lo = np.full(fresh, chunk.lo, dtype=np.int64)
    hi = np.full(fresh, chunk.hi, dtype=np.int64)
    trips = simulate(rng, lo, hi, profile=ctx.profile, attributed=chunk.attributed, congestion=ctx.congestion)
    order = _line_order(rng, n, fresh, k_oom, k_dup)
    lines = np.empty((n, layout.width), dtype=np.uint8)
    layout.render(lines, Trips.concat([trips, out_of_month]).take(order))
    return lines, int(np.count_nonzero(order >= fresh))


def _line_order(rng: np.random.Generator, n: int, fresh: int, k_oom: int, k_dup: int) -> np.ndarray:
    """Which trip each line of a chunk shows: `fresh` trips, then `k_oom` out-of-month ones.

    The fresh trips keep their (pickup) order; the out-of-month trips and the duplicates go to
    random lines, never the first, and each duplicate repeats an earlier line that is not itself
    a duplicate.
    """
    slots = np.empty(0, dtype=np.int64)
    if k_oom + k_dup:
        slots = rng.choice(n - 1, k_oom + k_dup, replace=False) + 1
    oom_at, dup_at = slots[:k_oom], np.sort(slots[k_oom:])
    is_dup = np.zeros(n, dtype=bool)
    is_dup[dup_at] = True
    is_fresh = ~is_dup
    is_fresh[oom_at] = False
    order = np.empty(n, dtype=np.int64)
    order[is_fresh] = np.arange(fresh)
    order[oom_at] = fresh + np.arange(k_oom)
    if k_dup:
        originals = np.flatnonzero(~is_dup)
        earlier = np.searchsorted(originals, dup_at)  # originals before each duplicate: >= 1
        order[dup_at] = order[originals[rng.integers(0, earlier)]]
    return order


def _write_gzip(dest: Path, header: bytes, blocks: Iterator[np.ndarray], compresslevel: int) -> None:
    """Stream header and blocks into a gzip file at dest, atomically (temp name, then rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as raw:
            # No file name and mtime 0 in the gzip header: the same content gives the same bytes.
            with igzip.GzipFile(
                filename="", mode="wb", fileobj=raw, compresslevel=compresslevel, mtime=0
            ) as gz:
                gz.write(header)
                for block in blocks:
                    gz.write(block)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
