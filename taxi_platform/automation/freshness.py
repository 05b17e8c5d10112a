"""Freshness of the TLC's datasets: month M is due by the 25th of M+2 (`PUBLISHED_BY_DAY`).

`month_loaded_when_due`, an asset check on each final table: passes when the month due by today
is loaded (its partition materialized), fails (severity WARN: the data is late, not wrong) when it
is not, naming the month, the day it was due and the latest month loaded. The UI shows a failed
check on the table: the dataset is overdue.

`tlc_freshness_sensor` evaluates that rule every hour in the daemon: it records the check's result
when it changes (so the UI is current without anyone running the check) and reports a month that
became overdue to the failure notifier once (the cursor remembers what was reported).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime

import dagster as dg

from taxi_platform.assets.trip_keys import final_key
from taxi_platform.automation.jobs import partition_key
from taxi_platform.automation.notify import FailureSummary, Notifier
from taxi_platform.datasets import DatasetSpec
from taxi_platform.partitions import add_months, month_of
from taxi_platform.source_specs import PUBLISHED_BY_DAY, expected_published_month

CHECK_NAME = "month_loaded_when_due"
FRESHNESS_SENSOR_NAME = "tlc_freshness_sensor"


def due_date(month: date) -> date:
    """The day month M is due: the PUBLISHED_BY_DAY of M+2."""
    return add_months(month, 2).replace(day=PUBLISHED_BY_DAY)


def freshness_result(spec: DatasetSpec, instance: dg.DagsterInstance, today: date) -> dg.AssetCheckResult:
    """The rule: the month due by `today` is loaded."""
    due = expected_published_month(today)
    loaded = sorted(instance.get_materialized_partitions(final_key(spec)))
    latest = month_of(loaded[-1]) if loaded else None
    passed = partition_key(due) in loaded
    latest_text = f"{latest:%Y-%m}" if latest else "none"
    message = (
        f"{spec.name} {due:%Y-%m} is loaded (due by {due_date(due)})"
        if passed
        else f"{spec.name} {due:%Y-%m} is overdue: due by {due_date(due)}, not loaded "
        f"(latest loaded: {latest_text})"
    )
    return dg.AssetCheckResult(
        asset_key=final_key(spec),
        check_name=CHECK_NAME,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=message,
        metadata={
            "due_month": f"{due:%Y-%m}",
            "due_by": due_date(due).isoformat(),
            "latest_month_loaded": latest_text,
            "message": message,
        },
    )


def build_freshness_checks(
    specs: Mapping[str, DatasetSpec], clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> list[dg.AssetChecksDefinition]:
    def build(spec: DatasetSpec) -> dg.AssetChecksDefinition:
        @dg.asset_check(
            asset=final_key(spec),
            name=CHECK_NAME,
            description=(
                f"The {spec.name} month due by today (month M by the {PUBLISHED_BY_DAY}th of M+2) "
                "is loaded; evaluated hourly by tlc_freshness_sensor, or run here."
            ),
            blocking=False,
        )
        def month_loaded_when_due(context) -> dg.AssetCheckResult:  # untyped: Dagster refuses a string
            return freshness_result(spec, context.instance, clock().date())

        return month_loaded_when_due

    return [build(spec) for spec in specs.values()]


def build_freshness_sensor(
    specs: Mapping[str, DatasetSpec],
    notifier: Notifier,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    @dg.sensor(
        name=FRESHNESS_SENSOR_NAME,
        minimum_interval_seconds=3600,
        default_status=default_status,
        description=(
            f"Every hour: whether each dataset's month due by today (M by the {PUBLISHED_BY_DAY}th of "
            f"M+2) is loaded; records {CHECK_NAME} when it changes, reports an overdue month once."
        ),
    )
    def tlc_freshness_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        try:
            seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        except ValueError:
            seen = {}
        today = clock().date()
        events, changes = [], []
        for spec in specs.values():
            result = freshness_result(spec, context.instance, today)
            state = f"{'ok' if result.passed else 'overdue'}:{result.metadata['due_month'].value}"
            if seen.get(spec.name) == state:
                continue
            seen[spec.name] = state
            changes.append(str(result.description))
            assert result.asset_key is not None  # freshness_result names its asset
            events.append(
                dg.AssetCheckEvaluation(
                    asset_key=result.asset_key,
                    check_name=CHECK_NAME,
                    passed=result.passed,
                    severity=result.severity,
                    description=result.description,
                    metadata=result.metadata,
                )
            )
            if not result.passed:
                due = month_of(f"{result.metadata['due_month'].value}-01")
                context.log.warning(result.description)
                notifier.notify(
                    FailureSummary(
                        run_id="",
                        job_name=FRESHNESS_SENSOR_NAME,
                        partition=partition_key(due),
                        dataset=spec.name,
                        file=spec.file_name(due),
                        message=str(result.description),
                        kind="overdue",
                    )
                )
        cursor = json.dumps(seen, sort_keys=True)
        if not events:
            return dg.SensorResult(
                skip_reason="no change: " + ", ".join(f"{k} {v}" for k, v in sorted(seen.items())),
                cursor=cursor,
            )
        context.log.info("; ".join(changes))
        return dg.SensorResult(asset_events=events, cursor=cursor)

    return tlc_freshness_sensor
