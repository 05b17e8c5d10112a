"""Monthly partitions shared by every trip asset and the dbt monthly models: the months of the
source the platform loads (`datasets.SOURCE`), from its first month to its last, both included.

The course's CSV backup is frozen at 2021-07, so its partitions are 2019-01..2021-07 whatever the
date (the UI counts, backfills and plots only months that can load). A source without a last month
(a live publisher) would end at the last complete month, as Dagster's monthly partitions do.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import dagster as dg

from taxi_platform.datasets import SOURCE, SourceSpec


def month_of(partition_key: str) -> date:
    """`2019-01-01` -> date(2019, 1, 1); refuses keys that are not the first of a month."""
    try:
        parsed = datetime.strptime(partition_key, "%Y-%m-%d").date()
    except ValueError:
        raise ValueError(f"partition key {partition_key!r} is not a YYYY-MM-DD date") from None
    if parsed.day != 1:
        raise ValueError(f"partition key {partition_key!r} is not the first day of a month")
    return parsed


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def build_monthly_partitions(source: SourceSpec) -> dg.MonthlyPartitionsDefinition:
    """The source's months as partitions (Dagster's end date is exclusive: the month after the last)."""
    end = None if source.last_month is None else f"{next_month(source.last_month):%Y-%m-%d}"
    return dg.MonthlyPartitionsDefinition(start_date=f"{source.first_month:%Y-%m-%d}", end_date=end)


monthly_partitions = build_monthly_partitions(SOURCE)


def outside_partitions(month: date, source: SourceSpec = SOURCE) -> str | None:
    """Why `month` is never a partition, to follow "<month> is" ("after the last month of the
    course-csv source (2019-01..2021-07)"); None when it is one, or will be once complete."""
    return source.why_not(month)


def is_partition_month(month: date, now: datetime, source: SourceSpec = SOURCE) -> bool:
    """Whether `month` is one of the monthly partitions at `now`: one of the source's months, and
    complete (a month becomes a partition when it ends, at midnight UTC)."""
    if now.tzinfo is not None:
        now = now.astimezone(UTC)
    return outside_partitions(month, source) is None and next_month(month) <= now.date()
