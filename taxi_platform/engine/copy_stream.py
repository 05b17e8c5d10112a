"""The input of PostgreSQL's COPY for a month: the file's own lines, each prefixed with its trip id
(`<id>,<the line as published>`), so the server parses each value exactly as a plain COPY of the
file would, and receives the month once.

A background thread reads, parses and hashes the next blocks while COPY consumes the current one;
at most `queue_blocks` blocks wait between them, which bounds the memory used whatever the file's
size. The trip ids also feed the duplicate tracker.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taxi_platform.datasets import DatasetSpec
from taxi_platform.engine.csv_blocks import Block, ByteReader, LinePositions, read_blocks
from taxi_platform.engine.duplicates import DuplicateTracker
from taxi_platform.engine.trip_ids import MEMORY_POOL, TripIdEngine

_DONE = object()


@dataclass
class StreamStats:
    rows: int = 0  # data rows sent (blank lines excluded)
    in_month_rows: int | None = None  # rows sent whose pickup lies in the month (None: not counted)
    bytes_in: int = 0  # decompressed bytes of the data lines
    # (first stream line, line positions) of every block sent: a COPY line number -> a file line.
    blocks: list[tuple[int, LinePositions]] = field(default_factory=list)

    def file_line(self, stream_line: int) -> int:
        """The file line of COPY's line `stream_line` (1-based, as COPY counts)."""
        first_line, positions = 1, None
        for first, candidate in self.blocks:
            if first > stream_line:
                break
            first_line, positions = first, candidate
        if positions is None:
            return stream_line + 1
        return positions.file_line(stream_line - first_line)


class IdPrefixedLines:
    """A file-like `read()` for `cursor.copy_expert`: `<id>,<line>` for every data line."""

    def __init__(
        self,
        fh: ByteReader,
        spec: DatasetSpec,
        file_name: str,
        tracker: DuplicateTracker,
        *,
        month: date | None = None,
        queue_blocks: int = 1,
        block_bytes: int | None = None,
        on_block: Callable[[StreamStats], None] | None = None,
    ) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=queue_blocks)
        self._stop = threading.Event()
        self._tracker = tracker
        self._on_block = on_block
        self.stats = StreamStats()
        self.error: BaseException | None = None  # the producer's, re-raised by read()
        self._blocks = read_blocks(fh, file_name, spec.csv_columns, block_bytes)
        self._ids = TripIdEngine(spec, file_name, month)
        self._thread = threading.Thread(target=self._produce, daemon=True, name="copy-producer")
        try:
            self._thread.start()
        except BaseException:
            self._ids.close()
            raise

    def _produce(self) -> None:
        try:
            for block in self._blocks:
                if self._stop.is_set():
                    return
                ids, in_month = self._ids.ids_and_in_month(block)
                self._tracker.add(ids)
                joined = pc.binary_join_element_wise(ids, _lines(block), ",", memory_pool=MEMORY_POOL)
                self._put((joined, block, in_month))
            self._put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - raised in the consumer by read()
            self._put(exc)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def read(self, size: int = -1) -> bytes:
        try:
            return self._read()
        except BaseException as exc:
            self.error = self.error or exc  # psycopg2 replaces it with "error in .read() call"
            raise

    def _read(self) -> bytes:
        item = self._queue.get()
        if item is _DONE:
            self._queue.put(_DONE)  # a second read() at the end also sees the end
            return b""
        if isinstance(item, BaseException):
            raise item
        joined, block, in_month = item
        if in_month is not None:
            self.stats.in_month_rows = (self.stats.in_month_rows or 0) + in_month
        self.stats.blocks.append((self.stats.rows + 1, block.positions))
        self.stats.rows += block.rows
        self.stats.bytes_in += len(block.data)
        if self._on_block is not None:
            self._on_block(self.stats)
        offsets = np.frombuffer(joined.buffers()[1], dtype=np.int32)
        # psycopg2 takes bytes only: one copy of the block (memcpy), released once sent.
        data = joined.buffers()[2]
        start, end = int(offsets[joined.offset]), int(offsets[joined.offset + len(joined)])
        return data.slice(start, end - start).to_pybytes()

    def repeated_ids(self) -> tuple[list[str], int]:
        return self._tracker.repeated_ids()

    def close(self) -> None:
        self._stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        # The producer checks the stop flag between blocks (a block takes milliseconds): wait for
        # it before closing what it uses.
        self._thread.join()
        self._ids.close()


def _lines(block: Block) -> pa.Array:
    """The block's lines (each with its line end) as a string array over the block's bytes."""
    offsets = np.empty(block.rows + 1, dtype=np.int32)
    offsets[0] = 0
    offsets[1:] = block.ends
    return pa.StringArray.from_buffers(block.rows, pa.py_buffer(offsets), pa.py_buffer(block.data))
