"""Which ids of a file occur more than once: every id is kept in DuckDB, which spills to disk
past its memory limit, and grouped once at the end of the file (the duplicates are rare: a few
thousand in 7.7 M rows). Which occurrence is first is settled by the writer (file order)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import duckdb
import pyarrow as pa


@dataclass(frozen=True)
class DuplicateIds:
    ids: list[str]  # ids that occur more than once, sorted
    surplus_rows: int  # rows beyond the first occurrence of each id

    @property
    def duplicated_ids(self) -> int:
        return len(self.ids)


class DuplicateTracker:
    def __init__(self, memory_limit: str, spill_dir: str | None = None) -> None:
        self._spill = tempfile.TemporaryDirectory(prefix="taxi-engine-", dir=spill_dir)
        self._con = duckdb.connect(config={"threads": 1, "memory_limit": memory_limit,
                                           "temp_directory": self._spill.name,
                                           "preserve_insertion_order": False})
        self._con.execute("CREATE TABLE ids (id VARCHAR NOT NULL)")
        self.rows = 0

    def add(self, ids: pa.Array) -> None:
        batch = pa.table([ids], names=["id"])
        self._con.register("batch", batch)
        try:
            self._con.execute("INSERT INTO ids SELECT id FROM batch")
        finally:
            self._con.unregister("batch")
        self.rows += len(ids)

    def duplicates(self) -> DuplicateIds:
        rows = self._con.execute(
            "SELECT id, count(*) - 1 FROM ids GROUP BY id HAVING count(*) > 1 ORDER BY id").fetchall()
        return DuplicateIds(ids=[r[0] for r in rows], surplus_rows=sum(r[1] for r in rows))

    def close(self) -> None:
        self._con.close()
        self._spill.cleanup()
