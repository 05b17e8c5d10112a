"""The release sensor of the course's source: new and re-published release files -> runs.

Release sensor, per tick:
1. If an earlier tick hit the rate limit and its reset time has not come, skip without calling
   (the reset time is never more than an hour ahead, even one read from an older cursor).
2. List the releases (`<TAXI_RELEASES_API_URL>/releases`), every page asked with its ETag from
   the cursor: at most `TAXI_RELEASES_API_MAX_PAGES` calls, within a 30 s budget that bounds every
   call, however slowly the server answers (the sensor timeout is 60 s), and at most 10 MB a page.
   Next links are followed, and the token sent, only to the scheme, host and port of
   `TAXI_RELEASES_API_URL`: a link elsewhere ends the listing with a warning and is never kept in
   the cursor. All pages 304 -> skip ("no change").
3. For each asset of a changed page whose release tag and file name (ASCII digits for the month)
   match a dataset of the spec table, and whose month is one of the platform's partitions: a run
   of that dataset's job for that month if the file is new or re-published (same name, other
   `updated_at` or `size`).
   The run key is `<tag>/<file>@<updated_at>|<size>`, so a replayed tick never runs a file twice.
   A file of a month outside the source's months (the partitions: 2019-01..2021-07 for the
   course's frozen CSV backup) is never requested: the tick logs it with the reason and counts it
   in its skip reason. A file of a month that is not a partition yet (the current month of a live
   source) is kept as pending and requested on the first tick after the month ends, without
   another HTTP call.
4. The cursor (JSON) keeps each page's URL, ETag and next link, each file's `updated_at|size`,
   the pending files, whether the first tick is done, and the rate-limit reset time.

First tick (no cursor): `TAXI_RELEASE_SENSOR_FIRST_TICK=baseline` (default) records every file as
seen and requests nothing: history is loaded by a backfill, on purpose, and the sensor reacts to
what is published from then on. `backfill` requests every published month on the first tick (the
run queue and the warehouse pool then work through them).

Errors never fail the tick: rate limits (403/429), API errors, timeouts and oversized pages skip
it with the reason. A listing read only in part (too many pages, a foreign next link) is warned
about in the log and in the skip reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime

import dagster as dg

from taxi_platform.automation.release_cursor import ReleaseCursor, ReleaseMatcher, pending_asset
from taxi_platform.automation.release_runs import file_run_request, release_sensor
from taxi_platform.datasets import DatasetSpec
from taxi_platform.partitions import is_partition_month, outside_partitions
from taxi_platform.source.github_releases import (
    DEFAULT_PER_PAGE,
    RateLimited,
    ReleasesApiClient,
    ReleasesApiError,
)
from taxi_platform.source.release_listing import ReleaseAsset

RELEASE_SENSOR_NAME = "taxi_release_sensor"
TICK_BUDGET_SECONDS = 30.0  # all HTTP calls of a tick; the sensor's own timeout is 60 s
REQUEST_TIMEOUT_SECONDS = 10.0
MAX_FILES_NAMED = 5  # files of months outside the partitions named in a tick's log and skip reason


def evaluate_releases(
    context: dg.SensorEvaluationContext,
    client: ReleasesApiClient,
    matcher: ReleaseMatcher,
    first_tick: str,
    now: datetime,
) -> dg.SensorResult | dg.SkipReason:
    state = ReleaseCursor.load(context.cursor, now)
    state.pages = client.own_pages(state.pages)  # an older version kept links to other hosts
    if state.retry_at and now < datetime.fromisoformat(state.retry_at):
        # The cursor is written: a clamped time must stay put, not move on with every tick.
        return dg.SensorResult(
            skip_reason=f"rate limited by the releases API: not asking before {state.retry_at}",
            cursor=state.dump(),
        )
    try:
        listing = client.list_releases(state.pages)
    except RateLimited as exc:
        context.log.warning(str(exc))
        state.retry_at = exc.retry_at.astimezone(UTC).isoformat()
        return dg.SensorResult(skip_reason=str(exc), cursor=state.dump())
    except ReleasesApiError as exc:
        context.log.warning(f"{exc}; the next tick tries again")
        return dg.SkipReason(f"{exc}; the next tick tries again")

    state.retry_at = None
    state.pages = listing.pages
    truncated = ""
    if listing.truncated:
        truncated = (
            f"; the release list was read only in part ({len(listing.pages)} page(s)): "
            f"{listing.truncated_reason}; releases on later pages are not watched"
        )
        context.log.warning(truncated[2:])
    wanted: list[tuple[DatasetSpec, date, ReleaseAsset, str]] = []
    ignored = 0
    outside: dict[str, str] = {}  # files of months that are never partitions -> why

    def consider(asset: ReleaseAsset, count: bool = True) -> None:
        nonlocal ignored
        target = matcher.match(asset)
        key = f"{asset.tag}/{asset.name}"
        if target is None:
            ignored += count
            return
        why_not = outside_partitions(target[0], target[1])
        if why_not is not None:  # also a pending file an older version kept
            state.pending.pop(key, None)
            outside[asset.name] = f"{target[1]:%Y-%m} is {why_not}"
            ignored += count
            return
        if not is_partition_month(target[0], target[1], now):  # published early: wait for the partition
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
        consider(pending_asset(key, pending_version), count=False)
    not_partitions = ""
    if outside:
        names = sorted(outside)
        listed = "; ".join(f"{n}: {outside[n]}" for n in names[:MAX_FILES_NAMED])
        more = f"; and {len(names) - MAX_FILES_NAMED} more" if len(names) > MAX_FILES_NAMED else ""
        not_partitions = f"; not requested: {listed}{more}"
        context.log.info(f"release file(s) never requested, their month is not a partition: {listed}{more}")

    if listing.unchanged and state.baselined and not wanted:
        return dg.SensorResult(
            skip_reason=f"no change: the releases API answered 304 Not Modified for all "
            f"{len(listing.pages)} page(s){not_partitions}{truncated}",
            cursor=state.dump(),
        )

    if not state.baselined:
        state.baselined = True
        if first_tick == "baseline":
            return dg.SensorResult(
                skip_reason=f"first tick: recorded {len(state.files)} release file(s) as already "
                "known and requested no runs (load history with a backfill, or set "
                f"TAXI_RELEASE_SENSOR_FIRST_TICK=backfill){not_partitions}{truncated}",
                cursor=state.dump(),
            )

    wanted.sort(key=lambda w: (w[0].name, w[1]))
    requests = []
    for spec, month, asset, change in wanted:
        context.log.info(
            f"{change} release file {asset.name} ({asset.size:,} bytes, updated "
            f"{asset.updated_at}): requesting {spec.name} {month:%Y-%m}"
        )
        requests.append(
            file_run_request(
                spec,
                month,
                run_key=f"{asset.tag}/{asset.name}@{asset.version}",
                change=change,
                tags={"taxi/release_updated_at": asset.updated_at},
            )
        )
    if not requests:
        return dg.SensorResult(
            skip_reason=f"no new or re-published release files ({listing.changed_pages} changed "
            f"page(s), {ignored} file(s) outside the platform's datasets/partitions)"
            f"{not_partitions}{truncated}",
            cursor=state.dump(),
        )
    return dg.SensorResult(run_requests=requests, cursor=state.dump())


def build_release_sensor(
    specs: Mapping[str, DatasetSpec],
    jobs: list[dg.UnresolvedAssetJobDefinition],
    *,
    api_url: str,
    token: str | None,
    max_pages: int,
    interval_seconds: int,
    first_tick: str,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    per_page: int = DEFAULT_PER_PAGE,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    """The sensor over `api_url` (TAXI_RELEASES_API_URL), sending `token` (TAXI_GITHUB_TOKEN) if set;
    `first_tick` is TAXI_RELEASE_SENSOR_FIRST_TICK."""
    matcher = ReleaseMatcher(specs)

    @release_sensor(
        RELEASE_SENSOR_NAME,
        "Polls the GitHub Releases API of the source repository and loads new and "
        "re-published monthly files (TAXI_RELEASES_API_URL).",
        jobs,
        interval_seconds,
        default_status,
    )
    def taxi_release_sensor(context: dg.SensorEvaluationContext):
        client = ReleasesApiClient(
            api_url,
            token=token,
            per_page=per_page,
            max_pages=max_pages,
            timeout_seconds=REQUEST_TIMEOUT_SECONDS,
            budget_seconds=TICK_BUDGET_SECONDS,
            clock=clock,
        )
        return evaluate_releases(context, client, matcher, first_tick, clock())

    return taxi_release_sensor
