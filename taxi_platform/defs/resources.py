"""The resources of the chosen target (TAXI_TARGET): source, lake, warehouse and dbt
(taxi_platform/resources.py picks them)."""

from __future__ import annotations

import dagster as dg

from taxi_platform.resources import build_resources
from taxi_platform.settings import Settings, settings_from_env


def resource_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(resources=build_resources(settings))


@dg.definitions
def defs() -> dg.Definitions:
    return resource_definitions(settings_from_env())
