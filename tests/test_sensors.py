"""The release sensor against a GitHub-compatible releases API on 127.0.0.1 (the sample mirror's,
behind a fault-injecting route), the failure notifier, and the dbt automation condition."""

from __future__ import annotations

import gzip
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import dagster as dg
import pytest
import requests

from taxi_platform.assets.trip_keys import final_key, raw_file_key, staging_key
from taxi_platform.assets.trips import build_trip_assets
from taxi_platform.automation import release_sensor as release_sensor_module
from taxi_platform.automation.jobs import build_trip_job
from taxi_platform.automation.notify import (
    FailureSummary,
    JsonLinesNotifier,
    LogNotifier,
    Notifiers,
    build_failure_sensor,
)
from taxi_platform.automation.release_cursor import ReleaseCursor
from taxi_platform.automation.release_sensor import build_release_sensor
from taxi_platform.datasets import DATASETS, GREEN, YELLOW
from taxi_platform.resources import build_resources
from taxi_platform.sample.mirror import MirrorServer
from taxi_platform.sample.releases_server import register_releases_api
from taxi_platform.settings import Settings, SettingsError
from taxi_platform.source.github_releases import MAX_PAGE_BYTES
from taxi_platform.source.release_listing import PageState

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)  # file mtimes
NOW = datetime(2024, 6, 15, 8, 0, tzinfo=UTC)  # the sensor's clock


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


Fault = tuple[int, dict[str, str], bytes] | Callable[..., None]


