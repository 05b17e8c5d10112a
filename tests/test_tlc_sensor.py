"""tlc_release_sensor against the mirror's CloudFront imitation, with a clock the test moves: a
month published on the 20th of M+2 gives exactly one run per dataset on the next tick, an idle tick
says why it skipped, requests stay within the budget, failures back off in the cursor, and
re-uploads reload a month only when its bytes changed (runs executed as the daemon would)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from support.pg_env import Env

from taxi_platform.assets.trip_keys import final_key, raw_file_key, staging_key
from taxi_platform.automation.jobs import build_trip_job
from taxi_platform.automation.tlc_cursor import TlcCursor
from taxi_platform.automation.tlc_sensor import build_tlc_release_sensor
from taxi_platform.sample.parquet_generator import generate_parquet_month, write_tlc_tree
from taxi_platform.sample.tlc_mirror import TlcMirror, serve_tlc_mirror
from taxi_platform.settings import Settings
from taxi_platform.source_specs import TLC_PARQUET, source_datasets

PUBLISHED = [date(2023, 12, 1), date(2024, 1, 1), date(2024, 2, 1)]
MARCH = date(2024, 3, 1)
# 2024-03 is due by 2024-05-25; on the 20th the window is 2023-12..2024-03 (recent_months=3).
TICK = datetime(2024, 5, 20, 10, 0, tzinfo=UTC)
SPECS = {
    name: spec
    for name, spec in source_datasets(TLC_PARQUET, today=date(2024, 5, 20)).items()
    if name in ("yellow", "green")
}


def tlc_sensor(settings: Settings, jobs: list, clock) -> dg.SensorDefinition:
    return build_tlc_release_sensor(
        SPECS,
        jobs,
        base_url=settings.tlc_url,
        requests_per_tick=settings.tlc_sensor_requests,
        recent_months=settings.tlc_sensor_recent_months,
        interval_seconds=settings.release_sensor_interval_seconds,
        first_tick=settings.release_sensor_first_tick,
        clock=clock,
    )


class Harness:
    def __init__(
        self, mirror: TlcMirror, instance: dg.DagsterInstance, settings: Settings, **options
    ) -> None:
        self.now = TICK
        self.mirror = mirror
        self.instance = instance
        self.settings = replace(
            settings, source="tlc", tlc_url=mirror.url, tlc_sensor_recent_months=3, **options
        )
        self.jobs = {name: build_trip_job(spec) for name, spec in SPECS.items()}
        self.sensor = tlc_sensor(self.settings, list(self.jobs.values()), clock=lambda: self.now)
        self.cursor: str | None = None

    @property
    def repo(self):
        """What the sensor's run requests are checked against (jobs, partitions)."""
        from taxi_platform.assets.trips import build_trip_assets
        from taxi_platform.resources import build_resources

        assets = [
            a
            for spec in SPECS.values()
            for a in build_trip_assets(
                spec, warehouse_kind="postgres", lake_kind="file", min_in_month_share=0.95
            )
        ]
        return dg.Definitions(
            assets=assets,
            jobs=list(self.jobs.values()),
            sensors=[self.sensor],
            resources=build_resources(self.settings),
        ).get_repository_def()

    def tick(self, cursor: str | None = "current"):
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor if cursor == "current" else cursor,
            repository_def=self.repo,
        )
        before = len(self.mirror.requests)
        data = self.sensor.evaluate_tick(context)
        self.asked = len(self.mirror.requests) - before
        if data.cursor is not None:
            self.cursor = data.cursor
        return data

    @property
    def state(self) -> TlcCursor:
        return TlcCursor.load(self.cursor)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tlc"
    write_tlc_tree(root, SPECS.values(), PUBLISHED, rows=300, seed=3)
    return root


@pytest.fixture
def mirror(tree: Path):
    with serve_tlc_mirror(tree) as running:
        yield running


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def requested(data) -> list[tuple[str, str, str]]:
    return sorted((r.job_name, r.partition_key, r.tags["taxi/release_change"]) for r in data.run_requests)


