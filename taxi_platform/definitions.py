"""The code location: `dagster dev -m taxi_platform.definitions` (or workspace.yaml)."""

from __future__ import annotations

import dagster as dg

from taxi_platform.assets.dbt import build_dbt_assets, load_dbt_project
from taxi_platform.assets.trips import build_trip_assets
from taxi_platform.assets.zones import build_reference_assets
from taxi_platform.automation import build_automation
from taxi_platform.datasets import ALL_DATASETS, ZONES, source_datasets
from taxi_platform.partitions import source_partitions
from taxi_platform.resources import build_resources, kinds, other_target
from taxi_platform.settings import Settings


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    specs = source_datasets(settings.source_spec)  # the datasets as the chosen source serves them
    assets = []
    for spec in specs.values():
        assets += build_trip_assets(
            spec,
            **kinds(settings),
            min_in_month_share=settings.min_in_month_share,
            other_target=other_target(settings),
        )
    assets += build_reference_assets(ZONES, **kinds(settings))
    absent = [spec.table_name for name, spec in ALL_DATASETS.items() if name not in specs]
    assets += build_dbt_assets(
        load_dbt_project(settings.dbt_project_dir), source_partitions(settings.source_spec), absent
    )
    automation = build_automation(settings, specs)  # jobs, schedules, sensors per dataset
    return dg.Definitions(
        assets=assets,
        asset_checks=automation.checks,
        resources=build_resources(settings),
        jobs=automation.jobs,
        schedules=automation.schedules,
        sensors=automation.sensors,
        executor=STEP_EXECUTOR,
    )


# Runs launched through the instance (UI, backfills, schedules, sensors) execute their steps in the
# run's own process: a process per step would import this code location again (~6 s each). Runs
# proceed in parallel instead, bounded by the run queue and the `taxi_warehouse` pool.
STEP_EXECUTOR = dg.in_process_executor


defs = build_definitions()
