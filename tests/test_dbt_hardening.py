"""The dbt assets' robustness: a dbt step leaves no per-invocation folder on disk (succeeded or
failed, its errors stay in the run's events), and the reference models (dim_zones, the
payment-type seed) materialize on their own before any month is loaded, while the relationships
tests of fact_trips still run as its checks when it is built."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
from support.paths import REPO
from support.pg_env import Env
from support.run_results import failure_message

from taxi_platform.assets.trip_keys import final_key, raw_file_key, staging_key
from taxi_platform.assets.zones import reference_file_key, reference_table_key
from taxi_platform.datasets import GREEN, YELLOW, ZONES
from taxi_platform.sample.generator import generate_month
from taxi_platform.sample.zones import write_mirror_zones

MONTH = date(2019, 1, 1)
ZONE_TABLES = [reference_file_key(ZONES), reference_table_key(ZONES)]
DIM_ZONES = dg.AssetKey(["dbt", "dim_zones"])
PAYMENT_TYPES = dg.AssetKey(["dbt", "payment_type_lookup"])
DBT_MONTHLY = [
    dg.AssetKey(["dbt", n])
    for n in ("stg_yellow_tripdata", "stg_green_tripdata", "fact_trips", "dm_monthly_zone_revenue")
]
RELATIONSHIPS = {
    "fact_trips_pickup_location_id_relationships",
    "fact_trips_dropoff_location_id_relationships",
}


@pytest.fixture
def private_tmp(session_root: Path, monkeypatch) -> Path:
    """This test's own temporary folder, so another process's dbt folders cannot be counted."""
    folder = Path(tempfile.mkdtemp(prefix="tmp-", dir=session_root))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def invocation_folders(env: Env, run_id: str, tmp: Path) -> list[Path]:
    """Folders of the run's dbt invocations still on disk: under the project's target folder
    (dagster-dbt's default, `<op>-<run id[:7]>-<uuid>`) or the temporary folder."""
    target = env.settings.dbt_project_dir / "target"
    places = [p for p in (target, tmp) if p.is_dir()]
    return [p for place in places for p in place.iterdir() if run_id[:7] in p.name]


def zone_rows(env: Env) -> int:
    return env.query(f'SELECT count(*) FROM "{env.settings.warehouse_schema}"."{ZONES.name}"')[0][0]


def test_dbt_steps_leave_no_invocation_folder_and_keep_dbt_errors_in_the_run(env: Env, private_tmp: Path):
    write_mirror_zones(env.mirror)
    env.run(ZONE_TABLES)
    target = env.settings.dbt_project_dir / "target"
    prepared = {p.name for p in target.iterdir() if p.is_file()}
    assert "manifest.json" in prepared

    built = env.run([DIM_ZONES, PAYMENT_TYPES])
    assert built.success
    assert {e.asset_key for e in built.get_asset_materialization_events()} == {DIM_ZONES, PAYMENT_TYPES}
    assert invocation_folders(env, built.run_id, private_tmp) == []

    # A dbt step that fails (a model the monthly models join is gone).
    env.query(f'DROP TABLE "{env.settings.dbt_schema}".dim_zones')
    failed = env.run(DBT_MONTHLY, MONTH, raise_on_error=False)
    assert not failed.success
    message = failure_message(failed)
    assert "dim_zones" in message and "does not exist" in message  # dbt's error, in the run
    assert "dbt debug log" not in message  # no pointer to a file that is gone
    assert invocation_folders(env, failed.run_id, private_tmp) == []

    # What the definitions load from is still there.
    assert {"manifest.json", "partial_parse.msgpack"} <= {p.name for p in target.iterdir() if p.is_file()}


def test_dim_zones_alone_before_any_month_then_fact_trips_runs_the_relationships_checks(env: Env):
    write_mirror_zones(env.mirror)
    env.run(ZONE_TABLES)
    zones = zone_rows(env)
    assert zones > 200
    dim_zones = f'"{env.settings.dbt_schema}"."dim_zones"'

    # `dagster asset materialize --select dbt/dim_zones`: nothing else, no month of trips yet.
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "asset",
            "materialize",
            "-m",
            "taxi_platform.definitions",
            "--select",
            DIM_ZONES.to_user_string(),
        ],
        cwd=REPO,
        env=env.cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert env.query(f"SELECT count(*) FROM {dim_zones}")[0][0] == zones

    # The UI's Materialize on one reference asset (with its own checks): each alone.
    for key in (DIM_ZONES, PAYMENT_TYPES):
        result = env.run([key], raise_on_error=False)
        assert result.success, failure_message(result)
        assert [e.asset_key for e in result.get_asset_materialization_events()] == [key]
        assert {e.asset_key for e in result.get_asset_check_evaluations()} == {key}
    assert env.query(f"SELECT count(*) FROM {dim_zones}")[0][0] == zones

    # Building a month's fact_trips still runs its relationships tests to dim_zones, as checks.
    for spec, rows in ((YELLOW, 400), (GREEN, 200)):
        generate_month(spec, MONTH, env.mirror_path(spec, MONTH), rows=rows, seed=5)
        env.run([raw_file_key(spec), staging_key(spec), final_key(spec)], MONTH)
    result = env.run(DBT_MONTHLY, MONTH)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert RELATIONSHIPS <= set(evaluations)
    assert all(evaluations[name].passed for name in RELATIONSHIPS)
    assert all(evaluations[name].asset_key == dg.AssetKey(["dbt", "fact_trips"]) for name in RELATIONSHIPS)
