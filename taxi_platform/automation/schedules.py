"""Monthly schedules, one per dataset, at the course's times: green `0 9 1 * *`, yellow
`0 10 1 * *` (UTC); datasets added later run at 11:00.

Which month a run loads: the course's flow loads the month of the run date, which no publisher
has ready on the 1st. The TLC publishes a month's trips about two months after it ends, so the run
on the 1st of month M loads month M-2: the schedule on 2021-03-01 loads 2021-01. Months after the
spec's `last_published` whose file answers 404 are skipped cleanly by the raw-file asset (the run
succeeds, the log says the month is not published yet); they load once the file appears.

The TLC's schedules run on the 26th, after the month is due (the 25th of M+2): a safety net behind
`tlc_release_sensor`, which loads the month when its file appears; a month already loaded is
skipped with that reason, so nothing loads twice.

A tick whose month is not a partition requests nothing and says why: before the source's first
month, or after its last. The course's CSV backup ends at 2021-07 and is frozen, so from the tick
of 2021-10-01 on these schedules are a no-op (every tick skipped, "after the last month of the
course-csv source"): history is loaded by a backfill; a live source would give them work again.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import dagster as dg

from taxi_platform.assets.trip_keys import final_key
from taxi_platform.automation.jobs import partition_key, run_tags
from taxi_platform.datasets import DatasetSpec
from taxi_platform.partitions import add_months, months_text, outside_partitions

SCHEDULE_HOURS_UTC = {"green": 9, "yellow": 10}  # the course's crons
OTHER_DATASETS_HOUR_UTC = 11
PUBLICATION_LAG_MONTHS = 2


def schedule_name(spec: DatasetSpec) -> str:
    return f"{spec.table_name}_monthly"


def cron_schedule(spec: DatasetSpec, day: int = 1) -> str:
    return f"0 {SCHEDULE_HOURS_UTC.get(spec.name, OTHER_DATASETS_HOUR_UTC)} {day} * *"


def data_month(run_time: datetime) -> date:
    """The month a run at `run_time` loads: the month PUBLICATION_LAG_MONTHS before its own."""
    return add_months(run_time.date(), -PUBLICATION_LAG_MONTHS)


def build_trip_schedule(
    spec: DatasetSpec,
    job: dg.UnresolvedAssetJobDefinition,
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.RUNNING,
    day: int = 1,
    skip_loaded: bool = False,
) -> dg.ScheduleDefinition:
    """`day`: of the month the schedule runs on (1: the course's; the TLC's month M-2 is
    published by the 25th, so its schedule runs on the 26th). `skip_loaded`: a month whose final
    table is loaded already is skipped (the schedule is a safety net behind a sensor)."""

    @dg.schedule(
        name=schedule_name(spec),
        cron_schedule=cron_schedule(spec, day),
        execution_timezone="UTC",
        job=job,
        default_status=default_status,
        description=(
            f"On day {day} of each month at {cron_schedule(spec).split()[1]}:00 UTC, load the "
            f"{spec.name} month published by then: the month {PUBLICATION_LAG_MONTHS} months before "
            f"(a month outside {months_text(spec)} is skipped)."
        ),
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        run_time = context.scheduled_execution_time or datetime.now(UTC)
        month = data_month(run_time)
        why_not = outside_partitions(spec, month)
        if why_not is not None:  # the frozen course backup: every tick from 2021-10 on
            return dg.SkipReason(f"{spec.name} {month:%Y-%m} is {why_not}: nothing to load")
        if skip_loaded and partition_key(month) in context.instance.get_materialized_partitions(
            final_key(spec)
        ):
            # The safety net behind tlc_release_sensor: a month it loaded is not loaded again.
            return dg.SkipReason(f"{spec.name} {month:%Y-%m} is loaded already (tlc_release_sensor)")
        return dg.RunRequest(
            run_key=f"{spec.name}:{month:%Y-%m}",
            partition_key=partition_key(month),
            tags=run_tags(spec, month),
        )

    return _schedule