def test_a_month_published_on_the_20th_gives_one_run_per_dataset_on_the_next_tick(
    mirror: TlcMirror, tree: Path, instance, tmp_path: Path
) -> None:
    h = Harness(mirror, instance, settings(tmp_path))
    first = h.tick()
    assert first.run_requests == []
    assert first.skip_message.startswith("first tick: recorded the files published and requested no runs")
    assert set(h.state.files) == {f"{d}/{m:%Y-%m}" for d in SPECS for m in PUBLISHED}

    h.now += timedelta(minutes=5)
    idle = h.tick()
    assert idle.run_requests == []
    assert idle.skip_message.startswith("no new or re-uploaded file: ")
    # The window (2023-12..2024-03): 6 files not modified, 2024-03 not published yet; the rest of
    # the budget went to older months, which this mirror does not hold.
    assert idle.skip_message == (
        "no new or re-uploaded file: 32 file(s) asked (6 not modified, 2 not published yet, 24 older not found)"
    )
    conditional = [r for r in mirror.requests[-h.asked :] if "If-None-Match" in r.headers]
    assert len(conditional) == 6 and all(r.method == "HEAD" for r in mirror.requests)

    write_tlc_tree(tree, SPECS.values(), [MARCH], rows=300, seed=4)  # the TLC publishes 2024-03
    before = h.cursor
    h.now += timedelta(minutes=5)
    data = h.tick()
    assert requested(data) == [
        ("green_tripdata_job", "2024-03-01", "new"),
        ("yellow_tripdata_job", "2024-03-01", "new"),
    ]
    keys = sorted(r.run_key for r in data.run_requests)
    assert keys[0].startswith(f'{mirror.url}/trip-data/green_tripdata_2024-03.parquet@"')
    assert all(r.tags["file"].endswith("_tripdata_2024-03.parquet") for r in data.run_requests)
    # A replayed tick (the same cursor) asks for the same runs: the same run keys.
    replayed = h.tick(cursor=before)
    assert sorted(r.run_key for r in replayed.run_requests) == keys
    h.now += timedelta(minutes=5)
    assert h.tick().run_requests == []


def test_requests_per_tick_stay_within_the_budget_and_older_months_go_round_robin(
    mirror: TlcMirror, instance, tmp_path: Path
) -> None:
    h = Harness(mirror, instance, settings(tmp_path), tlc_sensor_requests=10)
    h.tick()
    assert h.asked == 10  # the window (4 months x 2 datasets), then one older month of each
    seen_older = [dict(h.state.older)]
    for _ in range(3):
        h.now += timedelta(minutes=5)
        h.tick()
        assert h.asked <= 10
        seen_older.append(dict(h.state.older))
    # Each tick continues where the last one stopped: green from 2014-01, yellow from 2009-01.
    assert seen_older == [
        {"green": "2014-01", "yellow": "2009-01"},
        {"green": "2014-02", "yellow": "2009-02"},
        {"green": "2014-03", "yellow": "2009-03"},
        {"green": "2014-04", "yellow": "2009-04"},
    ]


def test_failures_back_off_in_the_cursor_and_never_burst(mirror: TlcMirror, instance, tmp_path: Path) -> None:
    h = Harness(mirror, instance, settings(tmp_path))
    h.tick()
    mirror.inject("/trip-data/yellow_tripdata_2023-12.parquet", 503)
    h.now += timedelta(minutes=5)
    data = h.tick()
    assert "yellow_tripdata_2023-12.parquet answered 503: backing off until" in data.skip_message
    assert h.state.failures == 1 and h.asked < 8  # the tick stopped asking at the failure
    state = h.state
    assert state.retry_at is not None
    retry_at = datetime.fromisoformat(state.retry_at)
    assert retry_at == h.now + timedelta(minutes=1)
    h.now += timedelta(seconds=30)
    waiting = h.tick()
    assert h.asked == 0 and "backing off after 1 failed tick(s)" in waiting.skip_message
    # CloudFront throttles with 403: for a file published before, that is a failure too; the
    # second in a row waits twice as long.
    mirror.inject("/trip-data/yellow_tripdata_2023-12.parquet", 403)
    h.now = retry_at
    h.tick()
    state = h.state
    assert state.failures == 2 and state.retry_at is not None
    assert datetime.fromisoformat(state.retry_at) == h.now + timedelta(minutes=2)
    h.now += timedelta(minutes=2)
    recovered = h.tick()
    assert recovered.skip_message.startswith("no new or re-uploaded file")
    assert h.state.failures == 0 and h.state.retry_at is None


