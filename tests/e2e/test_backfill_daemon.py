"""A backfill of 3 months x 2 colours launched through the webserver's GraphQL API (as the UI does),
executed by the daemon through the run queue as one run for the range (the assets' single-run
backfill policy), with the warehouse pool bounding concurrent writes."""

from __future__ import annotations

import dagster as dg
import pytest
from support.e2e_backfill import DBT_MONTHLY, MONTHS, Backfill, mart_trips_per_partition, trip_asset_keys
from support.e2e_stack import Stack
from support.run_results import query, recorded_metadata

from taxi_platform.assets.policies import WAREHOUSE_POOL
from taxi_platform.assets.trip_keys import final_key, staging_key
from taxi_platform.automation.release_sensor import RELEASE_SENSOR_NAME
from taxi_platform.datasets import DATASETS

pytestmark = pytest.mark.slow


def test_every_partition_is_loaded_with_the_right_rows(dagster_stack: Stack, backfill: Backfill):
    stack = dagster_stack
    assert backfill.status in ("COMPLETED", "COMPLETED_SUCCESS"), (backfill, stack.log_tail())
    assert backfill.runs and all(r["status"] == "SUCCESS" for r in backfill.runs), backfill.runs
    # One run covered the range and every selected asset.
    (run,) = backfill.runs
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["dagster/backfill"] == backfill.id
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (
        f"{MONTHS[0]:%Y-%m-01}",
        f"{MONTHS[-1]:%Y-%m-01}",
    )

    # The warehouse: each month of each colour holds exactly the file's distinct trips.
    counts_by_file = {}
    for spec in DATASETS.values():
        counts = dict(
            query(
                stack.warehouse_url,
                f'SELECT filename, count(*) FROM "{stack.warehouse_schema}".'
                f'"{spec.table_name}" GROUP BY filename',
            )
        )
        expected = {
            spec.file_name(m): stack.generated[(spec.name, m)].rows
            - stack.generated[(spec.name, m)].duplicate_rows
            for m in MONTHS
        }
        assert counts == expected
        assert all(0 < n < 2_000 for n in counts.values())
        counts_by_file[spec.name] = counts

    # Dagster: every asset has exactly these partitions materialized, and each partition's
    # row-count metadata is that month's (from the table, and the staging rows read from the file).
    with stack.instance() as instance:
        for key in trip_asset_keys():
            assert instance.get_materialized_partitions(key) == {f"{m:%Y-%m-01}" for m in MONTHS}, key
        for spec in DATASETS.values():
            records = instance.fetch_materializations(final_key(spec), limit=10).records
            by_partition = {r.partition_key: recorded_metadata(r)["dagster/row_count"].value for r in records}
            assert by_partition == {
                f"{m:%Y-%m-01}": stack.generated[(spec.name, m)].rows
                - stack.generated[(spec.name, m)].duplicate_rows
                for m in MONTHS
            }
            assert by_partition == {
                f"{f.rsplit('_', 1)[1][:7]}-01": n for f, n in counts_by_file[spec.name].items()
            }
            staged = instance.fetch_materializations(staging_key(spec), limit=10).records
            assert {r.partition_key: recorded_metadata(r)["rows_read"].value for r in staged} == {
                f"{m:%Y-%m-01}": stack.generated[(spec.name, m)].rows for m in MONTHS
            }
            assert {
                r.partition_key: recorded_metadata(r)["dagster/row_count"].value for r in staged
            } == by_partition  # the staged table is the month's partition


def test_the_daemon_brings_each_loaded_months_dbt_models_up_to_date(
    dagster_stack: Stack, backfill: Backfill, dbt_months_built: float
):
    """Declarative automation: no one asked for dbt; the automation sensor in the daemon requests the
    dbt partitions of the months the backfill loaded, and the revenue mart counts their trips."""
    stack = dagster_stack
    with stack.instance() as instance:
        dbt_runs = [
            r
            for r in instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))
            if any(k in DBT_MONTHLY for k in (r.asset_selection or ()))
        ]
        assert dbt_runs and all(r.tags.get("taxi/dbt") == "automation" for r in dbt_runs)
        # The dbt runs of the automation ran one at a time (the instance's tag concurrency limit).
        spans = []
        for r in dbt_runs:
            record = instance.get_run_record_by_id(r.run_id)
            assert record is not None and record.start_time is not None and record.end_time is not None
            spans.append((record.start_time, record.end_time))
        assert _max_overlap([(a, b, "") for a, b in spans]) == 1, spans
    print(f"\nbackfill {backfill.seconds:.0f} s, dbt automation done {dbt_months_built:.0f} s later")
    # The mart's trips per month and service equal the final tables' vendor trips of that month.
    mart = dict(
        ((str(m), s), n)
        for m, s, n in query(
            stack.warehouse_url,
            f"SELECT revenue_month, service_type, sum(total_monthly_trips) FROM "
            f'"{stack.dbt_schema}".dm_monthly_zone_revenue GROUP BY 1, 2',
        )
    )
    expected = {}
    for spec in DATASETS.values():
        for filename, n in query(
            stack.warehouse_url,
            f'SELECT filename, count(*) FROM "{stack.warehouse_schema}".'
            f'"{spec.table_name}" WHERE "VendorID" IS NOT NULL GROUP BY 1',
        ):
            month = filename.rsplit("_", 1)[1][:7] + "-01"
            expected[(month, spec.name.capitalize())] = n
    assert mart == expected and len(mart) == 6
    # Each month's partition of the mart carries that month's trips (what the UI plots), whether the
    # automation built it alone (the materialization's metadata) or in a range (an observation).
    assert mart_trips_per_partition(stack) == {
        m: sum(n for (month, _), n in expected.items() if month == m) for m in {k[0] for k in expected}
    }


