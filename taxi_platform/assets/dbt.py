"""The dbt project as Dagster assets (dagster-dbt); dbt tests become asset checks.

Monthly models (`tag:monthly`: staging views, fact_trips, fact_fhv_trips, dm_monthly_zone_revenue,
dm_monthly_zone_trips) are partitioned by every month of the source (the trip assets' partitions
are tails of them): a partition run is one `dbt build` with TAXI_DBT_MONTH_START and
TAXI_DBT_MONTH_END set to its month, which rebuilds exactly that source month; a range run (one run
per range: `BackfillPolicy.single_run()`) sets the range's first and last months. (The months travel
in the environment, not as `--vars`: dbt re-parses the whole project when a var changes, and only
the files that read an environment variable when that changes.) dim_zones and the seeds are
unpartitioned.

The project and its manifest: `taxi_platform/dbt_project.py`; a step's build: `dbt_build.py`; the
figures a built table reports: `dbt_figures.py`; keys, groups and automation: `dbt_translator.py`.
Tests are selected `buildable`: a model's step runs the tests whose other parents it can build, so
dim_zones alone does not run fact_trips' relationships tests, and fact_trips runs them.
"""

from collections.abc import Sequence

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets

from taxi_platform.assets.dbt_build import dbt_build
from taxi_platform.assets.dbt_figures import with_model_figures
from taxi_platform.assets.dbt_translator import TaxiDbtTranslator
from taxi_platform.assets.partitioned_runs import run_months
from taxi_platform.assets.policies import RANGE_POLICY, WAREHOUSE_POOL
from taxi_platform.warehouse.base import TripWarehouse

MONTHLY = "tag:monthly"
# The unpartitioned dbt assets (everything not tagged monthly): the monthly models join them, so a
# first load builds them before any month (the demo, the bench, the tests).
DBT_REFERENCE_KEYS = [
    dg.AssetKey(["dbt", name])
    for name in (
        "dim_zones",
        "payment_type_lookup",
        "taxi_zone_lookup",
        "vendor_lookup",
        "hvfhs_license_lookup",
    )
]


def build_dbt_assets(
    project: DbtProject, partitions_def: dg.PartitionsDefinition, absent_tables: Sequence[str] = ()
) -> list[dg.AssetsDefinition]:
    """The monthly models partitioned by `partitions_def` (every month of the source), the
    reference models unpartitioned. Models fed by `absent_tables` (the final tables of datasets
    the source does not serve: fhv and fhvhv in the course's backup) are left out: no data ever
    reaches them, and a model waiting on them would wait forever."""
    translator = TaxiDbtTranslator()
    absent = " ".join(f"source:taxi.{table}+" for table in absent_tables)
    # No `project=` to @dbt_assets: it only adds the DbtProject object to every asset's metadata,
    # which the UI shows as "(unserializable)".

    @dbt_assets(
        manifest=project.manifest_path,
        select=MONTHLY,
        exclude=absent,
        partitions_def=partitions_def,
        backfill_policy=RANGE_POLICY,
        dagster_dbt_translator=translator,
        name="dbt_monthly_models",
        pool=WAREHOUSE_POOL,
    )
    def monthly_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: TripWarehouse):
        """Staging views, fact_trips and the revenue mart, rebuilt for the run's source months."""
        months = [month for _, month in run_months(context)]
        yield from with_model_figures(
            context, dbt_build(context, dbt, warehouse, project, months), warehouse, months
        )

    @dbt_assets(
        manifest=project.manifest_path,
        exclude=f"{MONTHLY} {absent}".strip(),
        dagster_dbt_translator=translator,
        name="dbt_reference_models",
        pool=WAREHOUSE_POOL,
    )
    def reference_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: TripWarehouse):
        """dim_zones and the seeds."""
        yield from with_model_figures(context, dbt_build(context, dbt, warehouse, project, []), warehouse, [])

    return [monthly_models, reference_models]