class FakeGitHub:
    """The mirror's releases API, with every request recorded and scripted faults answered first:
    (status, headers, body), or a function writing a hostile answer by hand."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.server = MirrorServer(root)
        self.faults: list[Fault] = []
        self.log: list[dict] = []
        self.stopping = threading.Event()  # ends the slow answers of hostile faults
        self.server.add_route(r"/api/.*", self._handle)  # ahead of the real API routes
        register_releases_api(self.server, "/api")

    def _handle(self, request, match) -> None:
        entry = {
            "path": request.path,
            "if_none_match": request.headers.get("If-None-Match"),
            "authorization": request.headers.get("Authorization"),
        }
        self.log.append(entry)
        if self.faults:
            fault = self.faults.pop(0)
            if callable(fault):
                fault(request)
                request.close_connection = True
                return
            status, headers, body = fault
            entry["status"] = status
            request.send_body(body, "application/json", status, headers)
            return
        for route in request.server.mirror.routes:
            if route.handler == self._handle:
                continue
            m = route.pattern.fullmatch(request.url_path)
            if m and request.command in route.methods:
                # Record what the real API answers (304 or 200), before the client sees it.
                original = request.send_response

                def send_response(code, message=None):
                    entry["status"] = int(code)
                    original(code, message)

                request.send_response = send_response
                try:
                    route.handler(request, m)
                finally:  # the handler object serves the connection's next request too
                    del request.send_response
                return

    def publish(self, tag: str, name: str, data: bytes, when: datetime = T0) -> Path:
        path = self.root / tag / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (when.timestamp(), when.timestamp()))
        # A release's creation time is its oldest file: keep the release order stable.
        return path

    @property
    def api_url(self) -> str:
        return self.server.base_url + "/api"

    def calls(self) -> list[dict]:
        taken, self.log = self.log, []
        return taken


@pytest.fixture
def github(tmp_path: Path) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(tmp_path / "mirror")
    fake.root.mkdir()
    # Three releases, created at different times: yellow newest, then green, then misc.
    fake.publish("misc", "taxi_zone_lookup.csv", b"LocationID\n", T0 - timedelta(days=3))
    for i, m in enumerate((1, 2)):
        fake.publish(
            "green", f"green_tripdata_2019-0{m}.csv.gz", b"g" * (100 + m), T0 - timedelta(days=2, hours=-i)
        )
    for i, m in enumerate((1, 2, 3)):
        fake.publish(
            "yellow", f"yellow_tripdata_2019-0{m}.csv.gz", b"y" * (200 + m), T0 - timedelta(days=1, hours=-i)
        )
    with fake.server:
        try:
            yield fake
        finally:
            fake.stopping.set()


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Harness:
    """Ticks of the release sensor as the daemon runs them (evaluate_tick), carrying the cursor."""

    def __init__(
        self,
        github: FakeGitHub,
        instance: dg.DagsterInstance,
        *,
        first_tick="baseline",
        max_pages=3,
        per_page=100,
        token=None,
    ) -> None:
        self.clock = Clock(NOW)
        settings = Settings(
            source="course",
            releases_api_url=github.api_url,
            release_sensor_first_tick=first_tick,
            releases_api_max_pages=max_pages,
            github_token=token,
        )
        jobs = [build_trip_job(spec) for spec in DATASETS.values()]
        self.sensor = build_release_sensor(
            DATASETS,
            jobs,
            api_url=settings.releases_api_url,
            token=settings.github_token,
            max_pages=settings.releases_api_max_pages,
            interval_seconds=settings.release_sensor_interval_seconds,
            first_tick=settings.release_sensor_first_tick,
            clock=self.clock,
            per_page=per_page,
        )
        assets = [
            a
            for spec in DATASETS.values()
            for a in build_trip_assets(
                spec, warehouse_kind="postgres", lake_kind="file", min_in_month_share=0.95
            )
        ]
        self.repo = dg.Definitions(
            assets=assets, jobs=jobs, sensors=[self.sensor], resources=build_resources(settings)
        ).get_repository_def()
        self.instance = instance
        self.cursor: str | None = None

    def tick(self):
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, repository_def=self.repo
        )
        data = self.sensor.evaluate_tick(context)
        if data.cursor is not None:
            self.cursor = data.cursor
        return data

    @property
    def state(self) -> ReleaseCursor:
        return ReleaseCursor.load(self.cursor)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def version(github: FakeGitHub, tag: str, name: str) -> str:
    stat = (github.root / tag / name).stat()
    return f"{iso(datetime.fromtimestamp(int(stat.st_mtime), tz=UTC))}|{stat.st_size}"


def summary(data) -> list[tuple[str, str, str]]:
    return [(r.job_name, r.partition_key, r.run_key) for r in data.run_requests]


def test_first_tick_records_a_baseline_and_requests_nothing(github: FakeGitHub, instance):
    h = Harness(github, instance)
    data = h.tick()
    assert data.run_requests == []
    assert "first tick: recorded 5 release file(s)" in data.skip_message
    state = h.state
    assert state.baselined and state.retry_at is None
    assert state.files == {
        f"{tag}/{name}": version(github, tag, name)
        for tag, name in [
            ("yellow", "yellow_tripdata_2019-01.csv.gz"),
            ("yellow", "yellow_tripdata_2019-02.csv.gz"),
            ("yellow", "yellow_tripdata_2019-03.csv.gz"),
            ("green", "green_tripdata_2019-01.csv.gz"),
            ("green", "green_tripdata_2019-02.csv.gz"),
        ]
    }
    assert len(state.pages) == 1 and state.pages[0].etag and state.pages[0].next_url is None
    assert [c["status"] for c in github.calls()] == [200]


def test_first_tick_in_backfill_mode_requests_every_published_month(github: FakeGitHub, instance):
    h = Harness(github, instance, first_tick="backfill")
    data = h.tick()
    assert summary(data) == [
        (
            "green_tripdata_job",
            "2019-01-01",
            f"green/green_tripdata_2019-01.csv.gz@{version(github, 'green', 'green_tripdata_2019-01.csv.gz')}",
        ),
        (
            "green_tripdata_job",
            "2019-02-01",
            f"green/green_tripdata_2019-02.csv.gz@{version(github, 'green', 'green_tripdata_2019-02.csv.gz')}",
        ),
        (
            "yellow_tripdata_job",
            "2019-01-01",
            f"yellow/yellow_tripdata_2019-01.csv.gz@{version(github, 'yellow', 'yellow_tripdata_2019-01.csv.gz')}",
        ),
        (
            "yellow_tripdata_job",
            "2019-02-01",
            f"yellow/yellow_tripdata_2019-02.csv.gz@{version(github, 'yellow', 'yellow_tripdata_2019-02.csv.gz')}",
        ),
        (
            "yellow_tripdata_job",
            "2019-03-01",
            f"yellow/yellow_tripdata_2019-03.csv.gz@{version(github, 'yellow', 'yellow_tripdata_2019-03.csv.gz')}",
        ),
    ]
    first = data.run_requests[0]
    assert first.tags["taxi"] == "green" and first.tags["file"] == "green_tripdata_2019-01.csv.gz"
    assert first.tags["taxi/release_change"] == "new"
    assert len(h.state.files) == 5
    # The next tick has nothing to do.
    again = h.tick()
    assert again.run_requests == [] and "304" in again.skip_message


def test_unchanged_releases_answer_304_and_change_nothing(github: FakeGitHub, instance):
    h = Harness(github, instance)
    h.tick()
    cursor = h.cursor
    etag = h.state.pages[0].etag
    github.calls()
    data = h.tick()
    assert data.run_requests == []
    assert data.skip_message == "no change: the releases API answered 304 Not Modified for all 1 page(s)"
    assert h.cursor == cursor
    (call,) = github.calls()
    assert call["if_none_match"] == etag and call["status"] == 304


def test_a_new_month_requests_exactly_that_partition(github: FakeGitHub, instance):
    h = Harness(github, instance)
    h.tick()
    github.publish("yellow", "yellow_tripdata_2019-04.csv.gz", b"y" * 321, T0 + timedelta(days=5))
    data = h.tick()
    key = f"yellow/yellow_tripdata_2019-04.csv.gz@{iso(T0 + timedelta(days=5))}|321"
    assert summary(data) == [("yellow_tripdata_job", "2019-04-01", key)]
    (request,) = data.run_requests
    assert {
        k: request.tags[k] for k in ("taxi", "file", "taxi/release_change", "taxi/release_updated_at")
    } == {
        "taxi": "yellow",
        "file": "yellow_tripdata_2019-04.csv.gz",
        "taxi/release_change": "new",
        "taxi/release_updated_at": iso(T0 + timedelta(days=5)),
    }
    assert h.state.files["yellow/yellow_tripdata_2019-04.csv.gz"] == f"{iso(T0 + timedelta(days=5))}|321"
    assert len(h.state.files) == 6
    # Replaying the same tick (cursor lost) gives the same run key: the instance runs it once.
    assert h.tick().run_requests == []


def test_a_republished_month_is_requested_again(github: FakeGitHub, instance):
    h = Harness(github, instance)
    h.tick()
    # Same name, same size, new upload time ...
    github.publish("green", "green_tripdata_2019-02.csv.gz", b"G" * 102, T0 + timedelta(days=7))
    data = h.tick()
    assert summary(data) == [
        (
            "green_tripdata_job",
            "2019-02-01",
            f"green/green_tripdata_2019-02.csv.gz@{iso(T0 + timedelta(days=7))}|102",
        )
    ]
    assert data.run_requests[0].tags["taxi/release_change"] == "republished"
    # ... and the same upload time with another size.
    github.publish("green", "green_tripdata_2019-02.csv.gz", b"G" * 150, T0 + timedelta(days=7))
    data = h.tick()
    assert summary(data) == [
        (
            "green_tripdata_job",
            "2019-02-01",
            f"green/green_tripdata_2019-02.csv.gz@{iso(T0 + timedelta(days=7))}|150",
        )
    ]
    assert h.state.files["green/green_tripdata_2019-02.csv.gz"] == f"{iso(T0 + timedelta(days=7))}|150"


def test_unrelated_assets_and_releases_are_ignored(github: FakeGitHub, instance):
    h = Harness(github, instance)
    h.tick()
    before = dict(h.state.files)
    github.publish("yellow", "README.md", b"notes", T0 + timedelta(days=1))
    github.publish("yellow", "yellow_tripdata_2019-05.parquet", b"pq", T0 + timedelta(days=1))
    github.publish("yellow", "green_tripdata_2019-05.csv.gz", b"wrong release", T0 + timedelta(days=1))
    github.publish("fhv", "fhv_tripdata_2019-01.csv.gz", b"fhv", T0 + timedelta(days=1))  # no such dataset
    github.publish("misc", "taxi_zone_lookup.csv", b"LocationID,Borough\n", T0 + timedelta(days=1))
    data = h.tick()
    assert data.run_requests == []
    assert data.skip_message.startswith("no new or re-published release files")
    assert "file(s) outside the platform's datasets/partitions" in data.skip_message
    assert h.state.files == before


COURSE_RANGE = "yellow in the course-csv source (2019-01..2021-07)"


def test_months_outside_the_partitions_are_ignored_with_the_reason(github: FakeGitHub, instance, capfd):
    h = Harness(github, instance)
    h.tick()
    before = dict(h.state.files)
    for name in (
        "yellow_tripdata_2018-12.csv.gz",  # before the source's first month
        "yellow_tripdata_2021-08.csv.gz",  # after its last: the course's backup ends at 2021-07
        "yellow_tripdata_2099-01.csv.gz",  # far future
        "yellow_tripdata_2019-13.csv.gz",
    ):  # not a month
        github.publish("yellow", name, b"x", T0 + timedelta(days=2))
    capfd.readouterr()
    data = h.tick()
    assert data.run_requests == [] and h.state.files == before and h.state.pending == {}
    # 5: the four files and the zone lookup of the changed page.
    assert data.skip_message == (
        "no new or re-published release files (1 changed page(s), 5 file(s) outside the platform's "
        "datasets/partitions); not requested: "
        f"yellow_tripdata_2018-12.csv.gz: 2018-12 is before the first month of {COURSE_RANGE}; "
        f"yellow_tripdata_2021-08.csv.gz: 2021-08 is after the last month of {COURSE_RANGE}; "
        f"yellow_tripdata_2099-01.csv.gz: 2099-01 is after the last month of {COURSE_RANGE}"
    )
    # The tick's log says it too (context.log's console handler writes to stderr).
    logged = [line for line in capfd.readouterr().err.splitlines() if "never requested" in line]
    assert len(logged) == 1 and " - INFO - " in logged[0]
    assert f"yellow_tripdata_2021-08.csv.gz: 2021-08 is after the last month of {COURSE_RANGE}" in logged[0]
    # Not even once the months are over: they never become partitions.
    for now in (datetime(2021, 9, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)):
        h.clock.now = now
        data = h.tick()
        assert data.run_requests == [] and h.state.pending == {} and h.state.files == before


def test_a_file_for_the_month_after_the_last_never_fails_a_tick(github: FakeGitHub, instance):
    """In backfill mode too: the in-range files are requested, 2021-08 is left out with its reason."""
    github.publish("green", "green_tripdata_2021-08.csv.gz", b"g" * 50, T0)
    github.publish("green", "green_tripdata_2021-07.csv.gz", b"g" * 70, T0)
    h = Harness(github, instance, first_tick="backfill")
    h.clock.now = datetime(2026, 12, 2, tzinfo=UTC)
    data = h.tick()
    requested = [(r.job_name, r.partition_key) for r in data.run_requests]
    assert ("green_tripdata_job", "2021-07-01") in requested and len(requested) == 6
    assert all(r.partition_key <= "2021-07-01" for r in data.run_requests)
    assert "green/green_tripdata_2021-08.csv.gz" not in h.state.files


def test_a_month_published_before_it_ends_is_requested_once_it_is_a_partition(github: FakeGitHub, instance):
    """The source's last month, published early (the sensor's clock in 2021-07): kept pending, and
    requested on the first tick after the month ends, with no other HTTP call."""
    h = Harness(github, instance)
    h.clock.now = datetime(2021, 7, 15, 8, 0, tzinfo=UTC)
    h.tick()
    github.publish("yellow", "yellow_tripdata_2021-07.csv.gz", b"x", T0 + timedelta(days=2))
    data = h.tick()
    assert data.run_requests == [] and set(h.state.pending) == {"yellow/yellow_tripdata_2021-07.csv.gz"}
    github.calls()
    h.clock.now = datetime(2021, 8, 1, 0, 0, tzinfo=UTC)
    data = h.tick()
    assert [c["status"] for c in github.calls()] == [304]
    assert h.state.pending == {}
    assert summary(data) == [
        (
            "yellow_tripdata_job",
            "2021-07-01",
            f"yellow/yellow_tripdata_2021-07.csv.gz@{iso(T0 + timedelta(days=2))}|1",
        )
    ]


def test_a_pending_file_of_a_month_that_is_no_partition_is_dropped(github: FakeGitHub, instance):
    """A cursor of an older version (partitions up to the current month) kept a 2024-06 file as
    pending: it is dropped, named in the skip reason, never requested."""
    h = Harness(github, instance)
    h.tick()
    state = h.state
    state.pending = {"yellow/yellow_tripdata_2024-06.csv.gz": f"{iso(T0)}|1"}
    h.cursor = state.dump()
    h.clock.now = datetime(2024, 7, 1, tzinfo=UTC)
    data = h.tick()
    assert data.run_requests == [] and h.state.pending == {}
    assert data.skip_message == (
        "no change: the releases API answered 304 Not Modified for all 1 page(s); "
        "not requested: yellow_tripdata_2024-06.csv.gz: 2024-06 is after the "
        f"last month of {COURSE_RANGE}"
    )


def test_api_errors_skip_the_tick_and_keep_the_cursor(github: FakeGitHub, instance):
    h = Harness(github, instance)
    h.tick()
    cursor = h.cursor
    github.publish("yellow", "yellow_tripdata_2019-04.csv.gz", b"y" * 10, T0 + timedelta(days=5))
    github.faults = [
        (500, {}, b'{"message": "Server Error"}'),
        (200, {}, b"<html>not json</html>"),
        (200, {}, b'{"message": "an object, not a list"}'),
        (401, {}, b'{"message": "Bad credentials"}'),
    ]
    messages = []
    for _ in range(4):
        data = h.tick()
        assert data.run_requests == [] and h.cursor == cursor
        messages.append(data.skip_message)
    assert "answered HTTP 500: Server Error; the next tick tries again" in messages[0]
    assert "unexpected body" in messages[1] and "unexpected body" in messages[2]
    assert "answered HTTP 401: Bad credentials" in messages[3]
    # Nothing was lost: the next good tick requests the new month.
    assert [r.partition_key for r in h.tick().run_requests] == ["2019-04-01"]


def test_connection_errors_skip_the_tick(github: FakeGitHub, instance):
    h = Harness(github, instance)
    h.tick()
    cursor = h.cursor
    github.server.stop()
    data = h.tick()
    assert data.run_requests == [] and h.cursor == cursor
    assert "ConnectionError" in data.skip_message


def test_rate_limits_skip_until_the_reset_without_calling(github: FakeGitHub, instance):
    h = Harness(github, instance)
    h.tick()
    github.calls()
    reset = int((NOW + timedelta(minutes=20)).timestamp())
    github.faults = [
        (
            403,
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
            b'{"message": "API rate limit exceeded"}',
        )
    ]
    data = h.tick()
    assert data.run_requests == []
    assert "rate limit reached (HTTP 403, x-ratelimit-remaining=0)" in data.skip_message
    assert "TAXI_GITHUB_TOKEN" in data.skip_message
    assert h.state.retry_at == datetime.fromtimestamp(reset, tz=UTC).isoformat()
    assert len(github.calls()) == 1
    # Before the reset: skipped without any HTTP call.
    h.clock.now = NOW + timedelta(minutes=10)
    data = h.tick()
    assert data.run_requests == [] and "not asking before" in data.skip_message
    assert github.calls() == []
    # After it: asks again (conditionally: unchanged -> 304) and clears the reset time.
    h.clock.now = NOW + timedelta(minutes=21)
    data = h.tick()
    assert "304" in data.skip_message and h.state.retry_at is None
    # A secondary limit: 429 with Retry-After.
    github.faults = [(429, {"retry-after": "90"}, b'{"message": "slow down"}')]
    data = h.tick()
    assert "HTTP 429" in data.skip_message
    assert h.state.retry_at == (h.clock.now + timedelta(seconds=90)).isoformat()


def test_a_rate_limited_first_tick_still_baselines_later(github: FakeGitHub, instance):
    h = Harness(github, instance)
    github.faults = [(429, {"retry-after": "1"}, b"{}")]
    assert "rate limit" in h.tick().skip_message
    h.clock.now = NOW + timedelta(seconds=5)
    data = h.tick()
    assert data.run_requests == [] and data.skip_message.startswith("first tick: recorded 5")


def test_pagination_follows_link_headers_with_a_bounded_number_of_calls(github: FakeGitHub, instance):
    h = Harness(github, instance, per_page=1, max_pages=3)
    h.tick()
    calls = github.calls()
    assert [c["path"] for c in calls] == [
        "/api/releases?per_page=1",
        "/api/releases?per_page=1&page=2",
        "/api/releases?per_page=1&page=3",
    ]
    assert len(h.state.pages) == 3 and h.state.pages[-1].next_url is None
    assert len(h.state.files) == 5
    # A re-published file in the oldest release with a file of ours (green, page 2): pages 1 and 3
    # answer 304, page 2 answers 200 and carries the change.
    github.publish("green", "green_tripdata_2019-01.csv.gz", b"g" * 999, T0 - timedelta(days=2))
    data = h.tick()
    assert [(r.job_name, r.partition_key) for r in data.run_requests] == [
        ("green_tripdata_job", "2019-01-01")
    ]
    assert [c["status"] for c in github.calls()] == [304, 200, 304]
    # Fewer pages allowed than there are: at most that many calls, a warning, and what was read.
    h2 = Harness(github, instance, per_page=1, max_pages=2)
    h2.tick()
    assert len(github.calls()) == 2
    assert {k.split("/")[0] for k in h2.state.files} == {"yellow", "green"}


def test_the_token_is_sent_but_never_stored(github: FakeGitHub, instance):
    token = "ghp_secret-token-value"
    h = Harness(github, instance, token=token)
    data = h.tick()
    assert [c["authorization"] for c in github.calls()] == [f"Bearer {token}"]
    assert token not in (h.cursor or "") and token not in data.skip_message
    assert token not in repr(Settings(github_token=token))


def test_settings_are_validated(monkeypatch):
    monkeypatch.setenv("TAXI_RELEASES_API_URL", "ftp://example.org")
    with pytest.raises(SettingsError, match="TAXI_RELEASES_API_URL"):
        Settings.from_env()
    monkeypatch.setenv("TAXI_RELEASES_API_URL", "http://127.0.0.1:1/api/")
    monkeypatch.setenv("TAXI_RELEASE_SENSOR_FIRST_TICK", "everything")
    with pytest.raises(SettingsError, match="TAXI_RELEASE_SENSOR_FIRST_TICK"):
        Settings.from_env()
    monkeypatch.setenv("TAXI_RELEASE_SENSOR_FIRST_TICK", "BACKFILL")
    monkeypatch.setenv("TAXI_GITHUB_TOKEN", "")
    monkeypatch.setenv("GITHUB_TOKEN", "from-github-env")
    s = Settings.from_env()
    assert (s.releases_api_url, s.release_sensor_first_tick, s.github_token) == (
        "http://127.0.0.1:1/api",
        "backfill",
        "from-github-env",
    )
    monkeypatch.setenv("TAXI_RELEASES_API_MAX_PAGES", "50")
    with pytest.raises(SettingsError, match="TAXI_RELEASES_API_MAX_PAGES"):
        Settings.from_env()


def test_the_sample_api_looks_like_github(github: FakeGitHub):
    r = requests.get(github.api_url + "/releases?per_page=2", timeout=10)
    assert r.status_code == 200 and r.headers["ETag"]
    assert [x["tag_name"] for x in r.json()] == ["yellow", "green"]
    assert 'rel="next"' in r.headers["Link"] and "page=2" in r.headers["Link"]
    asset = r.json()[0]["assets"][0]
    assert asset["name"] == "yellow_tripdata_2019-01.csv.gz" and asset["size"] == 201
    # The download URL is the mirror's own file URL.
    assert requests.get(asset["browser_download_url"], timeout=10).content == b"y" * 201
    again = requests.get(
        github.api_url + "/releases?per_page=2", headers={"If-None-Match": r.headers["ETag"]}, timeout=10
    )
    assert again.status_code == 304 and again.content == b""
    one = requests.get(github.api_url + "/releases/tags/green", timeout=10)
    assert one.json()["tag_name"] == "green" and len(one.json()["assets"]) == 2
    assert requests.get(github.api_url + "/releases/tags/nope", timeout=10).status_code == 404


# --- hardening: hostile or broken APIs -----------------------------------------------------------

TOKEN = "ghp_secret-token-value"


@pytest.fixture
def other_host(tmp_path: Path) -> Iterator[FakeGitHub]:
    """A second server (another port) that no request of the sensor may reach."""
    fake = FakeGitHub(tmp_path / "other")
    fake.root.mkdir()
    with fake.server:
        try:
            yield fake
        finally:
            fake.stopping.set()


def first_page(github: FakeGitHub) -> str:
    return f"{github.api_url}/releases?per_page=100"


def hand_written(head: bytes, chunks: Iterable[bytes], sent: list[int] | None = None) -> Fault:
    """A fault answering with raw bytes: `head` (status line, headers), then each chunk as it comes;
    the sizes written go to `sent`."""

    def answer(request) -> None:
        try:
            request.wfile.write(head)
            for chunk in chunks:
                request.wfile.write(chunk)
                if sent is not None:
                    sent.append(len(chunk))
        except OSError:
            pass  # the client hung up, as it should

    return answer


def dribble(data: bytes, stop: threading.Event, every: float = 0.2) -> Iterator[bytes]:
    for i in range(len(data)):
        if stop.wait(every):
            return
        yield data[i : i + 1]


def stall(first: bytes, rest: bytes, stop: threading.Event, seconds: float = 8) -> Iterator[bytes]:
    yield first
    if not stop.wait(seconds):
        yield rest


def test_a_next_link_to_another_host_is_neither_followed_nor_kept(
    github: FakeGitHub, other_host: FakeGitHub, instance, capfd
):
    h = Harness(github, instance, token=TOKEN)
    page = requests.get(first_page(github), timeout=10).content
    foreign = f"{other_host.api_url}/releases?per_page=100&page=2"
    for _ in range(2):  # every tick, not only the first
        github.calls()
        github.faults = [(200, {"Link": f'<{foreign}>; rel="next"', "ETag": '"p1"'}, page)]
        data = h.tick()
        assert other_host.calls() == []
        (call,) = github.calls()
        assert call["authorization"] == f"Bearer {TOKEN}"
        # The page is not remembered with its ETag: it is read again, and warned about again.
        assert call["if_none_match"] is None
        assert h.state.pages == [PageState(first_page(github), None, None)]
        assert h.cursor is not None and other_host.server.base_url not in h.cursor
        assert (
            f"links its next page to another host ({other_host.server.base_url}), not followed"
        ) in data.skip_message
        assert "the release list was read only in part" in data.skip_message
        assert TOKEN not in data.skip_message and h.cursor is not None and TOKEN not in h.cursor
    assert data.skip_message.startswith("no new or re-published release files")
    # context.log's console handler writes to stderr.
    warnings = [line for line in capfd.readouterr().err.splitlines() if " - WARNING - " in line]
    assert sum("links its next page to another host" in w for w in warnings) == 2


def test_a_cursor_holding_a_foreign_next_link_is_not_followed(
    github: FakeGitHub, other_host: FakeGitHub, instance
):
    h = Harness(github, instance, token=TOKEN)
    h.tick()
    (page,) = h.state.pages
    foreign = f"{other_host.api_url}/releases?per_page=100&page=2"

    def forge() -> None:  # what an older version kept after a page linked to another host
        state = h.state
        state.pages = [replace(page, next_url=foreign)]
        h.cursor = state.dump()

    forge()
    github.calls()
    data = h.tick()
    assert other_host.calls() == []
    # The remembered page is forgotten: asked unconditionally, and its real (absent) link kept.
    (call,) = github.calls()
    assert call["if_none_match"] is None and call["status"] == 200
    assert h.state.pages == [PageState(first_page(github), page.etag, None)]
    assert data.run_requests == [] and h.cursor is not None and foreign not in h.cursor
    # A rate-limited tick, which keeps the pages it loaded, does not keep the link either.
    forge()
    github.faults = [(429, {"retry-after": "60"}, b"{}")]
    assert "rate limit" in h.tick().skip_message
    assert h.cursor is not None and other_host.server.base_url not in h.cursor and h.state.pages == []


def test_redirects_are_followed_only_within_the_api_origin(
    github: FakeGitHub, other_host: FakeGitHub, instance
):
    h = Harness(github, instance, token=TOKEN)
    h.tick()
    cursor = h.cursor
    github.calls()
    github.faults = [(302, {"Location": first_page(other_host)}, b"")]
    data = h.tick()
    assert other_host.calls() == []
    assert data.run_requests == [] and h.cursor == cursor
    assert (
        f"{github.api_url}/releases" in data.skip_message
        and f"redirects to another host ({other_host.server.base_url}), not followed" in data.skip_message
    )
    github.calls()
    # Within the API's origin: followed, with the token and the ETag.
    github.faults = [(301, {"Location": "/api/releases?per_page=100&moved=1"}, b"")]
    data = h.tick()
    calls = github.calls()
    assert [(c["path"], c["status"]) for c in calls] == [
        ("/api/releases?per_page=100", 301),
        ("/api/releases?per_page=100&moved=1", 304),
    ]
    assert {c["authorization"] for c in calls} == {f"Bearer {TOKEN}"}
    assert data.skip_message.startswith("no change")


@pytest.mark.parametrize(
    "status, headers, wait",
    [
        (429, {"retry-after": "1e12"}, timedelta(hours=1)),  # was an OverflowError
        (429, {"retry-after": "inf"}, timedelta(minutes=5)),  # unreadable: the default wait
        (429, {"retry-after": "nan"}, timedelta(minutes=5)),
        (429, {"retry-after": "-90"}, timedelta(minutes=5)),
        (429, {"retry-after": "soon"}, timedelta(minutes=5)),
        (
            429,
            {"retry-after": format_datetime(NOW + timedelta(minutes=10), usegmt=True)},
            timedelta(minutes=10),
        ),  # the HTTP-date form
        (429, {"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"}, timedelta(hours=1)),
        (
            403,
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "99999999999999999"},
            timedelta(hours=1),
        ),  # was an OSError
        (
            403,
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "99999999999"},
            timedelta(hours=1),
        ),  # year 5138: was kept, silencing the sensor
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1e400"}, timedelta(hours=1)),
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "-5"}, timedelta(minutes=5)),
    ],
)
def test_extreme_rate_limit_headers_wait_at_most_an_hour(github: FakeGitHub, instance, status, headers, wait):
    h = Harness(github, instance)
    h.tick()
    github.faults = [(status, headers, b'{"message": "API rate limit exceeded"}')]
    data = h.tick()
    assert data.run_requests == [] and f"rate limit reached (HTTP {status}" in data.skip_message
    assert h.state.retry_at == (NOW + wait).isoformat()
    github.calls()
    h.clock.now = NOW + timedelta(hours=1, seconds=1)
    assert "304" in h.tick().skip_message and len(github.calls()) == 1


@pytest.mark.parametrize(
    "stored, skipped_until",
    [
        ("5138-11-16T09:46:39+00:00", NOW + timedelta(hours=1)),  # kept by an older version
        ("2024-06-15T08:30:00", NOW + timedelta(minutes=30)),  # no zone: UTC
        ("not a time", None),  # unreadable: asks
    ],
)
def test_a_stored_rate_limit_time_is_clamped_or_ignored(github: FakeGitHub, instance, stored, skipped_until):
    h = Harness(github, instance)
    h.tick()
    state = h.state
    state.retry_at = stored
    h.cursor = state.dump()
    github.calls()
    data = h.tick()
    if skipped_until is not None:
        assert github.calls() == []
        assert data.skip_message == (
            f"rate limited by the releases API: not asking before {skipped_until.isoformat()}"
        )
        h.clock.now = skipped_until + timedelta(seconds=1)
        data = h.tick()
    assert len(github.calls()) == 1 and "304" in data.skip_message and h.state.retry_at is None


@pytest.mark.parametrize("answer", ["dribbled headers", "dribbled body", "stalled headers", "stalled body"])
def test_a_slow_api_times_out_within_the_tick_budget(github: FakeGitHub, instance, monkeypatch, answer):
    monkeypatch.setattr(release_sensor_module, "TICK_BUDGET_SECONDS", 3.0)
    monkeypatch.setattr(release_sensor_module, "REQUEST_TIMEOUT_SECONDS", 2.0)
    h = Harness(github, instance)
    h.tick()
    cursor = h.cursor
    stop, ok = github.stopping, b"HTTP/1.1 200 OK\r\n"
    body_head = ok + b"Content-Type: application/json\r\nContent-Length: 40\r\n\r\n"
    github.faults = [
        {
            # One byte every 0.2 s: every read succeeds, the answer takes 8 s.
            "dribbled headers": lambda: hand_written(
                ok, dribble(b"X-Slow: " + b"a" * 28 + b"\r\n\r\n", stop)
            ),
            "dribbled body": lambda: hand_written(body_head, dribble(b"[" + b" " * 38 + b"]", stop)),
            # Nothing for 8 s: a read times out.
            "stalled headers": lambda: hand_written(b"", stall(b"", body_head + b"[]", stop)),
            "stalled body": lambda: hand_written(body_head, stall(b"[", b" " * 38 + b"]", stop)),
        }[answer]()
    ]
    started = time.monotonic()
    data = h.tick()
    assert time.monotonic() - started < 3.0 + 1.5
    assert data.run_requests == [] and h.cursor == cursor
    assert f"GitHub releases API: {github.api_url}/releases" in data.skip_message
    assert " timed out (" in data.skip_message


@pytest.mark.parametrize("answer", ["declared", "streamed", "gzip bomb"])
def test_an_oversized_page_is_not_read_whole(github: FakeGitHub, instance, answer):
    h = Harness(github, instance)
    h.tick()
    cursor = h.cursor
    sent: list[int] = []
    mb = b" " * (1 << 20)
    many = 10 * (MAX_PAGE_BYTES >> 20)  # MB
    ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    chunks: Iterable[bytes]
    if answer == "declared":
        head, chunks = ok + b"Content-Length: %d\r\n\r\n" % (many << 20), (mb for _ in range(many))
    elif answer == "streamed":  # no length: until the server closes
        head, chunks = ok + b"Connection: close\r\n\r\n", (mb for _ in range(many))
    else:  # 100 kB on the wire, 100 MB decoded
        bomb = gzip.compress(b"[" + mb * many)
        head, chunks = ok + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb), [bomb]
    github.faults = [hand_written(head, chunks, sent)]
    data = h.tick()
    assert data.run_requests == [] and h.cursor == cursor
    assert (
        f"GitHub releases API: {github.api_url}/releases" in data.skip_message
        and f"answered more than {MAX_PAGE_BYTES >> 20} MB" in data.skip_message
    )
    if answer != "gzip bomb":
        assert sum(sent) < many << 20  # the client hung up


def test_full_width_digits_are_no_month(github: FakeGitHub, instance):
    h = Harness(github, instance)
    h.tick()
    before = dict(h.state.files)
    github.publish("yellow", "yellow_tripdata_２０１９-09.csv.gz", b"y" * 9, T0 + timedelta(days=1))
    data = h.tick()
    assert data.run_requests == [] and h.state.files == before and h.state.pending == {}
    assert data.skip_message.startswith(
        "no new or re-published release files (1 changed page(s), 2 file(s) outside"
    )


# --- failure notifications -----------------------------------------------------------------------


def test_failure_sensor_summarises_the_failed_steps(tmp_path: Path, env, caplog):
    """A real failed run (a 404 inside the published range) through the run-failure sensor."""
    result = env.materialize(YELLOW, date(2019, 1, 1))  # no file in the mirror
    assert not result.success
    run = env.instance.get_run_by_id(result.run_id)
    failure_event = next(
        e
        for e in env.instance.all_logs(result.run_id)
        if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.RUN_FAILURE
    )
    log_file = tmp_path / "failures.jsonl"
    sensor = build_failure_sensor(Notifiers([LogNotifier(), JsonLinesNotifier(log_file)]))
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_instance=env.instance,
        dagster_run=run,
        dagster_event=failure_event.dagster_event,
    ).for_run_failure()
    with caplog.at_level(logging.ERROR, logger="taxi_platform.failures"):
        sensor(context)
    (line,) = log_file.read_text().splitlines()
    summary = json.loads(line)
    assert summary["run_id"] == result.run_id and summary["partition"] == "2019-01-01"
    (step,) = summary["failed_steps"]
    assert step["step"] == "lake__yellow_tripdata_file"
    assert "yellow 2019-01" in step["error"] and "404" in step["error"]
    logged = [r.getMessage() for r in caplog.records if r.name == "taxi_platform.failures"]
    assert len(logged) == 1 and logged[0].startswith(f"run {result.run_id} FAILED (job ")
    assert "step lake__yellow_tripdata_file: " in logged[0]
    # The 404 is final: the download retry policy did not run the step again.
    retries = [
        e
        for e in env.instance.all_logs(result.run_id)
        if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
    ]
    assert retries == []


def test_a_broken_notifier_does_not_silence_the_others(tmp_path: Path):
    class Broken:
        def notify(self, summary):
            raise RuntimeError("smtp down")

    target = tmp_path / "f.jsonl"
    s = FailureSummary(
        run_id="r1",
        job_name="j",
        partition=None,
        dataset=None,
        file=None,
        message="postgresql://u:pw@h/db refused",
    )
    Notifiers([Broken(), JsonLinesNotifier(target)]).notify(s)
    assert json.loads(target.read_text())["run_id"] == "r1"


def test_download_retry_policy_and_permanent_failures():
    raw = build_trip_assets(YELLOW, warehouse_kind="postgres", lake_kind="file", min_in_month_share=0.95)[0]
    policy = raw.op.retry_policy
    assert policy is not None
    assert policy.max_retries == 3 and policy.delay == 30 and policy.backoff == dg.Backoff.EXPONENTIAL


# --- downstream dbt automation -------------------------------------------------------------------


def test_a_final_table_update_requests_that_months_dbt_partition(tmp_path: Path):
    """The declarative condition on the monthly dbt models: a new materialization of one month of
    a final table (both colours present) requests exactly that month of the dbt models."""
    from taxi_platform.definitions import build_definitions

    defs = build_definitions(Settings(source="course", home=tmp_path))
    graph = defs.resolve_asset_graph()
    monthly = [k for k in graph.get_all_asset_keys() if k.path[0] == "dbt" and graph.get(k).partitions_def]
    assert monthly, "no monthly dbt assets"
    # dim_zones and the seeds; not the final tables of datasets the course source lacks (fhv,
    # fhvhv): they are external there, and nothing ever materializes them.
    upstream_unpartitioned = {
        p
        for k in monthly
        for p in graph.get(k).parent_keys
        if graph.get(p).partitions_def is None and graph.get(p).is_materializable
    }
    with dg.instance_for_test() as instance:
        selection = dg.AssetSelection.assets(*monthly)
        # The sensor's first evaluation: nothing has happened yet.
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection)
        assert result.total_requested == 0

        def report(key, partition=None):
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))

        for key in upstream_unpartitioned:  # dim_zones and friends, then their own parents
            for parent in graph.get(key).parent_keys:
                report(parent)
            report(key)
        for spec in (YELLOW, GREEN):
            for m in ("2019-01-01", "2019-02-01"):
                report(final_key(spec), m)
                report(staging_key(spec), m)
                report(raw_file_key(spec), m)
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=selection, cursor=result.cursor
        )
        first = {k: set(result.get_requested_partitions(k)) for k in monthly}
        # Both months were just updated upstream: both requested.
        assert all(v == {"2019-01-01", "2019-02-01"} for v in first.values()), first
        for key in monthly:
            for m in ("2019-01-01", "2019-02-01"):
                report(key, m)
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=selection, cursor=result.cursor
        )
        assert result.total_requested == 0
        # A re-published January of yellow: only January's dbt partitions.
        report(final_key(YELLOW), "2019-01-01")
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=selection, cursor=result.cursor
        )
        requested = {
            k.to_user_string(): set(result.get_requested_partitions(k))
            for k in monthly
            if result.get_requested_partitions(k)
        }
        assert requested and all(v == {"2019-01-01"} for v in requested.values()), requested
        assert "dbt/stg_yellow_tripdata" in requested and "dbt/stg_green_tripdata" not in requested
