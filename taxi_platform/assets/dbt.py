"""The dbt project as Dagster assets (dagster-dbt); dbt tests become asset checks.

Monthly models (`tag:monthly`: staging views, fact_trips, dm_monthly_zone_revenue) share the trip
assets' monthly partitions: a partition run is `dbt build --vars '{month: 2019-01-01}'`, which
rebuilds exactly that source month; a range run (one run per range: `BackfillPolicy.single_run()`)
is one `dbt build --vars '{month_start: 2019-01-01, month_end: 2019-03-01}'` rebuilding exactly
those months. dim_zones and the payment-type seed are unpartitioned.

The manifest is prepared by `make install` / `taxi-platform dbt-prepare` (`dbt parse`), not at
import time; under `dagster dev` it is re-parsed at load so model edits show up.

Each dbt step writes its artifacts (compiled SQL, run_results.json, a copy of the partial-parse
file) to a folder of its own in the temporary directory, removed when the step ends, succeeded or
failed; dbt's errors reach the run's events (the step failure and the compute log). Tests are
selected `buildable`: a model's step runs the tests whose other parents it can build, so dim_zones
alone does not run fact_trips' relationships tests, and fact_trips runs them.
"""

import fcntl
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import dagster as dg
from dagster_dbt import DagsterDbtProjectPreparer, DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from taxi_platform.assets.trips import RANGE_POLICY, WAREHOUSE_POOL, run_months
from taxi_platform.partitions import monthly_partitions
from taxi_platform.resources import dbt_executable
from taxi_platform.warehouse.base import TripWarehouse

MONTHLY = "tag:monthly"
DBT_GROUP = "transform"


class DbtManifestMissing(FileNotFoundError):
    pass


def load_dbt_project(project_dir: Path) -> DbtProject:
    project = DbtProject(project_dir=project_dir, profiles_dir=project_dir)
    if DagsterDbtProjectPreparer().using_dagster_dev():
        # What `project.prepare_if_dev()` does, with the dbt installed beside this Python: dagster-
        # dbt's own preparation runs a bare `dbt` from PATH, which `make dev` (the venv not
        # activated) does not have, and the code location would fail to load.
        reparse_manifest(project)
    if not project.manifest_path.exists():
        raise DbtManifestMissing(
            f"no dbt manifest at {project.manifest_path}: run `make install` or "
            "`taxi-platform dbt-prepare` (dbt parse) first"
        )
    return project


def reparse_manifest(project: DbtProject) -> None:
    """`dbt parse` into a folder of its own, then the manifest and partial-parse file moved into
    the project's target atomically, one process at a time: under `dagster dev` the code server,
    the daemon and every run worker load the code location, and none may read a half-written
    manifest."""
    target = Path(project.project_dir) / project.target_path
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".parse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        scratch = Path(tempfile.mkdtemp(prefix=".parse-", dir=target))
        try:
            DbtCliResource(project_dir=project, dbt_executable=dbt_executable()).cli(
                ["parse", "--quiet"], target_path=scratch).wait()
            for name in ("partial_parse.msgpack", "manifest.json"):  # the manifest last
                if (scratch / name).exists():
                    os.replace(scratch / name, target / name)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


class TaxiDbtTranslator(DagsterDbtTranslator):
    """dbt models and seeds under the `dbt/` key prefix in the `transform` group; sources keep
    the asset keys of the ingest assets (`meta.dagster.asset_key` in sources.yml)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] in ("model", "seed", "snapshot"):
            return dg.AssetKey(["dbt", dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return DBT_GROUP

    def get_automation_condition(self, dbt_resource_props: Mapping[str, Any]) -> dg.AutomationCondition | None:
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


@contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    """dbt reads its connection from the environment (profiles.yml holds no credentials)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# The environment of every dbt step, besides the warehouse's connection.
DBT_STEP_ENV = {
    # dbt's default `eager` runs a test as soon as one of its parents is selected: materializing
    # dim_zones alone ran fact_trips' relationships tests, which fail while fact_trips does not
    # exist. `buildable` runs a test when each parent is selected or upstream of the selection, so
    # building fact_trips still runs them. When a run leaves out some checks, dagster-dbt selects
    # the tests by name and sets its own value (`empty`), which wins over this one.
    "DBT_INDIRECT_SELECTION": "buildable",
    # No debug log file: the step's folder is removed at its end, and dbt's errors reach the run
    # from its stdout (the step failure lists them).
    "DBT_LOG_LEVEL_FILE": "none",
}


def _build(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: TripWarehouse,
           dbt_vars: dict | None) -> Iterator[Any]:
    args = ["build"] + (["--vars", json.dumps(dbt_vars)] if dbt_vars else [])
    # dagster-dbt's default is a new folder under dbt_project/target per invocation (1-2 MB each),
    # never removed; ours is removed when the step ends, however it ends. The prepared manifest and
    # partial-parse file in dbt_project/target stay (the partial-parse file is copied in here).
    target = Path(tempfile.mkdtemp(prefix=f"taxi-dbt-{context.run.run_id[:8]}-"))
    try:
        with warehouse.dbt_build_lock(), _environ({**warehouse.dbt_env(), **DBT_STEP_ENV}):
            yield from dbt.cli(args, context=context, target_path=target).stream()
    finally:
        shutil.rmtree(target, ignore_errors=True)


def month_vars(context: dg.AssetExecutionContext) -> dict[str, str]:
    """dbt vars of the run's months: `month` for one, `month_start`/`month_end` for a range."""
    months = [month for _, month in run_months(context)]
    if len(months) == 1:
        return {"month": f"{months[0]:%Y-%m-%d}"}
    return {"month_start": f"{months[0]:%Y-%m-%d}", "month_end": f"{months[-1]:%Y-%m-%d}"}


def build_dbt_assets(project: DbtProject) -> list[dg.AssetsDefinition]:
    translator = TaxiDbtTranslator()

    @dbt_assets(manifest=project.manifest_path, project=project, select=MONTHLY,
                partitions_def=monthly_partitions, backfill_policy=RANGE_POLICY,
                dagster_dbt_translator=translator, name="dbt_monthly_models", pool=WAREHOUSE_POOL)
    def monthly_models(context: dg.AssetExecutionContext, dbt: DbtCliResource,
                       warehouse: TripWarehouse):
        """Staging views, fact_trips and the revenue mart, rebuilt for the run's source months."""
        yield from _build(context, dbt, warehouse, month_vars(context))

    @dbt_assets(manifest=project.manifest_path, project=project, exclude=MONTHLY,
                dagster_dbt_translator=translator, name="dbt_reference_models", pool=WAREHOUSE_POOL)
    def reference_models(context: dg.AssetExecutionContext, dbt: DbtCliResource,
                         warehouse: TripWarehouse):
        """dim_zones and the payment-type seed."""
        yield from _build(context, dbt, warehouse, None)

    return [monthly_models, reference_models]
