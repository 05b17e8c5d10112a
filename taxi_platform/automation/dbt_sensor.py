"""The sensor that keeps the monthly dbt models up to date: it evaluates the automation conditions
of the dbt assets (declarative automation), and tags its runs so the instance builds one at a time."""

from __future__ import annotations

import dagster as dg

DBT_AUTOMATION_SENSOR_NAME = "taxi_dbt_automation"
# The run tag the instance limits to one run at a time (tag_concurrency_limits in
# taxi_platform/instance/dagster.yaml and deploy/dagster.yaml).
DBT_RUN_TAG = "taxi/dbt"


def build_dbt_automation_sensor(
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.AutomationConditionSensorDefinition:
    """Evaluates the automation conditions of the dbt assets (see assets/dbt.py): when a month's
    final table is materialized, that month's dbt partition is requested."""
    return dg.AutomationConditionSensorDefinition(
        DBT_AUTOMATION_SENSOR_NAME,
        # A selection the UI can print (`key:"dbt/*"`); key_prefixes() shows as a Python repr.
        target=dg.AssetSelection.from_string('key:"dbt/*"'),
        default_status=default_status,
        minimum_interval_seconds=30,
        # One run per month, tagged: the instance runs at most one `taxi/dbt` run at a time
        # (tag_concurrency_limits in taxi_platform/instance/dagster.yaml), because two first builds
        # of an incremental dbt model at once race to create its table.
        run_tags={DBT_RUN_TAG: "automation"},
        emit_backfills=False,
        description="Rebuilds a month's dbt models after that month's trip tables change.",
    )