def run(h: Harness, env: Env, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """What the daemon does with a run request: the job, the partition, the request's tags."""
    from taxi_platform.definitions import build_definitions

    defs = build_definitions(replace(env.settings, source="tlc", tlc_url=h.mirror.url))
    assert request.job_name is not None
    job = defs.resolve_job_def(request.job_name)
    return job.execute_in_process(
        instance=env.instance, partition_key=request.partition_key, tags=request.tags, raise_on_error=True
    )


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {
        e.step_materialization_data.materialization.asset_key.to_user_string()
        for e in result.get_asset_materialization_events()
    }


def test_reuploads_reload_a_month_only_when_its_bytes_changed(
    env: Env, tree: Path, mirror: TlcMirror
) -> None:
    h = Harness(mirror, env.instance, env.settings)
    h.settings = replace(h.settings, release_sensor_first_tick="backfill")
    h.sensor = tlc_sensor(h.settings, list(h.jobs.values()), clock=lambda: h.now)
    dbt = DbtAutomation(h, env)
    loaded = h.tick()  # backfill mode: the window's published months load on the first tick
    assert len(loaded.run_requests) == 6
    for request in loaded.run_requests:
        run(h, env, request)
    # The dbt models of the loaded months, then built as if by the daemon.
    assert dbt.requested() == {m: {"2023-12-01", "2024-01-01", "2024-02-01"} for m in dbt.yellow_green_models}
    dbt.built()
    yellow = SPECS["yellow"]
    counts = lambda: dict(env.query(f"SELECT filename, count(*) FROM {env.final(yellow)} GROUP BY 1"))  # noqa: E731
    before = counts()
    green_before = env.fingerprint(SPECS["green"])

    # The same bytes uploaded again in parts: another ETag and Last-Modified, the same content.
    path = "/trip-data/yellow_tripdata_2024-01.parquet"
    mirror.etags[path] = '"0123456789abcdef0123456789abcdef-2"'
    mirror.last_modified[path] = h.now
    h.now += timedelta(minutes=5)
    data = h.tick()
    assert requested(data) == [("yellow_tripdata_job", "2024-01-01", "republished")]
    result = run(h, env, data.run_requests[0])
    assert materialized(result) == set()  # neither staging nor final, nor a new lake file
    observations = [
        e.asset_observation_data.asset_observation
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    ]
    assert [(o.asset_key, o.partition, o.metadata["identical_reupload"].value) for o in observations] == [
        (raw_file_key(yellow), "2024-01-01", True)
    ]
    assert counts() == before
    assert dbt.requested() == {}  # no dbt rebuild

    # Changed bytes: that month reloads, the others stay as they are.
    changed = generate_parquet_month(
        yellow, date(2024, 1, 1), tree / "trip-data" / yellow.file_name(date(2024, 1, 1)), rows=450, seed=9
    )
    del mirror.etags[path]
    mirror.last_modified[path] = h.now + timedelta(minutes=1)
    h.now += timedelta(minutes=5)
    data = h.tick()
    assert requested(data) == [("yellow_tripdata_job", "2024-01-01", "republished")]
    result = run(h, env, data.run_requests[0])
    assert {final_key(yellow).to_user_string(), staging_key(yellow).to_user_string()} <= materialized(result)
    after = counts()
    assert (
        after["yellow_tripdata_2024-01.parquet"]
        == changed.distinct_rows
        != before["yellow_tripdata_2024-01.parquet"]
    )
    assert {k: v for k, v in after.items() if "2024-01" not in k} == {
        k: v for k, v in before.items() if "2024-01" not in k
    }
    assert env.fingerprint(SPECS["green"]) == green_before
    # The dbt automation rebuilds exactly that month of the models yellow feeds (not green's view).
    assert dbt.requested() == {
        m: {"2024-01-01"} for m in dbt.yellow_green_models if m != "dbt/stg_green_tripdata"
    }


class DbtAutomation:
    """The dbt automation sensor's evaluation (the declarative conditions of the monthly models)
    over the test's instance; `built()` records what it requested as materialized."""

    def __init__(self, h: Harness, env: Env) -> None:
        from taxi_platform.definitions import build_definitions

        self.defs = build_definitions(replace(env.settings, source="tlc", tlc_url=h.mirror.url))
        self.graph = self.defs.resolve_asset_graph()
        self.instance = env.instance
        monthly = [
            k
            for k in self.graph.get_all_asset_keys()
            if k.path[0] == "dbt" and self.graph.get(k).partitions_def
        ]
        self.selection = dg.AssetSelection.assets(*monthly)
        self.yellow_green_models = {
            k.to_user_string()
            for k in monthly
            if "fhv" not in k.path[-1] and k.path[-1] != "dm_monthly_zone_trips"
        }
        # The sensor's first evaluation, before anything happened; then the reference models
        # (zones, seeds), which the monthly ones depend on, are built.
        self.cursor = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, asset_selection=self.selection
        ).cursor
        for key in self.graph.get_all_asset_keys():
            if self.graph.get(key).partitions_def is None and self.graph.get(key).is_materializable:
                self.report(key)
        self.last: dict = {}

    def report(self, key: dg.AssetKey, partition: str | None = None) -> None:
        self.instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))

    def requested(self) -> dict[str, set[str]]:
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, asset_selection=self.selection, cursor=self.cursor
        )
        self.cursor = result.cursor
        self.last = {
            k.to_user_string(): set(result.get_requested_partitions(k))
            for k in self.graph.get_all_asset_keys()
            if k.path[0] == "dbt" and self.graph.get(k).partitions_def and result.get_requested_partitions(k)
        }
        return self.last

    def built(self) -> None:
        for key, partitions in self.last.items():
            for partition in partitions:
                self.report(dg.AssetKey.from_user_string(key), partition)
