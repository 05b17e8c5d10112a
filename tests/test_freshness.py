"""Freshness of the TLC's datasets: month M due by the 25th of M+2. The check's rule, and the
daemon's sensor with a clock the test moves: a month still missing on the 26th shows as overdue
(a failed check evaluation on the final table) and is reported to the notifier once; loaded, the
check passes again."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg

from taxi_platform.assets.trip_keys import final_key
from taxi_platform.automation.freshness import (
    CHECK_NAME,
    build_freshness_sensor,
    due_date,
    freshness_result,
)
from taxi_platform.automation.notify import JsonLinesNotifier
from taxi_platform.source_specs import TLC_PARQUET, source_datasets

SPECS = {
    k: v for k, v in source_datasets(TLC_PARQUET, today=date(2024, 5, 20)).items() if k in ("yellow", "green")
}


def loaded(instance: dg.DagsterInstance, name: str, *months: str) -> None:
    for month in months:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=final_key(SPECS[name]), partition=f"{month}-01")
        )


def test_due_dates_follow_the_publication_rule():
    assert due_date(date(2024, 3, 1)) == date(2024, 5, 25)
    assert due_date(date(2023, 11, 1)) == date(2024, 1, 25)


def test_the_rule_names_the_month_the_day_and_the_latest_loaded():
    with dg.instance_for_test() as instance:
        loaded(instance, "yellow", "2024-01", "2024-02")
        on_time = freshness_result(SPECS["yellow"], instance, date(2024, 5, 24))
        assert on_time.passed and on_time.metadata["due_month"].value == "2024-02"
        late = freshness_result(SPECS["yellow"], instance, date(2024, 5, 26))
        assert not late.passed and late.severity == dg.AssetCheckSeverity.WARN
        assert late.description == (
            "yellow 2024-03 is overdue: due by 2024-05-25, not loaded (latest loaded: 2024-02)"
        )
        never = freshness_result(SPECS["green"], instance, date(2024, 5, 26))
        assert never.description is not None and "(latest loaded: none)" in never.description


def test_an_overdue_month_shows_as_a_failed_check_and_is_reported_once(tmp_path: Path):
    now = {"t": datetime(2024, 5, 24, 12, tzinfo=UTC)}
    reports = tmp_path / "failures.jsonl"
    sensor = build_freshness_sensor(SPECS, JsonLinesNotifier(reports), clock=lambda: now["t"])
    with dg.instance_for_test() as instance:
        loaded(instance, "yellow", "2024-01", "2024-02")
        loaded(instance, "green", "2024-02")
        cursor: str | None = None

        def tick() -> dict[tuple[str, str], tuple[bool, str | None]]:
            nonlocal cursor
            data = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor))
            cursor = data.cursor
            results = {}
            for e in data.asset_events:
                assert isinstance(e, dg.AssetCheckEvaluation)
                results[(e.asset_key.path[-1], e.check_name)] = (e.passed, e.description)
            return results

        first = tick()  # on time: both pass, recorded once
        assert first == {
            ("yellow_tripdata", CHECK_NAME): (True, "yellow 2024-02 is loaded (due by 2024-04-25)"),
            ("green_tripdata", CHECK_NAME): (True, "green 2024-02 is loaded (due by 2024-04-25)"),
        }
        assert tick() == {} and not reports.exists()

        now["t"] = datetime(2024, 5, 26, 0, 30, tzinfo=UTC)  # 2024-03 was due yesterday
        loaded(instance, "green", "2024-03")
        overdue = tick()
        assert overdue == {
            ("yellow_tripdata", CHECK_NAME): (
                False,
                "yellow 2024-03 is overdue: due by 2024-05-25, not loaded (latest loaded: 2024-02)",
            ),
            ("green_tripdata", CHECK_NAME): (True, "green 2024-03 is loaded (due by 2024-05-25)"),
        }
        assert tick() == {}  # an hour later: nothing new, nothing reported again
        (report,) = [json.loads(line) for line in reports.read_text().splitlines()]
        assert (report["kind"], report["dataset"], report["partition"], report["file"]) == (
            "overdue",
            "yellow",
            "2024-03-01",
            "yellow_tripdata_2024-03.parquet",
        )

        loaded(instance, "yellow", "2024-03")  # it arrives: the check passes again
        assert tick() == {
            ("yellow_tripdata", CHECK_NAME): (True, "yellow 2024-03 is loaded (due by 2024-05-25)")
        }
        assert len(reports.read_text().splitlines()) == 1
