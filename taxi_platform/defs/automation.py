"""Day-to-day automation (taxi_platform/automation/): per dataset a job and a monthly schedule, the
release sensor, the dbt automation sensor, failure notifications and the freshness checks."""

from __future__ import annotations

import dagster as dg

from taxi_platform.automation import build_automation
from taxi_platform.settings import Settings, settings_from_env
from taxi_platform.source_specs import source_datasets


def automation_definitions(settings: Settings) -> dg.Definitions:
    automation = build_automation(settings, source_datasets(settings.source_spec))
    return dg.Definitions(
        asset_checks=automation.checks,
        jobs=automation.jobs,
        schedules=automation.schedules,
        sensors=automation.sensors,
    )


@dg.definitions
def defs() -> dg.Definitions:
    return automation_definitions(settings_from_env())
