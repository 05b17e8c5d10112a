"""The targets a deployment writes to (TAXI_TARGET, TAXI_COMPARE_TARGET): where the lake and the
warehouse live, the labels the UI gives them, and the dbt output that builds the models there."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str  # as TAXI_TARGET spells it
    warehouse_kind: str  # the UI's kind of the warehouse assets; also what the agreement check names
    lake_kind: str  # the UI's kind of the lake assets
    dbt_target: str  # TAXI_DBT_TARGET: the output of dbt_project/profiles.yml that builds the models


LOCAL = Target("local", warehouse_kind="postgres", lake_kind="file", dbt_target="postgres")
GCP = Target("gcp", warehouse_kind="bigquery", lake_kind="gcs", dbt_target="bigquery")
TARGETS = {target.name: target for target in (LOCAL, GCP)}
