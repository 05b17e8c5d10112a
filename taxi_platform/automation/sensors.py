"""The release sensor (new and re-published release files -> runs), and the sensor that keeps the
monthly dbt models up to date (declarative automation).

Release sensor, per tick:
1. If an earlier tick hit the rate limit and its reset time has not come, skip without calling.
2. List the releases (`<TAXI_RELEASES_API_URL>/releases`), every page asked with its ETag from
   the cursor: at most `TAXI_RELEASES_API_MAX_PAGES` calls, within a 30 s budget (the sensor
   timeout is 60 s). All pages 304 -> skip ("no change").
3. For each asset of a changed page whose release tag and file name match a dataset of the spec
   table, and whose month is one of the platform's partitions: a run of that dataset's job for
   that month if the file is new or re-published (same name, other `updated_at` or `size`).
   The run key is `<tag>/<file>@<updated_at>|<size>`, so a replayed tick never runs a file twice.
   A file of a month that is not a partition yet (the current month) is kept as pending and
   requested on the first tick after the month ends, without another HTTP call.
4. The cursor (JSON) keeps each page's URL, ETag and next link, each file's `updated_at|size`,
   the pending files, whether the first tick is done, and the rate-limit reset time.

First tick (no cursor): `TAXI_RELEASE_SENSOR_FIRST_TICK=baseline` (default) records every file as
seen and requests nothing: history is loaded by a backfill, on purpose, and the sensor reacts to
what is published from then on. `backfill` requests every published month on the first tick (the
run queue and the warehouse pool then work through them).

Errors never fail the tick: rate limits (403/429) and API errors skip it with the reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Callable, Mapping

import dagster as dg

from taxi_platform.automation.jobs import partition_key, run_tags, trip_job_name
from taxi_platform.datasets import DatasetSpec
from taxi_platform.partitions import PARTITIONS_START, month_of, next_month
from taxi_platform.settings import Settings
from taxi_platform.source.releases_api import (
    DEFAULT_PER_PAGE,
    PageState,
    RateLimited,
    ReleaseAsset,
    ReleasesApiClient,
    ReleasesApiError,
)

RELEASE_SENSOR_NAME = "taxi_release_sensor"
DBT_AUTOMATION_SENSOR_NAME = "taxi_dbt_automation"
DBT_RUN_TAG = "taxi/dbt"
CURSOR_VERSION = 1
TICK_BUDGET_SECONDS = 30.0  # all HTTP calls of a tick; the sensor's own timeout is 60 s
REQUEST_TIMEOUT_SECONDS = 10.0


@dataclass
class ReleaseCursor:
    baselined: bool = False
    pages: list[PageState] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # "<tag>/<name>" -> "<updated_at>|<size>"
    # Files of a month that is not a partition yet (published early): requested once it is.
    pending: dict[str, str] = field(default_factory=dict)
    retry_at: str | None = None  # ISO time before which the API is not called (rate limit)

    def dump(self) -> str:
        return json.dumps({
            "v": CURSOR_VERSION, "baselined": self.baselined,
            "pages": [[p.url, p.etag, p.next_url] for p in self.pages],
            "files": dict(sorted(self.files.items())),
            "pending": dict(sorted(self.pending.items())), "retry_at": self.retry_at,
        }, separators=(",", ":"))

    @classmethod
    def load(cls, text: str | None) -> "ReleaseCursor":
        if not text:
            return cls()
        try:
            raw = json.loads(text)
            if raw.get("v") != CURSOR_VERSION:
                return cls()
            return cls(baselined=bool(raw["baselined"]),
                       pages=[PageState(*p) for p in raw["pages"]],
                       files={str(k): str(v) for k, v in raw["files"].items()},
                       pending={str(k): str(v) for k, v in raw.get("pending", {}).items()},
                       retry_at=raw.get("retry_at"))
        except (ValueError, KeyError, TypeError, AttributeError):
            return cls()  # an unreadable cursor (edited by hand): start over, as a first tick


def _file_pattern(spec: DatasetSpec) -> re.Pattern[str]:
    template = re.escape(spec.file_name_template).replace(re.escape("{month}"),
                                                          r"(?P<y>\d{4})-(?P<m>\d{2})")
    return re.compile(template)


def is_partition_month(month: date, now: datetime) -> bool:
    """Whether `month` is one of the monthly partitions at `now` (from 2019-01 to the last
    complete month)."""
    return month_of(PARTITIONS_START) <= month and next_month(month) <= now.date()


class ReleaseMatcher:
    """Release assets -> (dataset, month) for the datasets of the spec table."""

    def __init__(self, specs: Mapping[str, DatasetSpec]) -> None:
        self._by_tag = {spec.release_tag: (spec, _file_pattern(spec)) for spec in specs.values()}

    def match(self, asset: ReleaseAsset) -> tuple[DatasetSpec, date] | None:
        """The dataset and month of a release file of one of our datasets; None for other files."""
        found = self._by_tag.get(asset.tag)
        if found is None:
            return None
        spec, pattern = found
        m = pattern.fullmatch(asset.name)
        if not m or not 1 <= int(m["m"]) <= 12:
            return None
        return spec, date(int(m["y"]), int(m["m"]), 1)


def _asset_from(key: str, version: str) -> ReleaseAsset:
    tag, name = key.split("/", 1)
    updated_at, size = version.rsplit("|", 1)
    return ReleaseAsset(tag=tag, name=name, size=int(size), updated_at=updated_at, download_url="")


def evaluate_releases(context: dg.SensorEvaluationContext, client: ReleasesApiClient,
                      matcher: ReleaseMatcher, first_tick: str, now: datetime
                      ) -> dg.SensorResult | dg.SkipReason:
    state = ReleaseCursor.load(context.cursor)
    if state.retry_at and now < datetime.fromisoformat(state.retry_at):
        return dg.SkipReason(f"rate limited by the releases API: not asking before {state.retry_at}")
    try:
        listing = client.list_releases(state.pages)
    except RateLimited as exc:
        context.log.warning(str(exc))
        state.retry_at = exc.retry_at.astimezone(timezone.utc).isoformat()
        return dg.SensorResult(skip_reason=str(exc), cursor=state.dump())
    except ReleasesApiError as exc:
        context.log.warning(f"{exc}; the next tick tries again")
        return dg.SkipReason(f"{exc}; the next tick tries again")

    state.retry_at = None
    state.pages = listing.pages
    if listing.truncated:
        context.log.warning(
            f"the release list has more pages than one tick reads ({len(listing.pages)}): older "
            "releases beyond them are not watched; raise TAXI_RELEASES_API_MAX_PAGES")
    wanted: list[tuple[DatasetSpec, date, ReleaseAsset, str]] = []
    ignored = 0

    def consider(asset: ReleaseAsset, count: bool = True) -> None:
        nonlocal ignored
        target = matcher.match(asset)
        key = f"{asset.tag}/{asset.name}"
        if target is None or target[1] < month_of(PARTITIONS_START):
            ignored += count
            return
        if not is_partition_month(target[1], now):  # published early: wait for the partition
            state.pending[key] = asset.version
            ignored += count
            return
        state.pending.pop(key, None)
        before = state.files.get(key)
        if before == asset.version:
            return
        state.files[key] = asset.version
        wanted.append((*target, asset, "new" if before is None else "republished"))

    for asset in listing.assets:  # the pages that changed
        consider(asset)
    for key, pending_version in list(state.pending.items()):  # months that became partitions
        consider(_asset_from(key, pending_version), count=False)

    if listing.unchanged and state.baselined and not wanted:
        return dg.SensorResult(
            skip_reason=f"no change: the releases API answered 304 Not Modified for all "
                        f"{len(listing.pages)} page(s)", cursor=state.dump())

    if not state.baselined:
        state.baselined = True
        if first_tick == "baseline":
            return dg.SensorResult(
                skip_reason=f"first tick: recorded {len(state.files)} release file(s) as already "
                            "known and requested no runs (load history with a backfill, or set "
                            "TAXI_RELEASE_SENSOR_FIRST_TICK=backfill)", cursor=state.dump())

    wanted.sort(key=lambda w: (w[0].name, w[1]))
    requests = []
    for spec, month, asset, change in wanted:
        context.log.info(f"{change} release file {asset.name} ({asset.size:,} bytes, updated "
                         f"{asset.updated_at}): requesting {spec.name} {month:%Y-%m}")
        requests.append(dg.RunRequest(
            run_key=f"{asset.tag}/{asset.name}@{asset.version}",
            job_name=trip_job_name(spec),
            partition_key=partition_key(month),
            tags={**run_tags(spec, month), "taxi/release_change": change,
                  "taxi/release_updated_at": asset.updated_at},
        ))
    if not requests:
        return dg.SensorResult(
            skip_reason=f"no new or re-published release files ({listing.changed_pages} changed "
                        f"page(s), {ignored} file(s) outside the platform's datasets/partitions)",
            cursor=state.dump())
    return dg.SensorResult(run_requests=requests, cursor=state.dump())


def build_release_sensor(settings: Settings, specs: Mapping[str, DatasetSpec],
                         jobs: list[dg.UnresolvedAssetJobDefinition], *,
                         clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                         per_page: int = DEFAULT_PER_PAGE,
                         default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
                         ) -> dg.SensorDefinition:
    matcher = ReleaseMatcher(specs)

    @dg.sensor(
        name=RELEASE_SENSOR_NAME,
        jobs=jobs,
        minimum_interval_seconds=settings.release_sensor_interval_seconds,
        default_status=default_status,
        description=("Polls the GitHub Releases API of the source repository and loads new and "
                     "re-published monthly files (TAXI_RELEASES_API_URL)."),
    )
    def release_sensor(context: dg.SensorEvaluationContext):
        client = ReleasesApiClient(
            settings.releases_api_url, token=settings.github_token, per_page=per_page,
            max_pages=settings.releases_api_max_pages, timeout_seconds=REQUEST_TIMEOUT_SECONDS,
            budget_seconds=TICK_BUDGET_SECONDS, clock=clock)
        return evaluate_releases(context, client, matcher, settings.release_sensor_first_tick, clock())

    return release_sensor


def build_dbt_automation_sensor(
        default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.AutomationConditionSensorDefinition:
    """Evaluates the automation conditions of the dbt assets (see assets/dbt.py): when a month's
    final table is materialized, that month's dbt partition is requested."""
    return dg.AutomationConditionSensorDefinition(
        DBT_AUTOMATION_SENSOR_NAME,
        target=dg.AssetSelection.key_prefixes("dbt"),
        default_status=default_status,
        minimum_interval_seconds=30,
        # One run per month, tagged: the instance runs at most one `taxi/dbt` run at a time
        # (tag_concurrency_limits in taxi_platform/instance/dagster.yaml), because two first builds
        # of an incremental dbt model at once race to create its table.
        run_tags={DBT_RUN_TAG: "automation"},
        emit_backfills=False,
        description="Rebuilds a month's dbt models after that month's trip tables change.",
    )
