"""The dbt project (dbt_project/) as dagster-dbt assets, from its prepared manifest, partitioned by
the source's months; the models fed by datasets the source lacks are left out."""

from __future__ import annotations

import dagster as dg

from taxi_platform.assets.dbt import build_dbt_assets
from taxi_platform.datasets import ALL_DATASETS
from taxi_platform.dbt_project import load_dbt_project
from taxi_platform.partitions import source_partitions
from taxi_platform.settings import Settings, settings_from_env
from taxi_platform.source_specs import source_datasets


def dbt_definitions(settings: Settings) -> dg.Definitions:
    served = source_datasets(settings.source_spec)
    absent = [spec.table_name for name, spec in ALL_DATASETS.items() if name not in served]
    project = load_dbt_project(settings.dbt_project_dir)
    return dg.Definitions(assets=build_dbt_assets(project, source_partitions(settings.source_spec), absent))


@dg.definitions
def defs() -> dg.Definitions:
    return dbt_definitions(settings_from_env())
