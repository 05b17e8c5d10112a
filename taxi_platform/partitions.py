"""Monthly partitions: a dataset's are its months at the source the platform loads, from its first
month there to the source's last, both included; the dbt monthly models' are every month of the
source (each dataset's partitions are a tail of them).

The course's CSV backup is frozen at 2021-07, so its partitions are 2019-01..2021-07 whatever the
date (the UI counts, backfills and plots only months that can load). The TLC's releases have no
last month: the partitions end at the last complete month, as Dagster's monthly partitions do.

The month arithmetic of the whole platform is here too (`add_months`, `next_month`, `month_range`,
`month_of`), without Dagster: the spec table and the sample generator use it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # datasets.py and the sample generator do their month arithmetic here
    import dagster as dg

    from taxi_platform.datasets import DatasetSpec
    from taxi_platform.source_specs import SourceSpec


def month_of(partition_key: str) -> date:
    """`2019-01-01` -> date(2019, 1, 1); refuses keys that are not the first of a month."""
    try:
        parsed = datetime.strptime(partition_key, "%Y-%m-%d").date()
    except ValueError:
        raise ValueError(f"partition key {partition_key!r} is not a YYYY-MM-DD date") from None
    if parsed.day != 1:
        raise ValueError(f"partition key {partition_key!r} is not the first day of a month")
    return parsed


def add_months(month: date, n: int) -> date:
    """The first day of the month `n` months after `month`'s (before it when `n` is negative)."""
    index = month.year * 12 + month.month - 1 + n  # months since year 0
    return date(index // 12, index % 12 + 1, 1)


def next_month(month: date) -> date:
    return add_months(month, 1)


def month_range(first: date, last: date) -> list[date]:
    """The months `first`..`last`, both included, as first days; [] when `first` is after `last`."""
    months, month = [], date(first.year, first.month, 1)
    while month <= last:
        months.append(month)
        month = next_month(month)
    return months


def _partitions(first: date, last: date | None) -> dg.MonthlyPartitionsDefinition:
    """Months first..last as partitions (Dagster's end date is exclusive: the month after the last;
    no last: up to the last complete month)."""
    import dagster as dg  # here: the month arithmetic above must not load Dagster (the generator)

    end = None if last is None else f"{next_month(last):%Y-%m-%d}"
    return dg.MonthlyPartitionsDefinition(start_date=f"{first:%Y-%m-%d}", end_date=end)


def dataset_partitions(spec: DatasetSpec) -> dg.MonthlyPartitionsDefinition:
    """A dataset's months at its source: its first month there to the source's last."""
    return _partitions(spec.first_published, spec.last_month)


def source_partitions(source: SourceSpec) -> dg.MonthlyPartitionsDefinition:
    """Every month of the source (the dbt models' partitions: its datasets start at or after it)."""
    return _partitions(source.first_month, source.last_month)


def months_text(spec: DatasetSpec) -> str:
    """`2019-01..2021-07`: the dataset's months at its source."""
    last = "the last complete month" if spec.last_month is None else f"{spec.last_month:%Y-%m}"
    return f"{spec.first_published:%Y-%m}..{last}"


def outside_partitions(spec: DatasetSpec, month: date) -> str | None:
    """Why `month` is never a partition of the dataset, to follow "<month> is" ("after the last
    month of yellow in the course-csv source (2019-01..2021-07)"); None when it is one, or will be once
    complete."""
    if month < spec.first_published:
        return f"before the first month of {spec.name} in the {spec.source_name} source ({months_text(spec)})"
    if spec.last_month is not None and month > spec.last_month:
        return f"after the last month of {spec.name} in the {spec.source_name} source ({months_text(spec)})"
    return None


def is_partition_month(spec: DatasetSpec, month: date, now: datetime) -> bool:
    """Whether `month` is one of the dataset's partitions at `now`: one of its months at the
    source, and complete (a month becomes a partition when it ends, at midnight UTC)."""
    if now.tzinfo is not None:
        now = now.astimezone(UTC)
    return outside_partitions(spec, month) is None and next_month(month) <= now.date()
