"""How the dbt project's nodes become Dagster assets: their keys, group, partition mapping and
automation condition."""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator

DBT_GROUP = "transform"


class TaxiDbtTranslator(DagsterDbtTranslator):
    """dbt models and seeds under the `dbt/` key prefix in the `transform` group; sources keep
    the asset keys of the ingest assets (`meta.dagster.asset_key` in sources.yml)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] in ("model", "seed", "snapshot"):
            return dg.AssetKey(["dbt", dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return DBT_GROUP

    def get_partition_mapping(
        self, dbt_resource_props: Mapping[str, Any], dbt_parent_resource_props: Mapping[str, Any]
    ) -> dg.PartitionMapping | None:
        """Month to month; a dataset published later than the source's first month (green from
        2014) has no partition for the earlier months, which then depend on the others only."""
        return dg.TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True)

    def get_automation_condition(
        self, dbt_resource_props: Mapping[str, Any]
    ) -> dg.AutomationCondition | None:
        """Declarative automation (evaluated by the `taxi_dbt_automation` sensor): a monthly model's
        partition is rebuilt when that month of an upstream table changes; the reference models
        when theirs change (eager)."""
        if "monthly" in (dbt_resource_props.get("tags") or []):
            return monthly_automation_condition()
        return dg.AutomationCondition.eager()


def monthly_automation_condition() -> dg.AutomationCondition:
    """`eager()` without its latest-time-window limit, so a backfill of old months (or a
    re-published old file) brings exactly those months' dbt partitions up to date. Months whose
    upstream partitions are missing (an unpublished month, one colour not loaded yet) wait."""
    return (
        dg.AutomationCondition.any_deps_updated().since_last_handled()
        & ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("monthly_eager")
