"""Day-to-day automation, built from the spec table: one asset job and one monthly schedule per
dataset, the release sensor, the dbt automation sensor and run-failure notifications.

    schedules.py   monthly schedules (which month a run loads)
    sensors.py     the GitHub release sensor; the declarative-automation sensor of the dbt assets
    tlc_sensor.py  tlc_release_sensor: the TLC's files by conditional HEAD requests
    freshness.py   month_loaded_when_due checks and tlc_freshness_sensor (overdue months)
    notify.py      the run-failure sensor and its pluggable notifiers
    jobs.py        the per-dataset asset jobs and their run tags
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import dagster as dg

from taxi_platform.automation.freshness import build_freshness_checks, build_freshness_sensor
from taxi_platform.automation.jobs import build_trip_job
from taxi_platform.automation.notify import build_failure_sensor, notifier_from_settings
from taxi_platform.automation.schedules import build_trip_schedule
from taxi_platform.automation.sensors import build_dbt_automation_sensor, build_release_sensor
from taxi_platform.automation.tlc_sensor import build_tlc_release_sensor
from taxi_platform.datasets import PUBLISHED_BY_DAY, DatasetSpec
from taxi_platform.settings import Settings


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
    release_sensor = build_release_sensor if course else build_tlc_release_sensor
    release_sensors = [release_sensor(settings, specs, list(jobs.values()))]
    day = 1 if course else PUBLISHED_BY_DAY + 1
    notifier = notifier_from_settings(settings)
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
            *release_sensors,
            *freshness,
            build_dbt_automation_sensor(),
            build_failure_sensor(notifier),
        ],
    )


__all__ = ["Automation", "build_automation"]
