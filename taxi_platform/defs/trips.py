"""The trip assets of every dataset the chosen source serves (TAXI_SOURCE): per dataset, the month's
file in the lake, its staging table and the final table, with the checks of each load."""

from __future__ import annotations

import dagster as dg

from taxi_platform.assets.trips import build_trip_assets
from taxi_platform.settings import Settings, settings_from_env
from taxi_platform.source_specs import source_datasets


def trip_definitions(settings: Settings) -> dg.Definitions:
    target, other = settings.target, settings.compare_target
    assets = []
    for spec in source_datasets(settings.source_spec).values():  # as the chosen source serves them
        assets += build_trip_assets(
            spec,
            warehouse_kind=target.warehouse_kind,
            lake_kind=target.lake_kind,
            min_in_month_share=settings.min_in_month_share,
            other_target=other.warehouse_kind if other else None,  # TAXI_COMPARE_TARGET's agreement
        )
    return dg.Definitions(assets=assets)


@dg.definitions
def defs() -> dg.Definitions:
    return trip_definitions(settings_from_env())
