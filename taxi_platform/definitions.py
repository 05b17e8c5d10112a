"""The code location: `dagster dev -m taxi_platform.definitions`, workspace.yaml, or `dg dev`
(pyproject.toml's [tool.dg] names this module).

`defs` is the defs folder (taxi_platform/defs/) as `dg.load_from_defs_folder` loads it, every part
built from the Settings of the environment; `build_definitions(settings)` merges the same parts built
from explicit Settings (tests, benchmarks).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from taxi_platform.defs import executor
from taxi_platform.defs.automation import automation_definitions
from taxi_platform.defs.dbt import dbt_definitions
from taxi_platform.defs.reference import reference_definitions
from taxi_platform.defs.resources import resource_definitions
from taxi_platform.defs.trips import trip_definitions
from taxi_platform.settings import Settings, settings_from_env

# Every module of taxi_platform/defs/ that depends on the settings (tests/test_definitions.py checks
# that this list and the folder give the same code location).
SETTINGS_PARTS = (
    trip_definitions,
    reference_definitions,
    dbt_definitions,
    automation_definitions,
    resource_definitions,
)


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or settings_from_env()
    return dg.Definitions.merge(
        *(part(settings) for part in SETTINGS_PARTS), dg.Definitions(executor=executor.STEP_EXECUTOR)
    )


defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
