"""Monthly partitions shared by every trip asset and (later) the dbt models."""

from __future__ import annotations

from datetime import date, datetime

import dagster as dg

PARTITIONS_START = "2019-01-01"

monthly_partitions = dg.MonthlyPartitionsDefinition(start_date=PARTITIONS_START)


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
