"""The reference data: the TLC's taxi zone lookup, as a file in the lake and a warehouse table."""

from __future__ import annotations

import dagster as dg

from taxi_platform.assets.zones import build_reference_assets
from taxi_platform.datasets import ZONES
from taxi_platform.settings import Settings, settings_from_env


def reference_definitions(settings: Settings) -> dg.Definitions:
    target = settings.target
    return dg.Definitions(
        assets=build_reference_assets(ZONES, warehouse_kind=target.warehouse_kind, lake_kind=target.lake_kind)
    )


@dg.definitions
def defs() -> dg.Definitions:
    return reference_definitions(settings_from_env())