def _pool_intervals(stack: Stack, run_ids: list[str]) -> list[tuple[float, float, str]]:
    """(start, end, run:step) of every step that holds a warehouse pool slot: the trip tables'
    staging and final steps, and the dbt steps."""
    pool_steps = {
        f"{k.path[0]}__{k.path[1]}"
        for spec in DATASETS.values()
        for k in (staging_key(spec), final_key(spec))
    } | {"dbt_monthly_models", "dbt_reference_models"}
    rows = query(
        stack.dagster_db_url,
        "SELECT run_id, step_key, dagster_event_type, extract(epoch from timestamp) FROM event_logs "
        "WHERE run_id = ANY(%s) AND dagster_event_type IN ('STEP_START', 'STEP_SUCCESS', 'STEP_FAILURE') "
        "ORDER BY id",
        (run_ids,),
    )
    starts, intervals = {}, []
    for run_id, step, kind, ts in rows:
        if step not in pool_steps:
            continue
        if kind == "STEP_START":
            starts[(run_id, step)] = float(ts)
        else:
            intervals.append((starts.pop((run_id, step)), float(ts), f"{run_id[:8]}:{step}"))
    assert not starts, f"steps that never finished: {starts}"
    return intervals


def _max_overlap(intervals: list[tuple[float, float, str]]) -> int:
    edges = sorted(
        [(s, 1) for s, _, _ in intervals] + [(e, -1) for _, e, _ in intervals], key=lambda x: (x[0], x[1])
    )  # an end before a start at the same instant
    running = peak = 0
    for _, delta in edges:
        running += delta
        peak = max(peak, running)
    return peak


def test_no_more_warehouse_writes_at_once_than_the_pool_allows(
    dagster_stack: Stack, backfill: Backfill, dbt_months_built: float
):
    stack = dagster_stack
    run_ids = [r["id"] for r in backfill.runs]
    # The range run's staging and final steps of the 2 colours ran, each exactly once (a step
    # covers the 3 months).
    assert len(_pool_intervals(stack, run_ids)) == 2 * 2
    with stack.instance() as instance:  # the dbt runs the automation started are done (the fixture)
        every_run = [r.run_id for r in instance.get_runs()]
    # Across every run of the instance (the backfill's and the dbt automation's), never more
    # steps inside the pool at once than its limit.
    intervals = _pool_intervals(stack, every_run)
    assert _max_overlap(intervals) <= stack.pool_limit == 2, sorted(intervals)
    # The limit came from the shipped instance configuration, and every slot was given back.
    with stack.instance() as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == stack.pool_limit
        info = instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL)
        assert info.slot_count == stack.pool_limit and info.active_slot_count == 0
        # The runs went through the queue (the QueuedRunCoordinator of the instance file).
        for run_id in run_ids:
            kinds = {r.dagster_event.event_type for r in instance.all_logs(run_id) if r.dagster_event}
            assert dg.DagsterEventType.RUN_ENQUEUED in kinds and dg.DagsterEventType.RUN_SUCCESS in kinds


def test_automation_is_registered_in_the_running_instance(dagster_stack: Stack):
    """The schedules and sensors as the daemon sees them: names, default states."""
    data = dagster_stack.graphql("""{ repositoriesOrError { ... on RepositoryConnection { nodes {
        schedules { name cronSchedule executionTimezone scheduleState { status } }
        sensors { name sensorState { status } } } } } }""")
    (repo,) = data["repositoriesOrError"]["nodes"]
    schedules = {
        s["name"]: (s["cronSchedule"], s["executionTimezone"], s["scheduleState"]["status"])
        for s in repo["schedules"]
    }
    assert schedules == {
        "green_tripdata_monthly": ("0 9 1 * *", "UTC", "RUNNING"),
        "yellow_tripdata_monthly": ("0 10 1 * *", "UTC", "RUNNING"),
    }
    sensors = {s["name"]: s["sensorState"]["status"] for s in repo["sensors"]}
    assert sensors == {
        RELEASE_SENSOR_NAME: "STOPPED",
        "taxi_dbt_automation": "RUNNING",
        "taxi_run_failure_notifier": "RUNNING",
    }
