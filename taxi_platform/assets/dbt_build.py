"""One dbt step: `dbt build` for the run's months, in a folder of its own.

dbt's partial-parse state depends on the connection (profile) it was parsed with, which the
prepared manifest cannot know (the embedded server's port is chosen when it starts). Each step
starts from the state the last build against the same connection left, kept in
`target/partial_parse/<connection hash>.msgpack`, so a month's build parses only what changed.

Each dbt step writes its artifacts (compiled SQL, run_results.json, a copy of the partial-parse
file) to a folder of its own in the temporary directory, removed when the step ends, succeeded or
failed; dbt's errors reach the run's events (the step failure and the compute log).
"""

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject

from taxi_platform.datasets import ALL_DATASETS
from taxi_platform.warehouse.base import TripWarehouse


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


def dbt_build(
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
