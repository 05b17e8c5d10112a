"""Which ids of a file occur more than once: every id, as two 64-bit integers (16 bytes instead of
32 hex digits), is kept in DuckDB, which spills to disk past its memory limit, and grouped once at
the end of the file. The writer then keeps the first occurrence of each in file order.
Duplicates are rare: a few thousand in 7.7 M rows."""

from __future__ import annotations

import os
import tempfile

import duckdb
import numpy as np
import pyarrow as pa

ID_HEX_DIGITS = 32
WORD_HEX_DIGITS = 16
_NIBBLE = np.full(256, 255, dtype=np.uint8)
_NIBBLE[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16, dtype=np.uint8)


def id_words(ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Each id (32 lower-case hex digits) as two unsigned 64-bit integers: its first and last 16
    digits."""
    if len(ids) == 0:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.uint64)
    offsets = np.frombuffer(ids.buffers()[1], dtype=np.int32, count=len(ids) + 1, offset=ids.offset * 4)
    data = np.frombuffer(ids.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    digits = _NIBBLE[data.reshape(len(ids), ID_HEX_DIGITS)].astype(np.uint64)
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    high = (digits[:, :WORD_HEX_DIGITS] << shifts).sum(axis=1, dtype=np.uint64)
    low = (digits[:, WORD_HEX_DIGITS:] << shifts).sum(axis=1, dtype=np.uint64)
    return high, low


class DuplicateTracker:
    def __init__(self, memory_limit: str, spill_dir: str | None = None) -> None:
        self._spill = tempfile.TemporaryDirectory(prefix="taxi-engine-", dir=spill_dir)
        # A database file, not memory: its blocks can always be evicted to disk.
        self._con = duckdb.connect(
            os.path.join(self._spill.name, "ids.duckdb"),
            config={
                "threads": 1,
                "memory_limit": memory_limit,
                "temp_directory": self._spill.name,
                "preserve_insertion_order": False,
            },
        )
        self._con.execute("CREATE TABLE ids (high UBIGINT NOT NULL, low UBIGINT NOT NULL)")
        self.rows = 0

    def add(self, ids: pa.Array) -> None:
        high, low = id_words(ids)
        batch = pa.table(
            [pa.array(high, type=pa.uint64()), pa.array(low, type=pa.uint64())], names=["high", "low"]
        )
        self._con.register("batch", batch)
        try:
            self._con.execute("INSERT INTO ids SELECT high, low FROM batch")
        finally:
            self._con.unregister("batch")
        self.rows += len(ids)

    def repeated_ids(self) -> tuple[list[str], int]:
        """The ids seen more than once, sorted, and the surplus: rows beyond the first occurrence
        of each (the engine's own count, which the server's deletions must match)."""
        rows = self._con.execute(
            "SELECT high, low, count(*) FROM ids GROUP BY high, low HAVING count(*) > 1 ORDER BY high, low"
        ).fetchall()
        return [f"{high:016x}{low:016x}" for high, low, _ in rows], sum(n - 1 for *_, n in rows)

    def close(self) -> None:
        self._con.close()
        self._spill.cleanup()
