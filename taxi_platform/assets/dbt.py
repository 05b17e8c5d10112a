"""The dbt project as Dagster assets (dagster-dbt); dbt tests become asset checks.

Monthly models (`tag:monthly`: staging views, fact_trips, fact_fhv_trips, dm_monthly_zone_revenue,
dm_monthly_zone_trips) are partitioned by every month of the source (the trip assets' partitions
are tails of them): a partition run is one `dbt build` with TAXI_DBT_MONTH_START and
TAXI_DBT_MONTH_END set to its month, which rebuilds exactly that source month; a range run (one run
per range: `BackfillPolicy.single_run()`) sets the range's first and last months. (The months travel
in the environment, not as `--vars`: dbt re-parses the whole project when a var changes, and only
the files that read an environment variable when that changes.) dim_zones and the seeds are
unpartitioned.

The manifest is prepared by `make install` / `taxi-platform dbt-prepare` (`dbt parse`), not at
import time; under `dagster dev` it is re-parsed at load when a file of the dbt project changed
since, so model edits show up and run workers do not parse again.

dbt's partial-parse state depends on the connection (profile) it was parsed with, which the
prepared manifest cannot know (the embedded server's port is chosen when it starts). Each step
starts from the state the last build against the same connection left, kept in
`target/partial_parse/<connection hash>.msgpack`, so a month's build parses only what changed.

Each dbt step writes its artifacts (compiled SQL, run_results.json, a copy of the partial-parse
file) to a folder of its own in the temporary directory, removed when the step ends, succeeded or
failed; dbt's errors reach the run's events (the step failure and the compute log). Tests are
selected `buildable`: a model's step runs the tests whose other parents it can build, so dim_zones
alone does not run fact_trips' relationships tests, and fact_trips runs them.
"""

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtProjectPreparer,
    DagsterDbtTranslator,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)

from taxi_platform.assets.trips import RANGE_POLICY, WAREHOUSE_POOL, run_months
from taxi_platform.datasets import ALL_DATASETS
from taxi_platform.resources import dbt_executable
from taxi_platform.warehouse.base import TripWarehouse

MONTHLY = "tag:monthly"
DBT_GROUP = "transform"
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


class DbtManifestMissing(FileNotFoundError):
    pass


def load_dbt_project(project_dir: Path) -> DbtProject:
    project = DbtProject(project_dir=project_dir, profiles_dir=project_dir)
    if DagsterDbtProjectPreparer().using_dagster_dev() and not manifest_is_current(project):
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


SOURCES_STAMP = "manifest.sources"


