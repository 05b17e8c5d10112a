"""The partitions' range (the source's months) and a range of months in one run: `dagster asset
materialize --partition-range` (a real process) and in-process range runs; per-month rows in the
tables and in each partition's metadata; a bad month in the middle of a range; unpublished months
inside a range; a range past the last partition."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import dagster as dg
import pytest
from support.expected import expected_from_file, set_value
from support.pg_env import Env
from support.pg_faults import keep_later_occurrences
from support.run_results import check_event, failure_message, partition_metadata, recorded_metadata

from taxi_platform.assets.dbt import DBT_REFERENCE_KEYS
from taxi_platform.assets.trip_history import NOT_PUBLISHED
from taxi_platform.assets.trip_keys import final_key, raw_file_key, staging_key
from taxi_platform.assets.zones import reference_file_key, reference_table_key
from taxi_platform.datasets import GREEN, YELLOW, ZONES
from taxi_platform.partitions import (
    dataset_partitions,
    is_partition_month,
    next_month,
    outside_partitions,
    source_partitions,
)
from taxi_platform.sample.generator import generate_month
from taxi_platform.sample.zones import write_mirror_zones
from taxi_platform.source_specs import COURSE_CSV, TLC_PARQUET, expected_published_month, source_datasets

JAN, FEB, MAR = date(2019, 1, 1), date(2019, 2, 1), date(2019, 3, 1)
MONTHS = (JAN, FEB, MAR)
DBT_MONTHLY = tuple(
    dg.AssetKey(["dbt", n])
    for n in ("stg_yellow_tripdata", "stg_green_tripdata", "fact_trips", "dm_monthly_zone_revenue")
)
DBT_REFERENCE = DBT_REFERENCE_KEYS


def key(month: date) -> str:
    return f"{month:%Y-%m-01}"


# --- the partitions: the source's months ---------------------------------------------------------

FAR_FUTURE = datetime(2026, 12, 2, tzinfo=UTC)
COURSE = source_datasets(COURSE_CSV)
monthly_partitions = dataset_partitions(COURSE["yellow"])


@pytest.mark.parametrize(
    "now", [datetime(2021, 8, 1, tzinfo=UTC), FAR_FUTURE, datetime(2099, 1, 1, tzinfo=UTC)]
)
def test_the_partitions_are_the_course_sources_months_whatever_the_date(now):
    for spec in COURSE.values():
        partitions = dataset_partitions(spec)
        keys = partitions.get_partition_keys(current_time=now)
        assert len(keys) == 31 and keys[0] == "2019-01-01" and keys[-1] == "2021-07-01"
        with dg.partition_loading_context(effective_dt=now):
            assert partitions.get_first_partition_key() == "2019-01-01"
            assert partitions.get_last_partition_key() == "2021-07-01"
        assert partitions.get_last_partition_key() == "2021-07-01"  # the real clock
    assert source_partitions(COURSE_CSV) == monthly_partitions


def test_the_range_is_the_sources_data():
    assert (COURSE_CSV.first_month, COURSE_CSV.last_month) == (date(2019, 1, 1), date(2021, 7, 1))
    assert COURSE_CSV.months_text == "2019-01..2021-07"
    # Every dataset's published months lie within the source's.
    for spec in COURSE.values():
        assert spec.last_published is not None and COURSE_CSV.last_month is not None
        assert COURSE_CSV.first_month <= spec.first_published <= spec.last_published <= COURSE_CSV.last_month
        assert spec.file_name(date(2019, 1, 1)) == f"{spec.name}_tripdata_2019-01.csv.gz"
    # The TLC's releases: a live source (no last month) ends at the last complete month, and each
    # dataset starts at its own first month.
    tlc = source_datasets(TLC_PARQUET, today=FAR_FUTURE.date())
    firsts = {name: spec.first_published for name, spec in tlc.items()}
    assert firsts == {
        "yellow": date(2009, 1, 1),
        "green": date(2014, 1, 1),
        "fhv": date(2015, 1, 1),
        "fhvhv": date(2019, 2, 1),
    }
    assert {spec.last_published for spec in tlc.values()} == {date(2026, 9, 1)}  # due by 2026-11-25
    keys = dataset_partitions(tlc["fhvhv"]).get_partition_keys(current_time=FAR_FUTURE)
    assert (keys[0], keys[-1], len(keys)) == ("2019-02-01", "2026-11-01", 94)
    assert tlc["green"].file_name(date(2024, 3, 1)) == "green_tripdata_2024-03.parquet"
    assert outside_partitions(tlc["green"], date(2030, 1, 1)) is None
    assert outside_partitions(tlc["green"], date(2013, 12, 1)) == (
        "before the first month of green in the tlc-parquet source (2014-01..the last complete month)"
    )
    assert source_partitions(TLC_PARQUET).get_first_partition_key() == "2009-01-01"
    with pytest.raises(ValueError, match="not the first day of a month"):
        replace(TLC_PARQUET, first_month=date(2019, 1, 2))


@pytest.mark.parametrize(
    "today, expected",
    [
        (date(2026, 12, 2), date(2026, 9, 1)),
        (date(2026, 11, 25), date(2026, 9, 1)),
        (date(2026, 11, 24), date(2026, 8, 1)),
    ],
)
def test_a_month_is_expected_by_the_25th_two_months_later(today, expected):
    assert expected_published_month(today) == expected


@pytest.mark.parametrize(
    "now",
    [
        datetime(2019, 2, 28, 23, 59, tzinfo=UTC),
        datetime(2021, 7, 15, 8, tzinfo=UTC),
        datetime(2021, 8, 1, tzinfo=UTC),
        FAR_FUTURE,
    ],
)
def test_is_partition_month_agrees_with_dagster(now):
    keys = set(monthly_partitions.get_partition_keys(current_time=now))
    month = date(2018, 6, 1)
    while month < date(2022, 6, 1):
        assert is_partition_month(COURSE["yellow"], month, now) == (key(month) in keys), (month, now)
        month = next_month(month)


def generate(env: Env, spec, months, base_rows: int = 1_000) -> dict[str, int]:
    """Files of different sizes per month; partition key -> distinct trips expected."""
    expected = {}
    for i, month in enumerate(months):
        path = env.mirror_path(spec, month)
        generate_month(spec, month, path, rows=base_rows + 250 * i, seed=40 + i)
        expected[key(month)] = expected_from_file(spec, path).distinct
    return expected


def rows_per_month(env: Env, spec) -> dict[str, int]:
    return {
        f"{f.rsplit('_', 1)[1][:7]}-01": n
        for f, n in env.query(f"SELECT filename, count(*) FROM {env.final(spec)} GROUP BY filename")
    }


def test_cli_partition_range_loads_every_month_and_its_dbt_models(env: Env):
    yellow = generate(env, YELLOW, MONTHS)
    green = generate(env, GREEN, MONTHS, base_rows=600)
    assert len(set(yellow.values())) == 3  # distinct per month: a total copied to each would show
    write_mirror_zones(env.mirror)
    env.run([reference_file_key(ZONES), reference_table_key(ZONES)])
    env.run(DBT_REFERENCE)
    assert env.materialize_range(GREEN, JAN, MAR).success  # the other colour, a range in-process

    proc = env.cli_materialize(YELLOW, JAN, MAR, more=DBT_MONTHLY)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-5000:]

    # One run covered the range; the tables hold exactly each month's distinct trips.
    cli_runs = [
        r for r in env.instance.get_runs() if r.asset_selection and DBT_MONTHLY[0] in r.asset_selection
    ]
    assert len(cli_runs) == 1 and cli_runs[0].status == dg.DagsterRunStatus.SUCCESS
    assert cli_runs[0].tags["dagster/asset_partition_range_start"] == key(JAN)
    assert cli_runs[0].tags["dagster/asset_partition_range_end"] == key(MAR)
    assert rows_per_month(env, YELLOW) == yellow and rows_per_month(env, GREEN) == green

    # Each partition's materialization carries that month's numbers.
    instance = env.instance
    assert partition_metadata(instance, final_key(YELLOW), "dagster/row_count") == yellow
    assert partition_metadata(instance, final_key(YELLOW), "filename") == {
        key(m): YELLOW.file_name(m) for m in MONTHS
    }
    staged = partition_metadata(instance, staging_key(YELLOW), "rows_read")
    read = partition_metadata(instance, raw_file_key(YELLOW), "rows")
    assert staged == read and len(set(staged.values())) == 3
    assert partition_metadata(instance, staging_key(YELLOW), "dagster/row_count") == yellow
    assert all(staged[k] >= yellow[k] for k in yellow)
    assert partition_metadata(instance, raw_file_key(YELLOW), "lake_key") == {
        key(m): f"yellow/{YELLOW.file_name(m)}" for m in MONTHS
    }
    assert partition_metadata(instance, final_key(GREEN), "dagster/row_count") == green

    # The checks ran for every month of the range, each result filed under its month.
    history = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(final_key(YELLOW), "has_rows"), limit=10
    )
    by_month = {r.partition: check_event(r).asset_check_evaluation_data for r in history}
    assert set(by_month) == set(yellow) and all(e.passed for e in by_month.values())
    assert {k: e.metadata["rows"].value for k, e in by_month.items()} == yellow
    assert {k: e.metadata["month"].value for k, e in by_month.items()} == {k: k[:7] for k in yellow}

    # dbt: one build for the range; every month's partition of every monthly model is recorded,
    # and the mart counts exactly each month's vendor trips of both colours.
    for model in DBT_MONTHLY:
        assert instance.get_materialized_partitions(model) == set(yellow), model
    mart = {
        (str(m), s): int(n)
        for m, s, n in env.query(
            f"SELECT revenue_month, service_type, sum(total_monthly_trips) FROM "
            f'"{env.settings.dbt_schema}".dm_monthly_zone_revenue GROUP BY 1, 2'
        )
    }
    expected = {}
    for spec in (YELLOW, GREEN):
        for filename, n in env.query(
            f'SELECT filename, count(*) FROM {env.final(spec)} WHERE "VendorID" IS NOT NULL GROUP BY 1'
        ):
            expected[(f"{filename.rsplit('_', 1)[1][:7]}-01", spec.name.capitalize())] = n
    assert mart == expected and len(mart) == 6

    # A range run has one materialization for all its months: each month's trips and revenue are an
    # observation of that month's partition, so the UI plots them per month.
    revenue = {
        str(m): float(r)
        for m, r in env.query(
            f"SELECT revenue_month, round(sum(revenue_monthly_total_amount), 2) FROM "
            f'"{env.settings.dbt_schema}".dm_monthly_zone_revenue GROUP BY 1'
        )
    }
    observed = {
        r.partition_key: recorded_metadata(r)
        for r in instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(["dbt", "dm_monthly_zone_revenue"])), limit=10
        ).records
    }
    assert {k: m["trips"].value for k, m in observed.items()} == {
        k: sum(n for (month, _), n in expected.items() if month == k) for k in yellow
    }
    assert {k: m["revenue"].value for k, m in observed.items()} == pytest.approx(revenue)


def test_a_range_run_rebuilds_only_its_months_in_dbt(env: Env, capfd):
    """A second range run over Feb..Mar, after Feb's file changed, changes Feb's dbt rows only."""
    generate(env, YELLOW, MONTHS)
    generate(env, GREEN, MONTHS, base_rows=400)
    write_mirror_zones(env.mirror)
    env.run([reference_file_key(ZONES), reference_table_key(ZONES)])
    env.run(DBT_REFERENCE)
    for spec in (YELLOW, GREEN):
        assert env.materialize_range(spec, JAN, MAR).success
    job_tags = {
        "dagster/asset_partition_range_start": key(JAN),
        "dagster/asset_partition_range_end": key(MAR),
    }
    assert env.run_range(list(DBT_MONTHLY), job_tags).success

    def mart() -> dict:
        return {
            (str(m), s): int(n)
            for m, s, n in env.query(
                f"SELECT revenue_month, service_type, sum(total_monthly_trips) FROM "
                f'"{env.settings.dbt_schema}".dm_monthly_zone_revenue GROUP BY 1, 2'
            )
        }

    before = mart()
    generate_month(YELLOW, FEB, env.mirror_path(YELLOW, FEB), rows=700, seed=99)
    assert env.materialize(YELLOW, FEB).success
    assert env.run_range(
        list(DBT_MONTHLY), {**job_tags, "dagster/asset_partition_range_start": key(FEB)}
    ).success
    after = mart()
    feb_trips = env.query(
        f'SELECT count(*) FROM {env.final(YELLOW)} WHERE filename = %s AND "VendorID" IS NOT NULL',
        (YELLOW.file_name(FEB),),
    )[0][0]
    assert after[(key(FEB), "Yellow")] == feb_trips != before[(key(FEB), "Yellow")]
    assert {k: v for k, v in after.items() if k != (key(FEB), "Yellow")} == {
        k: v for k, v in before.items() if k != (key(FEB), "Yellow")
    }
    # Three dbt builds with other months each time: dbt parses the whole project at most once (the
    # first build against this connection), then only the files that read the months.
    dbt_output = capfd.readouterr().out
    assert dbt_output.count("Done. PASS=") == 3 and dbt_output.count("Unable to do partial parsing") <= 1


def _poison(path) -> None:
    set_value(path, YELLOW, line=100, column="tip_amount", value=b"abc")


def test_a_bad_month_stops_the_range_there_and_names_its_file(env: Env):
    expected = generate(env, YELLOW, MONTHS)
    _poison(env.mirror_path(YELLOW, MAR))  # detected by the COPY, in the staging step

    result = env.materialize_range(YELLOW, JAN, MAR)

    assert not result.success
    message = failure_message(result)
    assert "yellow 2019-03 (yellow_tripdata_2019-03.csv.gz)" in message
    assert "line 100, column tip_amount" in message and "abc" in message
    # The files were verified and stored for the whole range; staging did Jan and Feb, which stay
    # staged and are recorded with their own row counts; March is recorded nowhere after the lake.
    instance = env.instance
    assert instance.get_materialized_partitions(raw_file_key(YELLOW)) == {key(m) for m in MONTHS}
    staged = partition_metadata(instance, staging_key(YELLOW), "dagster/row_count")
    assert set(staged) == {key(JAN), key(FEB)}
    for month in (JAN, FEB):
        table = f'"{env.settings.staging_schema}".yellow_tripdata_{month:%Y_%m}'
        assert env.query(f"SELECT count(*) FROM {table}")[0][0] == staged[key(month)] > 0
    # The final step did not run: nothing of the range reached the final table.
    assert instance.get_materialized_partitions(final_key(YELLOW)) == set()
    assert env.fingerprint(YELLOW) == []

    # Fixed, the same range loads every month.
    generate(env, YELLOW, MONTHS)
    assert env.materialize_range(YELLOW, JAN, MAR).success
    assert rows_per_month(env, YELLOW) == expected
    assert partition_metadata(instance, final_key(YELLOW), "dagster/row_count") == expected


def test_a_failed_month_keeps_the_months_loaded_before_it(env: Env):
    """Earlier months of the final table stay as loaded when a later range run fails on a bad
    file: downloads are verified before any table is touched."""
    expected = generate(env, YELLOW, MONTHS)
    assert env.materialize_range(YELLOW, JAN, MAR).success
    before = env.fingerprint(YELLOW)
    path = env.mirror_path(YELLOW, FEB)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])  # truncated gzip

    result = env.materialize_range(YELLOW, JAN, MAR)

    assert not result.success
    message = failure_message(result)
    assert "yellow 2019-02 (yellow_tripdata_2019-02.csv.gz)" in message and "ends early" in message
    assert env.fingerprint(YELLOW) == before and rows_per_month(env, YELLOW) == expected
    assert result.get_asset_materialization_events() == []


# A dataset known to be published only up to 2021-05, within the source's months up to 2021-07 (as
# fhv is known up to 2019-12, its 2020 files in some copies only): its later partitions may 404.
KNOWN_UNTIL_MAY = replace(YELLOW, last_published=date(2021, 5, 1))


def test_unpublished_months_inside_a_range_are_skipped_and_the_others_load(env: Env):
    apr, may, jun, jul = (date(2021, m, 1) for m in (4, 5, 6, 7))
    expected = generate(env, YELLOW, (apr, may))

    result = env.materialize_range(KNOWN_UNTIL_MAY, apr, jul)

    assert result.success
    assert rows_per_month(env, YELLOW) == expected
    logs = [r.user_message for r in env.instance.all_logs(result.run_id)]
    for month in ("2021-06", "2021-07"):
        assert any(m.startswith(f"yellow {month} is not published yet: ") for m in logs), logs
    final = partition_metadata(env.instance, final_key(YELLOW), "dagster/row_count")
    assert {k: final[k] for k in expected} == expected
    # Dagster records every partition of a single-run step; the skipped months say so.
    for asset in (raw_file_key(YELLOW), staging_key(YELLOW), final_key(YELLOW)):
        flags = partition_metadata(env.instance, asset, NOT_PUBLISHED)
        assert flags == {key(apr): None, key(may): None, key(jun): True, key(jul): True}, asset
    assert final[key(jun)] is None and final[key(jul)] is None


def test_a_range_of_only_unpublished_months_materializes_nothing(env: Env):
    result = env.materialize_range(KNOWN_UNTIL_MAY, date(2021, 6, 1), date(2021, 7, 1))
    assert result.success
    assert result.get_asset_materialization_events() == []


def test_a_range_past_the_last_partition_fails_at_once_naming_the_months(env: Env):
    """A run whose range tags reach past 2021-07 (written by hand: the UI and the CLI offer only
    partitions) fails in its first step without a retry; nothing is loaded."""
    generate(env, YELLOW, (date(2021, 7, 1),))
    result = env.materialize_range(YELLOW, date(2021, 7, 1), date(2021, 9, 1))
    assert not result.success
    message = failure_message(result)
    assert (
        "the run's months 2021-07-01 .. 2021-09-01 are not all partitions: 2021-09-01 is not (the months are 2019-01..2021-07)"
        in message
    )
    assert "2021-09-01" in message
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in [e.event_type for e in result.all_events]
    assert result.get_asset_materialization_events() == [] and env.fingerprint(YELLOW) == []
    # One month that is no partition is refused by Dagster before the run starts.
    with pytest.raises(dg.DagsterUnknownPartitionError):
        env.materialize(YELLOW, date(2021, 8, 1))


def test_a_blocking_check_failing_for_one_month_of_a_range_turns_only_that_month_red(env: Env, monkeypatch):
    # February keeps a duplicate (its later occurrences are not deleted); January and March are
    # clean. Each month's results are filed under its partition; the step fails, as a blocking
    # check does in a one-month run, after recording the three months it loaded.
    from support.expected import csv_lines, read_gz, write_gz

    for month in MONTHS:
        path = env.mirror_path(YELLOW, month)
        generate_month(YELLOW, month, path, rows=1_000, seed=40 + month.month)
        lines = list(dict.fromkeys(csv_lines(read_gz(path))))  # exact duplicates removed
        write_gz(path, b"".join(lines + ([lines[5]] if month == FEB else [])))
    keep_later_occurrences(monkeypatch)
    result = env.materialize_range(YELLOW, JAN, MAR)
    assert not result.success
    assert "blocking checks failed: unique_row_id_is_unique for 2019-02" in failure_message(result)

    history = env.instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(final_key(YELLOW), "unique_row_id_is_unique"), limit=10
    )
    passed = {r.partition: check_event(r).asset_check_evaluation_data.passed for r in history}
    assert passed == {key(JAN): True, key(FEB): False, key(MAR): True}
    assert set(partition_metadata(env.instance, final_key(YELLOW), "dagster/row_count")) == {
        key(m) for m in MONTHS
    }


def test_months_swapped_before_a_failing_month_keep_their_check_results(env: Env, monkeypatch):
    from taxi_platform.warehouse.base import WarehouseError
    from taxi_platform.warehouse.postgres import PostgresWarehouse

    generate(env, YELLOW, MONTHS)
    replace_month = PostgresWarehouse.replace_month

    def fail_in_march(self, spec, month, *args, **kwargs):
        if month == MAR:
            raise WarehouseError("the server went away (injected)")
        return replace_month(self, spec, month, *args, **kwargs)

    monkeypatch.setattr(PostgresWarehouse, "replace_month", fail_in_march)
    result = env.materialize_range(YELLOW, JAN, MAR)
    assert not result.success and "the server went away (injected)" in failure_message(result)
    history = env.instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(final_key(YELLOW), "has_rows"), limit=10
    )
    evaluated = {r.partition: check_event(r).event_specific_data for r in history}
    assert {k: e.passed for k, e in evaluated.items() if isinstance(e, dg.AssetCheckEvaluation)} == {
        key(JAN): True,
        key(FEB): True,
    }  # March was planned, never evaluated
    assert set(partition_metadata(env.instance, final_key(YELLOW), "dagster/row_count")) == {
        key(JAN),
        key(FEB),
    }
