"""The code location loads cleanly and exposes the contract other issues rely on."""

from __future__ import annotations

import importlib
import sys
import warnings
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pytest

from taxi_platform.datasets import ALL_DATASETS as DATASETS

REPO = Path(__file__).resolve().parents[1]


def _load_defs():
    sys.modules.pop("taxi_platform.definitions", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module("taxi_platform.definitions")
        dg.Definitions.validate_loadable(module.defs)
        module.defs.resolve_asset_graph()
    return module.defs, caught


def test_definitions_load_without_warnings_from_our_code():
    _, caught = _load_defs()
    # One chosen exception: partitioned asset checks are "preview" in Dagster 1.13 and the only
    # way to file each month's check results under that month (taxi_platform/assets/checks.py).
    preview = "Specifying a partitions_def on an AssetCheckSpec is currently in preview"
    ours = [
        w
        for w in caught
        if "taxi_platform" in (w.filename or "")
        and not (issubclass(w.category, dg.PreviewWarning) and str(w.message).startswith(preview))
    ]
    assert ours == [], [str(w.message) for w in ours]
    deprecations = [
        w for w in caught if issubclass(w.category, DeprecationWarning) and "taxi_platform" in str(w.message)
    ]
    assert deprecations == []


def test_asset_keys_groups_kinds_descriptions_and_partitions():
    defs, _ = _load_defs()
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    today = datetime.now(UTC).date()
    last_complete = date(today.year - (today.month == 1), (today.month - 2) % 12 + 1, 1)
    for name in DATASETS:
        assert {
            f"lake/{name}_tripdata_file",
            f"staging/{name}_tripdata_staging",
            f"warehouse/{name}_tripdata",
        } <= keys
    assert {
        "lake/taxi_zone_lookup_file",
        "warehouse/taxi_zones",
        "dbt/fact_trips",
        "dbt/dm_monthly_zone_revenue",
        "dbt/dim_zones",
    } <= keys
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, key
        assert node.kinds, key
        if key.path[0] == "dbt":
            assert node.group_name == "transform", key
        elif key.path[-1] in ("taxi_zones", "taxi_zone_lookup_file"):
            assert node.group_name == "reference" and node.partitions_def is None, key
        else:
            assert node.group_name in DATASETS, key
        if key.path[0] != "dbt" or key.path[-1] in ("fact_trips", "dm_monthly_zone_revenue"):
            if node.group_name != "reference":
                # The default source is the TLC's releases: each dataset from its first month
                # (the dbt models from the first of all), to the last complete month.
                first = DATASETS[node.group_name].first_month if key.path[0] != "dbt" else date(2009, 1, 1)
                assert node.partitions_def.get_first_partition_key() == f"{first:%Y-%m-%d}", key
                assert node.partitions_def.get_last_partition_key() == f"{last_complete:%Y-%m-%d}", key
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert ("warehouse/yellow_tripdata", "unique_row_id_is_unique") in checks
    ingest_checks = {c for c in checks if c[0].startswith("warehouse/")}
    # Per dataset: the four checks of each load, and whether the month due by today is loaded.
    assert len(ingest_checks) == 5 * len(DATASETS)
    assert {c for c in ingest_checks if c[1] == "month_loaded_when_due"} == {
        (f"warehouse/{name}_tripdata", "month_loaded_when_due") for name in DATASETS
    }
    assert ("dbt/fact_trips", "fact_trips_trip_id_unique") in checks
    # The first-load list of unpartitioned dbt assets (demo, bench, tests) is every one of them.
    from taxi_platform.assets.dbt import DBT_REFERENCE_KEYS

    assert set(DBT_REFERENCE_KEYS) == {
        k for k in graph.get_all_asset_keys() if k.path[0] == "dbt" and graph.get(k).partitions_def is None
    }


def _config_the_ui_shows(resource) -> list[str]:
    """A resource's configuration as the UI (and every job snapshot) holds it: the defaults of its
    config schema, which are the values it was built with; and that of the resources nested in it."""
    schema = resource.get_resource_definition().config_schema
    shown = [schema.default_value_as_json_str] if schema.default_provided else []
    for nested in resource.nested_resources.values():
        if isinstance(nested, dg.ConfigurableResource | dg.ConfigurableIOManager):
            shown += _config_the_ui_shows(nested)
    return shown


def test_resource_config_holds_no_database_url(monkeypatch):
    url = "postgresql://u:s3cr3t-in-env@127.0.0.1:1/db"
    monkeypatch.setenv("TAXI_POSTGRES_URL", url)
    defs, _ = _load_defs()
    warehouse = defs.resources["warehouse"]
    # The URL reaches the resource from Settings, as a dependency: the UI never shows it.
    assert warehouse.url == url
    shown = [text for resource in defs.resources.values() for text in _config_the_ui_shows(resource)]
    assert any('"warehouse_schema": "taxi"' in text for text in shown)  # what it does show
    assert not any("s3cr3t" in text for text in shown)
    assert "s3cr3t-in-env" not in repr(defs.resources)


def test_explicit_settings_reach_the_resources_without_the_environment(monkeypatch, tmp_path):
    from taxi_platform.definitions import build_definitions
    from taxi_platform.settings import Settings

    monkeypatch.delenv("TAXI_POSTGRES_URL", raising=False)
    url = "postgresql://u:s3cr3t-explicit@127.0.0.1:1/db"
    resources = build_definitions(Settings(home=tmp_path, postgres_url=url)).resources
    assert resources is not None
    warehouse = resources["warehouse"]
    assert warehouse.url == url and warehouse.connection_url() == url
    assert not any("s3cr3t" in text for text in _config_the_ui_shows(warehouse))


def test_the_defs_folder_and_build_definitions_give_the_same_code_location():
    """`defs` (the defs folder, as dg loads it) and `build_definitions` (its parts, merged from
    explicit Settings) must not drift apart: a module added to one is missing from the other."""
    from taxi_platform.definitions import build_definitions
    from taxi_platform.settings import settings_from_env

    def shape(defs):
        graph = defs.resolve_asset_graph()
        return (
            set(graph.get_all_asset_keys()),
            set(graph.asset_check_keys),
            {j.name for j in defs.jobs or []},
            {s.name for s in defs.schedules or []},
            {s.name for s in defs.sensors or []},
            set(defs.resources or {}),
            defs.executor,
        )

    folder, _ = _load_defs()
    assert shape(folder) == shape(build_definitions(settings_from_env()))
    assert settings_from_env() is settings_from_env()  # the parts share one Settings


@pytest.mark.slow
def test_dg_checks_and_lists_the_project(tmp_path):
    """The project as `dg` sees it ([tool.dg] in pyproject.toml): `dg check defs` loads it, and
    `dg list defs` shows its assets, jobs and sensors."""
    import json
    import os
    import subprocess

    venv = Path(sys.executable).parent
    env = {
        **os.environ,
        "VIRTUAL_ENV": str(venv.parent),  # the project's venv: dg warns when another one is active
        "PATH": f"{venv}{os.pathsep}{os.environ.get('PATH', '')}",
        "TAXI_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
    }
    (tmp_path / "dagster").mkdir()
    dg_cli = str(venv / "dg")
    check = subprocess.run(
        [dg_cli, "check", "defs"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "All definitions loaded successfully." in check.stdout
    listed = subprocess.run(
        [dg_cli, "list", "defs", "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert listed.returncode == 0, listed.stderr
    shown = json.loads(listed.stdout)
    keys = {a["asset_key"] for a in shown["assets"]}
    for name in DATASETS:
        assert {
            f"lake/{name}_tripdata_file",
            f"staging/{name}_tripdata_staging",
            f"warehouse/{name}_tripdata",
        } <= keys
    assert {"lake/taxi_zone_lookup_file", "warehouse/taxi_zones", "dbt/fact_trips", "dbt/dim_zones"} <= keys
    assert len(keys) == len(_load_defs()[0].resolve_asset_graph().get_all_asset_keys())
    assert {f"{name}_tripdata_job" for name in DATASETS} <= {j["name"] for j in shown["jobs"]}
    assert "taxi_dbt_automation" in {s["name"] for s in shown["sensors"]}


def test_the_dbt_automation_sensor_targets_every_dbt_asset_by_a_printable_selection():
    defs, _ = _load_defs()
    graph = defs.resolve_asset_graph()
    sensor = defs.resolve_sensor_def("taxi_dbt_automation")
    assert sensor.asset_selection.to_selection_str() == 'key:"dbt/*"'  # the UI shows this text
    dbt_keys = {k for k in graph.get_all_asset_keys() if k.path[0] == "dbt"}
    assert sensor.asset_selection.resolve(graph) == dbt_keys and len(dbt_keys) == 13


def test_the_course_source_leaves_out_the_dbt_models_fed_by_datasets_it_lacks(tmp_path):
    """The course's backup has no fhv or fhvhv: their models (and the all-services mart built on
    them) would wait forever for data, so that code location does not show them."""
    from taxi_platform.definitions import build_definitions
    from taxi_platform.settings import Settings

    def dbt_models(source):
        graph = build_definitions(Settings(source=source, home=tmp_path)).resolve_asset_graph()
        return {k.path[1] for k in graph.get_all_asset_keys() if k.path[0] == "dbt"}

    fed_by_fhv = {"stg_fhv_tripdata", "stg_fhvhv_tripdata", "fact_fhv_trips", "dm_monthly_zone_trips"}
    tlc, course = dbt_models("tlc"), dbt_models("course")
    assert fed_by_fhv <= tlc and len(tlc) == 13
    assert course == tlc - fed_by_fhv
    assert {"fact_trips", "dm_monthly_zone_revenue", "dim_zones", "hvfhs_license_lookup"} <= course
