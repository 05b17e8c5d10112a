"""Which ids of a file may occur more than once: the first 64 bits of every id (its first 16 hex
digits) are kept in DuckDB, which spills to disk past its memory limit, and grouped once at the
end of the file. A repeated prefix is a candidate: the writer compares the full ids of the rows
that have it (a different trip sharing 64 bits is told apart there), and keeps the first
occurrence in file order. Duplicates are rare: a few thousand in 7.7 M rows."""

from __future__ import annotations

import tempfile

import duckdb
import numpy as np
import pyarrow as pa

ID_HEX_DIGITS = 32
PREFIX_HEX_DIGITS = 16
_NIBBLE = np.full(256, 255, dtype=np.uint8)
_NIBBLE[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16, dtype=np.uint8)


def id_prefixes(ids: pa.Array) -> np.ndarray:
    """The first 64 bits of each id (32 lower-case hex digits) as unsigned integers."""
    if len(ids) == 0:
        return np.empty(0, dtype=np.uint64)
    offsets = np.frombuffer(ids.buffers()[1], dtype=np.int32, count=len(ids) + 1, offset=ids.offset * 4)
    data = np.frombuffer(ids.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    digits = _NIBBLE[data.reshape(len(ids), ID_HEX_DIGITS)[:, :PREFIX_HEX_DIGITS]].astype(np.uint64)
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    return (digits << shifts).sum(axis=1, dtype=np.uint64)


def prefix_hex(prefix: int) -> str:
    return f"{prefix:016x}"


class DuplicateTracker:
    def __init__(self, memory_limit: str, spill_dir: str | None = None) -> None:
        self._spill = tempfile.TemporaryDirectory(prefix="taxi-engine-", dir=spill_dir)
        self._con = duckdb.connect(config={"threads": 1, "memory_limit": memory_limit,
                                           "temp_directory": self._spill.name,
                                           "preserve_insertion_order": False})
        self._con.execute("CREATE TABLE prefixes (p UBIGINT NOT NULL)")
        self.rows = 0

    def add(self, ids: pa.Array) -> None:
        batch = pa.table([pa.array(id_prefixes(ids), type=pa.uint64())], names=["p"])
        self._con.register("batch", batch)
        try:
            self._con.execute("INSERT INTO prefixes SELECT p FROM batch")
        finally:
            self._con.unregister("batch")
        self.rows += len(ids)

    def repeated_prefixes(self) -> list[str]:
        """The id prefixes (16 hex digits) seen more than once, sorted."""
        rows = self._con.execute("SELECT p FROM prefixes GROUP BY p HAVING count(*) > 1 ORDER BY p").fetchall()
        return [prefix_hex(r[0]) for r in rows]

    def close(self) -> None:
        self._con.close()
        self._spill.cleanup()
