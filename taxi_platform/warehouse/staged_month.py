"""What a month's staging table holds, in words stored with the table: PostgreSQL's table
comment, BigQuery's table description. Written where the table is filled, read by the replace."""

from __future__ import annotations

import re
from dataclasses import dataclass

_COMMENT = re.compile(
    r"rows=(\d+) distinct=(\d+) read=(\d+) in_month=(\d+|-) (?:sha256=([0-9a-f]{64}) )?"
    r"run=(\S*) "
)


@dataclass(frozen=True)
class StagedMonth:
    """What a staging table holds, from its comment (written in the transaction that filled it)."""

    rows: int  # rows in the table (the server's count: COPY minus the duplicates deleted)
    distinct: int  # distinct ids the engine found in the file
    read: int  # data rows of the file
    in_month: int | None  # rows kept whose pickup lies in the month (the engine's count; None: not counted)
    run_id: str  # the run that staged it
    sha256: str | None = None  # of the file it read (None: staged by an older version)

    def comment(self, file_name: str) -> str:
        in_month = "-" if self.in_month is None else self.in_month
        sha = f"sha256={self.sha256} " if self.sha256 else ""
        return (
            f"rows={self.rows} distinct={self.distinct} read={self.read} in_month={in_month} "
            f"{sha}run={self.run_id} ({file_name}, staged by taxi_platform)"
        )

    @classmethod
    def parse(cls, comment: str | None) -> StagedMonth | None:
        match = _COMMENT.match(comment or "")
        if not match:
            return None
        in_month = None if match.group(4) == "-" else int(match.group(4))
        return cls(
            int(match.group(1)),
            int(match.group(2)),
            int(match.group(3)),
            in_month,
            match.group(6),
            match.group(5),
        )
