"""The monthly schedules: which partition a tick at a given instant loads, and its tags."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg
import pytest

from taxi_platform.automation.jobs import trip_job_name
from taxi_platform.automation.schedules import data_month, schedule_name
from taxi_platform.datasets import DATASETS, GREEN, YELLOW
from taxi_platform.definitions import build_definitions
from taxi_platform.settings import Settings


@pytest.fixture(scope="module")
def defs(tmp_path_factory) -> dg.Definitions:
    return build_definitions(Settings(source="course", home=tmp_path_factory.mktemp("home")))


def schedule(defs: dg.Definitions, spec) -> dg.ScheduleDefinition:
    return defs.resolve_schedule_def(schedule_name(spec))


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def evaluate(defs, spec, instant: datetime, instance) -> list[dg.RunRequest] | str:
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=instant, repository_def=defs.get_repository_def()
    )
    data = schedule(defs, spec).evaluate_tick(context)
    if data.run_requests:
        return list(data.run_requests)
    assert data.skip_message is not None
    return data.skip_message


def test_crons_and_jobs_follow_the_course(defs):
    assert schedule(defs, GREEN).cron_schedule == "0 9 1 * *"
    assert schedule(defs, YELLOW).cron_schedule == "0 10 1 * *"
    for spec in DATASETS.values():
        s = schedule(defs, spec)
        assert s.execution_timezone == "UTC"
        assert s.job_name == trip_job_name(spec)
        job = defs.resolve_job_def(trip_job_name(spec))
        keys = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
        assert keys == {
            f"lake/{spec.name}_tripdata_file",
            f"staging/{spec.name}_tripdata_staging",
            f"warehouse/{spec.name}_tripdata",
        }
        assert job.partitions_def is not None
        # Every run of the job carries the colour, however it is launched (a range run has no
        # single `file`; the schedules' and the sensor's one-month requests add it).
        assert job.tags == {"taxi": spec.name}


@pytest.mark.parametrize(
    "spec, instant, partition, file",
    [
        # The run on the 1st of month M loads month M-2 (what the publisher has ready by then).
        (GREEN, datetime(2021, 3, 1, 9, 0, tzinfo=UTC), "2021-01-01", "green_tripdata_2021-01.csv.gz"),
        (YELLOW, datetime(2021, 3, 1, 10, 0, tzinfo=UTC), "2021-01-01", "yellow_tripdata_2021-01.csv.gz"),
        # Across a year boundary.
        (YELLOW, datetime(2020, 1, 1, 10, 0, tzinfo=UTC), "2019-11-01", "yellow_tripdata_2019-11.csv.gz"),
        (GREEN, datetime(2020, 2, 1, 9, 0, tzinfo=UTC), "2019-12-01", "green_tripdata_2019-12.csv.gz"),
        # The first partition.
        (GREEN, datetime(2019, 3, 1, 9, 0, tzinfo=UTC), "2019-01-01", "green_tripdata_2019-01.csv.gz"),
        # The last partition: the source's last month (the course's CSV backup ends at 2021-07).
        (YELLOW, datetime(2021, 9, 1, 10, 0, tzinfo=UTC), "2021-07-01", "yellow_tripdata_2021-07.csv.gz"),
        (GREEN, datetime(2021, 9, 1, 9, 0, tzinfo=UTC), "2021-07-01", "green_tripdata_2021-07.csv.gz"),
    ],
)
def test_a_tick_requests_exactly_the_month_two_months_back(defs, instance, spec, instant, partition, file):
    requests = evaluate(defs, spec, instant, instance)
    assert not isinstance(requests, str), requests
    assert len(requests) == 1
    (request,) = requests
    assert request.partition_key == partition
    assert {k: v for k, v in request.tags.items() if not k.startswith("dagster/")} == {
        "taxi": spec.name,
        "file": file,
    }
    assert request.tags["dagster/partition"] == partition
    assert request.run_key == f"{spec.name}:{partition[:7]}"


def test_ticks_before_the_first_partition_are_skipped(defs, instance):
    for instant in (datetime(2019, 1, 1, 9, tzinfo=UTC), datetime(2019, 2, 1, 9, tzinfo=UTC)):
        skipped = evaluate(defs, GREEN, instant, instance)
        assert (
            isinstance(skipped, str) and "before the first month of green in the course-csv source" in skipped
        )
        assert "(2019-01..2021-07)" in skipped


@pytest.mark.parametrize("spec", [YELLOW, GREEN])
@pytest.mark.parametrize(
    "instant",
    [
        datetime(2021, 10, 1, 10, 0, tzinfo=UTC),  # 2021-08: the first month after the source's
        datetime(2024, 7, 1, 10, 0, tzinfo=UTC),
        datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
    ],
)
def test_ticks_after_the_last_partition_request_nothing(defs, instance, spec, instant):
    """The course's CSV backup is frozen at 2021-07: later ticks are skipped with the reason (a
    request for a month that is no partition would fail the tick)."""
    skipped = evaluate(defs, spec, instant, instance)
    month = data_month(instant)
    assert skipped == (
        f"{spec.name} {month:%Y-%m} is after the last month of {spec.name} in the course-csv "
        "source (2019-01..2021-07): nothing to load"
    )


def test_no_tick_of_2026_requests_a_run(defs, instance):
    """Every tick of 2026 (the 1st of each month at the schedule's hour), both colours: skipped."""
    for spec in (YELLOW, GREEN):
        cron = schedule(defs, spec).cron_schedule
        assert isinstance(cron, str)
        hour = int(cron.split()[1])
        for month in range(1, 13):
            skipped = evaluate(defs, spec, datetime(2026, month, 1, hour, tzinfo=UTC), instance)
            assert isinstance(skipped, str) and "after the last month" in skipped, (spec.name, month)


def test_data_month_lags_two_months():
    assert data_month(datetime(2021, 3, 1, tzinfo=UTC)).isoformat() == "2021-01-01"
    assert data_month(datetime(2021, 1, 31, 23, 59, tzinfo=UTC)).isoformat() == "2020-11-01"
    assert data_month(datetime(2021, 2, 1, tzinfo=UTC)).isoformat() == "2020-12-01"


def test_the_tlc_schedules_are_a_safety_net_that_skips_months_already_loaded(tmp_path):
    """TLC source: on the 26th (month M-2 was due the day before), a month the sensor loaded is
    not loaded again; a month still missing is requested."""
    from taxi_platform.assets.trip_keys import final_key
    from taxi_platform.source_specs import TLC_PARQUET, source_datasets

    defs = build_definitions(Settings(home=tmp_path))
    yellow = source_datasets(TLC_PARQUET)["yellow"]
    assert schedule(defs, yellow).cron_schedule == "0 10 26 * *"
    instant = datetime(2024, 5, 26, 10, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        requests = evaluate(defs, yellow, instant, instance)
        assert not isinstance(requests, str), requests
        (request,) = requests
        assert request.partition_key == "2024-03-01"
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=final_key(yellow), partition="2024-03-01")
        )
        assert (
            evaluate(defs, yellow, instant, instance)
            == "yellow 2024-03 is loaded already (tlc_release_sensor)"
        )
