"""The code location: `dagster dev -m taxi_platform.definitions` (or workspace.yaml)."""

from __future__ import annotations

import dagster as dg

from taxi_platform.assets.dbt import build_dbt_assets, load_dbt_project
from taxi_platform.assets.trips import build_trip_assets
from taxi_platform.assets.zones import build_reference_assets
from taxi_platform.datasets import DATASETS, ZONES
from taxi_platform.resources import build_resources, kinds
from taxi_platform.settings import Settings


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    assets = []
    for spec in DATASETS.values():
        assets += build_trip_assets(spec, **kinds(settings),
                                    min_in_month_share=settings.min_in_month_share)
    assets += build_reference_assets(ZONES, **kinds(settings))
    assets += build_dbt_assets(load_dbt_project(settings.dbt_project_dir))
    return dg.Definitions(assets=assets, resources=build_resources(settings))


defs = build_definitions()