def dbt_sources_fingerprint(project: DbtProject) -> str:
    """Name, size and modification time of every file of the dbt project outside its target."""
    root = Path(project.project_dir)
    skip = {str(project.target_path), "logs", "dbt_packages"}
    entries = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        # Hidden files (.user.yml, which dbt writes; editors' swap files) and backups do not count.
        hidden = any(part.startswith(".") for part in relative.parts) or relative.name.endswith("~")
        if relative.parts[0] in skip or hidden or not path.is_file():
            continue
        stat = path.stat()
        entries.append(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


def manifest_is_current(project: DbtProject) -> bool:
    """Whether the manifest was parsed from the project's files as they are now (under `dagster
    dev` every run worker loads the code location: a parse each time cost runs 5-30 s to start)."""
    stamp = Path(project.project_dir) / project.target_path / SOURCES_STAMP
    try:
        return project.manifest_path.exists() and stamp.read_text() == dbt_sources_fingerprint(project)
    except OSError:
        return False


@contextmanager
def write_sources_stamp(project: DbtProject) -> Iterator[None]:
    """Around a `dbt parse` into the project's target: on success, the stamp of the files as they
    were before it (an edit meanwhile makes the next `dagster dev` load parse again)."""
    fingerprint = dbt_sources_fingerprint(project)
    yield
    (Path(project.project_dir) / project.target_path / SOURCES_STAMP).write_text(fingerprint)


def reparse_manifest(project: DbtProject, force: bool = False) -> None:
    """`dbt parse` into a folder of its own, then the manifest and partial-parse file moved into
    the project's target atomically, one process at a time: under `dagster dev` the code server,
    the daemon and every run worker load the code location, and none may read a half-written
    manifest."""
    # Absolute: dbt runs in the project folder, where a relative scratch path would land in a
    # project_dir/project_dir/target of its own.
    target = (Path(project.project_dir) / project.target_path).resolve()
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".parse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and manifest_is_current(project):  # another process parsed it meanwhile
            return
        scratch = Path(tempfile.mkdtemp(prefix=".parse-", dir=target))
        try:
            with write_sources_stamp(project):
                DbtCliResource(project_dir=project, dbt_executable=dbt_executable()).cli(
                    ["parse", "--quiet"], target_path=scratch
                ).wait()
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


# The connection settings that make dbt's parse state differ (profile and sources), none of them a
# secret: an allowlist, so a secret added to the environment later never ends up hashed in a name.
PARSE_KEY_SETTINGS = (
    "TAXI_DBT_TARGET",
    "TAXI_DBT_PG_HOST",
    "TAXI_DBT_PG_PORT",
    "TAXI_DBT_PG_USER",
    "TAXI_DBT_PG_DBNAME",
    "TAXI_DBT_SCHEMA",
    "TAXI_WAREHOUSE_SCHEMA",
    "TAXI_GCP_PROJECT",
    "TAXI_GCP_LOCATION",
    "TAXI_BQ_API_ENDPOINT",
    "TAXI_DBT_BQ_METHOD",
)


def parse_state_path(project: DbtProject, dbt_env: Mapping[str, str]) -> Path:
    """Where builds against this connection keep dbt's partial-parse state."""
    public = sorted((k, dbt_env[k]) for k in PARSE_KEY_SETTINGS if k in dbt_env)
    key = hashlib.sha256(json.dumps(public).encode()).hexdigest()[:16]
    return Path(project.project_dir) / project.target_path / "partial_parse" / f"{key}.msgpack"


KEPT_PARSE_STATES = 8  # connections; ~0.6 MB each, the least recently built against go first


def _keep_parse_state(produced: Path, kept: Path) -> None:
    """Best effort: a read-only project folder only costs the next build a full parse."""
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        scratch = kept.with_name(f".{kept.name}.{os.getpid()}")
        shutil.copyfile(produced, scratch)
        os.replace(scratch, kept)
        states = sorted(kept.parent.glob("*.msgpack"), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in states[KEPT_PARSE_STATES:]:
            stale.unlink(missing_ok=True)
    except OSError:
        pass


def _build(
    context: dg.AssetExecutionContext,
    dbt: DbtCliResource,
    warehouse: TripWarehouse,
    project: DbtProject,
    months: list[date],
) -> Iterator[Any]:
    dbt_env = warehouse.dbt_env()
    # The models read every dataset's final table, whichever datasets the source holds.
    warehouse.ensure_trip_tables(list(ALL_DATASETS.values()))
    # Always set, empty for no month: a value inherited from the worker's environment must not
    # narrow an unpartitioned build.
    month_env = {
        "TAXI_DBT_MONTH_START": f"{months[0]:%Y-%m-%d}" if months else "",
        "TAXI_DBT_MONTH_END": f"{months[-1]:%Y-%m-%d}" if months else "",
    }
    # dagster-dbt's default is a new folder under dbt_project/target per invocation (1-2 MB each),
    # never removed; ours is removed when the step ends, however it ends. dagster-dbt copies the
    # prepared partial-parse file in unless one is there already: the connection's own, if kept.
    target = Path(tempfile.mkdtemp(prefix=f"taxi-dbt-{context.run.run_id[:8]}-"))
    kept_state = parse_state_path(project, dbt_env)
    try:
        with warehouse.dbt_build_lock(), _environ({**dbt_env, **DBT_STEP_ENV, **month_env}):
            # Inside the lock: a build that waited starts from the state the one before it left.
            try:
                shutil.copyfile(kept_state, target / "partial_parse.msgpack")
            except FileNotFoundError:  # none yet, or pruned meanwhile: dbt parses in full
                pass
            events = dbt.cli(["build"], context=context, target_path=target).stream()
            yield from events
        if (target / "partial_parse.msgpack").exists():
            _keep_parse_state(target / "partial_parse.msgpack", kept_state)
    finally:
        shutil.rmtree(target, ignore_errors=True)


@dataclass(frozen=True)
class ModelFigures:
    """What a built table's materialization reports: `dagster/row_count` (of the partition's month
    for a monthly model), and `trips` / `revenue` where the model has them, so the UI plots them
    per month. Counted by the platform's warehouse, not dagster-dbt's `fetch_row_counts()`, which
    reads the relation names of the prepared manifest (another schema than a run's, in the tests)
    and counts whole tables."""

    month_column: str | None = None
    trips_column: str | None = None  # summed; None: a row is a trip
    revenue_column: str | None = None

    def read(
        self, warehouse: TripWarehouse, model: str, months: list[date]
    ) -> dict[date | None, dict[str, Any]]:
        sums = [c for c in (self.trips_column, self.revenue_column) if c]
        found = warehouse.dbt_model_figures(model, sums, self.month_column, months)
        metadata = {}
        for month in months if self.month_column else [None]:
            rows, *values = found.get(month) or (0,) + (0,) * len(sums)
            figures = dict(zip(sums, values))
            entry = {"dagster/row_count": dg.MetadataValue.int(int(rows))}
            if self.month_column:
                trips = figures.get(self.trips_column, rows) if self.trips_column else rows
                entry["trips"] = dg.MetadataValue.int(int(trips or 0))
            if self.revenue_column:
                entry["revenue"] = dg.MetadataValue.float(round(float(figures[self.revenue_column] or 0), 2))
            metadata[month] = entry
        return metadata


# Tables built by dbt and what they report; views (the staging models) report nothing: counting
# one runs its query.
MODEL_FIGURES = {
    "fact_trips": ModelFigures(month_column="source_month", revenue_column="total_amount"),
    "dm_monthly_zone_revenue": ModelFigures(
        month_column="revenue_month",
        trips_column="total_monthly_trips",
        revenue_column="revenue_monthly_total_amount",
    ),
    "fact_fhv_trips": ModelFigures(month_column="source_month", revenue_column="passenger_total_amount"),
    "dm_monthly_zone_trips": ModelFigures(
        month_column="source_month", trips_column="trips", revenue_column="revenue"
    ),
    "dim_zones": ModelFigures(),
    "payment_type_lookup": ModelFigures(),
    "taxi_zone_lookup": ModelFigures(),
    "vendor_lookup": ModelFigures(),
    "hvfhs_license_lookup": ModelFigures(),
}


def with_model_figures(
    context: dg.AssetExecutionContext, events: Iterable[Any], warehouse: TripWarehouse, months: list[date]
) -> Iterator[Any]:
    """Each built table's materialization carries its figures. A range run has one
    materialization for all its months, so there each month's figures are also an observation
    of that month's partition (the UI plots both per partition). Figures that cannot be read are a
    warning, never a failed build: the tables were built."""
    for event in events:
        if isinstance(event, dg.Output):
            key = context.asset_key_for_output(event.output_name)
            figures = MODEL_FIGURES.get(key.path[-1])
            if figures is not None:
                try:
                    per_month = figures.read(warehouse, key.path[-1], months)
                except Exception as exc:  # noqa: BLE001 - any warehouse error: reported, build kept
                    context.log.warning(f"{key.to_user_string()}: its figures could not be read: {exc}")
                    per_month = None
                if per_month is None:
                    pass
                elif figures.month_column is None:
                    event = event.with_metadata({**event.metadata, **per_month[None]})
                elif len(months) == 1:
                    event = event.with_metadata({**event.metadata, **per_month[months[0]]})
                else:
                    for partition_key, month in run_months(context):
                        context.log_event(
                            dg.AssetObservation(
                                asset_key=key, partition=partition_key, metadata=per_month[month]
                            )
                        )
        yield event


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
            context, _build(context, dbt, warehouse, project, months), warehouse, months
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
        yield from with_model_figures(context, _build(context, dbt, warehouse, project, []), warehouse, [])

    return [monthly_models, reference_models]
