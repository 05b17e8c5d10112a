"""dbt parsing, which every run and every `dagster dev` code load used to pay in full: the manifest is
parsed again under `dagster dev` only when a file of the dbt project changed, and a month's build
against a connection starts from the partial-parse state the last build against it left."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from dagster_dbt import DbtProject

from taxi_platform.assets.dbt_build import parse_state_path
from taxi_platform.dbt_project import load_dbt_project, manifest_is_current, reparse_manifest

REPO = Path(__file__).resolve().parents[1]


def project_copy(tmp_path: Path) -> DbtProject:
    root = tmp_path / "dbt_project"
    shutil.copytree(REPO / "dbt_project", root, ignore=shutil.ignore_patterns("target", "logs"))
    return DbtProject(project_dir=root, profiles_dir=root)


def test_dagster_dev_parses_again_only_when_a_dbt_file_changed(tmp_path, monkeypatch):
    project = project_copy(tmp_path)
    assert not manifest_is_current(project)  # never parsed
    reparse_manifest(project)
    manifest = project.manifest_path
    assert manifest_is_current(project) and '"fact_trips"' in manifest.read_text()
    parsed_at = manifest.stat().st_mtime_ns

    # A code load under `dagster dev` (every run worker does one) leaves a current manifest alone.
    monkeypatch.setenv("DAGSTER_IS_DEV_CLI", "1")
    load_dbt_project(Path(project.project_dir))
    assert manifest.stat().st_mtime_ns == parsed_at

    # A model edited: the next load parses again, and the manifest has the edit.
    model = Path(project.project_dir) / "models" / "core" / "dim_zones.sql"
    model.write_text(model.read_text() + "\n-- edited in the test\n")
    assert not manifest_is_current(project)
    load_dbt_project(Path(project.project_dir))
    assert manifest.stat().st_mtime_ns != parsed_at and manifest_is_current(project)
    assert "-- edited in the test" in manifest.read_text()


def test_the_kept_parse_state_is_per_connection_and_never_keyed_by_a_secret(tmp_path):
    project = project_copy(tmp_path)
    env = {
        "TAXI_DBT_TARGET": "postgres",
        "TAXI_DBT_PG_HOST": "127.0.0.1",
        "TAXI_DBT_PG_PORT": "5433",
        "TAXI_DBT_PG_PASSWORD": "s3cret",
        "TAXI_DBT_SCHEMA": "taxi_dbt",
    }
    kept = parse_state_path(project, env)
    assert kept.parent == Path(project.project_dir) / "target" / "partial_parse"
    # Another password (or key file, or token) is the same connection; another port is not.
    assert parse_state_path(project, {**env, "TAXI_DBT_PG_PASSWORD": "other"}) == kept
    assert parse_state_path(project, {**env, "TAXI_DBT_PG_PORT": "5434"}) != kept
    assert parse_state_path(project, {**env, "TAXI_DBT_SCHEMA": "other"}) != kept


def test_parse_states_of_old_connections_are_pruned(tmp_path):
    from taxi_platform.assets.dbt_build import KEPT_PARSE_STATES, _keep_parse_state

    project = project_copy(tmp_path)
    produced = tmp_path / "partial_parse.msgpack"
    produced.write_bytes(b"state")
    kept = [parse_state_path(project, {"TAXI_DBT_PG_PORT": str(port)}) for port in range(5000, 5012)]
    for number, path in enumerate(kept):
        _keep_parse_state(produced, path)
        os.utime(path, (1_000_000 + number, 1_000_000 + number))  # built against in this order
    left = sorted(kept[0].parent.glob("*.msgpack"))
    assert left == sorted(kept[-KEPT_PARSE_STATES:]) and left[0].read_bytes() == b"state"


def test_a_parse_follows_the_months_in_the_environment_bigquery_partitions_included(tmp_path, monkeypatch):
    """BigQuery's `partitions` (the months insert_overwrite replaces) and the tests' month scope are
    evaluated when dbt parses: with the months in the environment, the files that read them are
    parsed again when they change, so a build never replaces another month's partitions."""
    project = project_copy(tmp_path)
    for name, value in {
        "TAXI_DBT_TARGET": "bigquery",
        "TAXI_DBT_BQ_METHOD": "oauth-secrets",
        "TAXI_DBT_BQ_TOKEN": "unused-by-parse",
        "TAXI_GCP_PROJECT": "taxi-test",
    }.items():
        monkeypatch.setenv(name, value)
    fact_trips, unique_test = "model.taxi_rides_ny.fact_trips", "fact_trips_trip_id_unique"

    def parsed() -> tuple:
        import json

        nodes = json.loads(project.manifest_path.read_text())["nodes"]
        test = next(n for n in nodes.values() if n["name"] == unique_test)
        return nodes[fact_trips]["config"]["partitions"], test["config"]["where"]

    monkeypatch.setenv("TAXI_DBT_MONTH_START", "2019-01-01")
    monkeypatch.setenv("TAXI_DBT_MONTH_END", "2019-01-01")
    reparse_manifest(project, force=True)
    partitions, where = parsed()
    assert partitions == ["date('2019-01-01')"] and "'2019-01-01'" in where

    monkeypatch.setenv("TAXI_DBT_MONTH_START", "2019-02-01")  # the next build: Feb .. Mar
    monkeypatch.setenv("TAXI_DBT_MONTH_END", "2019-03-01")
    reparse_manifest(project, force=True)
    partitions, where = parsed()
    assert partitions == ["date('2019-02-01')", "date('2019-03-01')"]
    assert "'2019-02-01'" in where and "'2019-03-01'" in where and "2019-01-01" not in where

    monkeypatch.setenv("TAXI_DBT_MONTH_START", "")  # none: every month
    monkeypatch.setenv("TAXI_DBT_MONTH_END", "")
    reparse_manifest(project, force=True)
    assert parsed() == (None, "1 = 1")


def test_a_failed_parse_names_the_problem_and_leaves_the_stamp_stale(tmp_path, monkeypatch):
    from dagster_dbt.errors import DagsterDbtCliRuntimeError

    project = project_copy(tmp_path)
    reparse_manifest(project)
    assert manifest_is_current(project)
    model = Path(project.project_dir) / "models" / "core" / "dim_zones.sql"
    model.write_text(model.read_text() + "\n{{ an unclosed jinja block\n")
    with pytest.raises(DagsterDbtCliRuntimeError):
        reparse_manifest(project, force=True)
    assert not manifest_is_current(project)  # the next load under `dagster dev` tries again

    # Months in the environment that are not months: dbt names the variable.
    model.write_text(model.read_text().replace("\n{{ an unclosed jinja block\n", ""))
    monkeypatch.setenv("TAXI_DBT_MONTH_START", "2019-02-01")
    monkeypatch.setenv("TAXI_DBT_MONTH_END", "")
    with pytest.raises(
        DagsterDbtCliRuntimeError, match="TAXI_DBT_MONTH_END must look like 2019-01-01, got nothing"
    ):
        reparse_manifest(project, force=True)
