"""`taxi-platform dbt ...`: any dbt command against the platform's warehouse. (The manifest the
definitions load is prepared by dagster-dbt's standard command: `make dbt-prepare`.)"""

from __future__ import annotations

import argparse
import os
import subprocess

from taxi_platform.datasets import ALL_DATASETS
from taxi_platform.settings import Settings


def _dbt_command(settings: Settings, args: list[str]) -> list[str]:
    from taxi_platform.resources import dbt_executable

    project = str(settings.dbt_project_dir)
    return [dbt_executable(), *args, "--project-dir", project, "--profiles-dir", project]


def cmd_dbt(args: argparse.Namespace, settings: Settings) -> int:
    """Any dbt command against the platform's warehouse (`taxi-platform dbt build -s fact_trips`)."""
    from taxi_platform.resources import build_warehouse

    warehouse = build_warehouse(settings)
    # The months of a Dagster step never leak into a command typed by hand (a `--full-refresh`
    # would rebuild only them); by hand, months are `--vars '{month: 2019-01-01}'`.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("TAXI_DBT_MONTH_")}
    if {"build", "run", "test"} & set(args.dbt_args[:1]):  # the models read all four trip tables
        warehouse.ensure_trip_tables(list(ALL_DATASETS.values()))
    env = {**inherited, **warehouse.dbt_env()}
    return subprocess.call(_dbt_command(settings, args.dbt_args), env=env)
