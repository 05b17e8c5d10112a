"""The code location loads cleanly and exposes the contract other issues rely on."""

from __future__ import annotations

import importlib
import sys
import warnings
from datetime import UTC, date, datetime

import dagster as dg

from taxi_platform.datasets import ALL_DATASETS as DATASETS


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
    # way to file each month's check results under that month (taxi_platform/checks.py).
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


def test_resource_config_holds_no_database_url(monkeypatch):
    monkeypatch.setenv("TAXI_POSTGRES_URL", "postgresql://u:s3cr3t-in-env@127.0.0.1:1/db")
    defs, _ = _load_defs()
    warehouse = defs.resources["warehouse"]
    # The URL is an EnvVar reference: the UI shows the variable's name, never its value.
    assert isinstance(warehouse.url, dg.EnvVar) or "s3cr3t" not in repr(warehouse.url)
    assert "s3cr3t-in-env" not in repr(defs.resources)


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
