"""Day-to-day automation, built from the spec table: one asset job and one monthly schedule per
dataset, the release sensor, the dbt automation sensor and run-failure notifications.

    schedules.py       monthly schedules (which month a run loads)
    release_sensor.py  the course's GitHub release sensor (its cursor: release_cursor.py)
    tlc_sensor.py      tlc_release_sensor: the TLC's files by conditional HEAD requests (its cursor,
                       plan and requests: tlc_cursor.py, tlc_plan.py, tlc_probe.py)
    release_runs.py    what both release sensors share: the sensor, the run of one file's month
    dbt_sensor.py      the declarative-automation sensor of the dbt assets
    freshness.py       month_loaded_when_due checks and tlc_freshness_sensor (overdue months)
    notify.py          the run-failure sensor and its pluggable notifiers
    jobs.py            the per-dataset asset jobs and their run tags
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import dagster as dg

from taxi_platform.automation.dbt_sensor import build_dbt_automation_sensor
from taxi_platform.automation.freshness import build_freshness_checks, build_freshness_sensor
from taxi_platform.automation.jobs import build_trip_job
from taxi_platform.automation.notify import build_failure_sensor, build_notifier
from taxi_platform.automation.release_sensor import build_release_sensor
from taxi_platform.automation.schedules import build_trip_schedule
from taxi_platform.automation.tlc_sensor import build_tlc_release_sensor
from taxi_platform.datasets import DatasetSpec
from taxi_platform.settings import Settings
from taxi_platform.source_specs import PUBLISHED_BY_DAY


@dataclass(frozen=True)
class Automation:
    jobs: list[dg.UnresolvedAssetJobDefinition]
    schedules: list[dg.ScheduleDefinition]
    sensors: list[dg.SensorDefinition]
    checks: list[dg.AssetChecksDefinition]


def build_automation(settings: Settings, specs: Mapping[str, DatasetSpec]) -> Automation:
    jobs = {name: build_trip_job(spec) for name, spec in specs.items()}
    # The course's backup is watched through its GitHub releases, the TLC's files by conditional
    # HEAD requests. The TLC's month M is due by the 25th of M+2: its schedules run on the 26th, a
    # safety net behind the sensor (a month the sensor loaded is simply loaded again then).
    course = settings.source == "course"
    if course:
        release_sensor = build_release_sensor(
            specs,
            list(jobs.values()),
            api_url=settings.releases_api_url,
            token=settings.github_token,
            max_pages=settings.releases_api_max_pages,
            interval_seconds=settings.release_sensor_interval_seconds,
            first_tick=settings.release_sensor_first_tick,
        )
    else:
        release_sensor = build_tlc_release_sensor(
            specs,
            list(jobs.values()),
            base_url=settings.tlc_url,
            requests_per_tick=settings.tlc_sensor_requests,
            recent_months=settings.tlc_sensor_recent_months,
            interval_seconds=settings.release_sensor_interval_seconds,
            first_tick=settings.release_sensor_first_tick,
        )
    day = 1 if course else PUBLISHED_BY_DAY + 1
    notifier = build_notifier(settings.failure_log)
    # The TLC's months are due by a date: overdue ones show as a failed check and are reported.
    freshness = [] if course else [build_freshness_sensor(specs, notifier)]
    return Automation(
        jobs=list(jobs.values()),
        checks=[] if course else build_freshness_checks(specs),
        schedules=[
            build_trip_schedule(spec, jobs[name], day=day, skip_loaded=not course)
            for name, spec in specs.items()
        ],
        sensors=[
            release_sensor,
            *freshness,
            build_dbt_automation_sensor(),
            build_failure_sensor(notifier),
        ],
    )


__all__ = ["Automation", "build_automation"]
