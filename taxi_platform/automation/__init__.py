"""Day-to-day automation, built from the spec table: one asset job and one monthly schedule per
dataset, the release sensor, the dbt automation sensor and run-failure notifications.

    schedules.py   monthly schedules (which month a run loads)
    sensors.py     the GitHub release sensor; the declarative-automation sensor of the dbt assets
    notify.py      the run-failure sensor and its pluggable notifiers
    jobs.py        the per-dataset asset jobs and their run tags
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import dagster as dg

from taxi_platform.automation.jobs import build_trip_job
from taxi_platform.automation.notify import build_failure_sensor, notifier_from_settings
from taxi_platform.automation.schedules import build_trip_schedule
from taxi_platform.automation.sensors import build_dbt_automation_sensor, build_release_sensor
from taxi_platform.datasets import DatasetSpec
from taxi_platform.settings import Settings


@dataclass(frozen=True)
class Automation:
    jobs: list[dg.UnresolvedAssetJobDefinition]
    schedules: list[dg.ScheduleDefinition]
    sensors: list[dg.SensorDefinition]


def build_automation(settings: Settings, specs: Mapping[str, DatasetSpec]) -> Automation:
    jobs = {name: build_trip_job(spec) for name, spec in specs.items()}
    return Automation(
        jobs=list(jobs.values()),
        schedules=[build_trip_schedule(spec, jobs[name]) for name, spec in specs.items()],
        sensors=[
            build_release_sensor(settings, specs, list(jobs.values())),
            build_dbt_automation_sensor(),
            build_failure_sensor(notifier_from_settings(settings)),
        ],
    )


__all__ = ["Automation", "build_automation"]
