"""tlc_release_sensor in a running instance: turned on (as the UI's toggle does) against the TLC
mirror's CloudFront imitation, its first tick records what is published; the TLC then publishes a
month, and the daemon loads it with no manual action. The browser finds the month in the UI."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
from support.e2e_stack import ARTIFACTS, LOCATION, Stack, start_stack
from support.run_results import query

from taxi_platform.assets.policies import RELEASE_CHANGE_TAG
from taxi_platform.assets.trip_keys import final_key
from taxi_platform.automation.tlc_plan import month_back
from taxi_platform.automation.tlc_sensor import TLC_SENSOR_NAME
from taxi_platform.partitions import next_month
from taxi_platform.sample.parquet_generator import write_tlc_tree
from taxi_platform.sample.tlc_mirror import serve_tlc_mirror
from taxi_platform.source_specs import TLC_PARQUET, expected_published_month, source_datasets

from .test_ui_browser import dismiss_first_visit_popup, page  # noqa: F401 - the browser fixture

pytestmark = pytest.mark.slow

YELLOW = source_datasets(TLC_PARQUET)["yellow"]
DUE = expected_published_month(date.today())  # the month the TLC has published by today
PUBLISHED = [month_back(DUE, 1), DUE]
NEW = next_month(DUE)  # published during the test
SENSOR = {
    "repositoryLocationName": LOCATION,
    "repositoryName": "__repository__",
    "sensorName": TLC_SENSOR_NAME,
}
TIMEOUT = 300


@pytest.fixture(scope="module")
def tlc_stack(session_root: Path, pg_url: str):
    tree = session_root / "tlc_e2e_tree"
    write_tlc_tree(tree, [YELLOW], PUBLISHED, rows=400, seed=5, listing_mtimes=False)
    with serve_tlc_mirror(tree) as mirror:

        def tlc_source(_mirror_dir: Path) -> tuple[dict[str, str], list]:
            return {
                "TAXI_SOURCE": "tlc",
                "TAXI_TLC_URL": mirror.url,
                "TAXI_RELEASE_SENSOR_INTERVAL": "30",
                "TAXI_TLC_SENSOR_RECENT_MONTHS": "2",
                "TAXI_TLC_SENSOR_REQUESTS": "12",
            }, []

        with start_stack(session_root, pg_url, tlc_source) as stack:
            yield stack, tree


def sensor_ticks(stack: Stack) -> list[dict]:
    data = stack.graphql(
        """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { __typename
            ... on Sensor { sensorState { status ticks(limit: 10) { status skipReason runIds } } } } }""",
        {"s": SENSOR},
    )
    return data["sensorOrError"]["sensorState"]["ticks"]


def wait_for(check, what: str, stack: Stack, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.assert_alive()
        found = check()
        if found:
            return found
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}\n{stack.log_tail()}")


def test_a_month_published_while_the_sensor_runs_loads_with_no_manual_action(tlc_stack, page):  # noqa: F811
    stack, tree = tlc_stack
    started = stack.graphql(
        """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename
            ... on Sensor { sensorState { status } } ... on PythonError { message } } }""",
        {"s": SENSOR},
    )["startSensor"]
    assert started["__typename"] == "Sensor" and started["sensorState"]["status"] == "RUNNING", started
    first = wait_for(lambda: sensor_ticks(stack), "the sensor's first tick", stack)
    assert first[-1]["status"] == "SKIPPED" and first[-1]["skipReason"].startswith("first tick: recorded")

    (generated,) = write_tlc_tree(tree, [YELLOW], [NEW], rows=600, seed=6, listing_mtimes=False)
    key = f"{NEW:%Y-%m-01}"

    def loaded_and_finished():
        # The final table's materialization lands before the run's own end event: wait for both.
        with stack.instance() as instance:
            if key not in instance.get_materialized_partitions(final_key(YELLOW)):
                return None
            runs = instance.get_runs(filters=dg.RunsFilter(tags={RELEASE_CHANGE_TAG: "new"}))
        return runs if runs and all(r.is_finished for r in runs) else None

    runs = wait_for(loaded_and_finished, f"yellow {NEW:%Y-%m} loaded by the daemon", stack)
    (rows,) = query(
        stack.warehouse_url,
        f'SELECT count(*) FROM "{stack.warehouse_schema}".yellow_tripdata WHERE filename = %s',
        (YELLOW.file_name(NEW),),
    )[0]
    assert rows == generated.distinct_rows
    assert [(r.tags["dagster/partition"], r.status) for r in runs] == [(key, dg.DagsterRunStatus.SUCCESS)]
    assert not any(t["runIds"] for t in sensor_ticks(stack) if t["status"] == "SKIPPED")
    # The months published before the sensor started were recorded, not loaded (history: backfills).
    with stack.instance() as instance:
        assert instance.get_materialized_partitions(final_key(YELLOW)) == {key}

    page.goto(f"{stack.web_url}/assets/warehouse/yellow_tripdata?view=partitions")
    dismiss_first_visit_popup(page)
    page.get_by_text("Materialized (1)").first.wait_for()
    page.get_by_text(key, exact=True).first.wait_for()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-tlc-sensor-month.png"))
