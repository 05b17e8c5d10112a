"""`tlc_release_sensor`: the TLC's publications found within one sensor interval, re-uploads noticed.

The TLC publishes month M of all four datasets together, usually around the 18th-23rd of M+2,
sometimes weeks late and in batches, and re-uploads old files (new Last-Modified, mostly identical
bytes). Per tick, within `TAXI_TLC_SENSOR_REQUESTS` conditional HEAD requests and a 30 s budget
(the sensor's timeout is 60 s), in this order:
  1. the months of the recent window not seen published yet, per dataset: the next month expected
     (M+1 once M is due) and any late month (`TAXI_TLC_SENSOR_RECENT_MONTHS` months back);
  2. the months of that window already seen, with If-None-Match / If-Modified-Since: a 304 costs
     nothing, a new ETag, Last-Modified or size is a re-upload;
  3. older months, round-robin from where the last tick stopped (the whole history, slowly).
A new file gives a run of the dataset's job for that month; a re-upload gives a run tagged
`taxi/release_change=republished`, whose raw-file step compares the new file's sha256 with the
lake's copy and stops there when the bytes are identical (recorded as an observation, nothing
reloaded, no dbt rebuild). Run keys are `<url>@<etag>|<last-modified>|<size>`: a replayed tick
requests nothing twice.

403 means "not published" for a month not seen yet (CloudFront answers 403 for a missing object);
for a file seen before, and 429, 5xx, timeouts and connection errors, it means "back off": the
tick stops asking, and the next request waits 1, 2, 4 … minutes (at most an hour), carried in the
cursor; the skip reason says why. The first tick (no cursor) records what is published and
requests nothing (`TAXI_RELEASE_SENSOR_FIRST_TICK=baseline`; `backfill` loads the recent window).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

import dagster as dg
import requests

from taxi_platform.assets.policies import FILE_VERSION_TAG
from taxi_platform.automation.release_runs import file_run_request, release_sensor
from taxi_platform.automation.tlc_cursor import TlcCursor
from taxi_platform.automation.tlc_plan import plan_checks
from taxi_platform.automation.tlc_probe import head_file
from taxi_platform.datasets import DatasetSpec
from taxi_platform.partitions import is_partition_month
from taxi_platform.redact import mask_url
from taxi_platform.source.tlc import tlc_file_url

TLC_SENSOR_NAME = "tlc_release_sensor"
TICK_BUDGET_SECONDS = 30.0
REQUEST_TIMEOUT_SECONDS = 5.0
BACKOFF_FIRST = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=1)


def evaluate_tlc_releases(
    context: dg.SensorEvaluationContext,
    specs: Mapping[str, DatasetSpec],
    base_url: str,
    *,
    now: datetime,
    budget: int,
    recent_months: int,
    first_tick: str,
    session: requests.Session,
    monotonic: Callable[[], float] = time.monotonic,
) -> dg.SensorResult:
    state = TlcCursor.load(context.cursor)
    if state.retry_at and now < datetime.fromisoformat(state.retry_at):
        return dg.SensorResult(
            skip_reason=f"backing off after {state.failures} failed tick(s): "
            f"not asking before {state.retry_at}",
            cursor=state.dump(),
        )
    first = not state.baselined
    checks = plan_checks(specs, state, now, recent_months, budget)
    started = monotonic()
    requests_out: list[dg.RunRequest] = []
    counts = dict.fromkeys(
        ("asked", "not modified", "not published yet", "older not found", "unchanged", "recorded"), 0
    )
    failure: str | None = None
    for check in checks:
        if monotonic() - started > TICK_BUDGET_SECONDS:
            context.log.info(f"tick time budget spent after {counts['asked']} request(s)")
            break
        url = tlc_file_url(base_url, check.spec, check.month)
        known = state.files.get(check.key)
        counts["asked"] += 1
        probe = head_file(url, known, session, REQUEST_TIMEOUT_SECONDS)
        if check.kind == "older":
            state.older[check.spec.name] = f"{check.month:%Y-%m}"
        if probe.failure or (probe.missing == 403 and known is not None):
            failure = (
                probe.failure or f"{mask_url(url)} answered 403 for a file published before (throttled?)"
            )
            break
        if probe.unchanged:
            counts["not modified"] += 1
            continue
        if probe.missing:
            if known is not None:  # a 404 for a file seen before: gone; keep what is loaded
                context.log.warning(f"{mask_url(url)} answered 404; it was published before ({known.key})")
            counts["older not found" if check.kind == "older" else "not published yet"] += 1
            continue
        version = probe.version
        assert version is not None
        if known == version:
            counts["unchanged"] += 1
            continue
        state.files[check.key] = version
        change = "new" if known is None else "republished"
        wanted = (
            is_partition_month(check.spec, check.month, now)
            and (not first or first_tick == "backfill")
            and (check.kind != "older" or known is not None)  # history is loaded by backfills
        )
        if not wanted:
            counts["recorded"] += 1
            continue
        context.log.info(
            f"{change} file {url.rsplit('/', 1)[-1]} ({version.size:,} bytes, ETag {version.etag}, "
            f"Last-Modified {version.last_modified}): requesting {check.spec.name} {check.month:%Y-%m}"
        )
        requests_out.append(
            file_run_request(
                check.spec,
                check.month,
                run_key=f"{url}@{version.key}",
                change=change,
                tags={FILE_VERSION_TAG: version.key},
            )
        )
    state.baselined = True
    if failure:
        state.failures += 1
        wait = min(BACKOFF_FIRST * 2 ** (state.failures - 1), BACKOFF_MAX)
        state.retry_at = (now + wait).astimezone(UTC).isoformat()
        context.log.warning(f"{failure}; backing off until {state.retry_at}")
    else:
        state.failures, state.retry_at = 0, None
    summary = ", ".join(f"{n} {what}" for what, n in counts.items() if n and what != "asked")
    tick = f"{counts['asked']} file(s) asked ({summary or 'no answer'})"
    if failure:
        reason = f"{failure}: backing off until {state.retry_at} ({tick})"
        return dg.SensorResult(
            run_requests=requests_out, skip_reason=None if requests_out else reason, cursor=state.dump()
        )
    if requests_out:
        return dg.SensorResult(run_requests=requests_out, cursor=state.dump())
    if first:
        reason = (
            f"first tick: recorded the files published and requested no runs (load history with a "
            f"backfill, or set TAXI_RELEASE_SENSOR_FIRST_TICK=backfill); {tick}"
        )
    else:
        reason = f"no new or re-uploaded file: {tick}"
    return dg.SensorResult(skip_reason=reason, cursor=state.dump())


def build_tlc_release_sensor(
    specs: Mapping[str, DatasetSpec],
    jobs: list[dg.UnresolvedAssetJobDefinition],
    *,
    base_url: str,
    requests_per_tick: int,
    recent_months: int,
    interval_seconds: int,
    first_tick: str,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    """The sensor over the TLC's files under `base_url` (TAXI_TLC_URL): at most `requests_per_tick`
    HEADs a tick (TAXI_TLC_SENSOR_REQUESTS), the recent window `recent_months` long
    (TAXI_TLC_SENSOR_RECENT_MONTHS); `first_tick` is TAXI_RELEASE_SENSOR_FIRST_TICK."""

    @release_sensor(
        TLC_SENSOR_NAME,
        "Conditional HEAD requests on the TLC's files (TAXI_TLC_URL): loads a month when it is "
        "published and a file when it is re-uploaded with other bytes.",
        jobs,
        interval_seconds,
        default_status,
    )
    def tlc_release_sensor(context: dg.SensorEvaluationContext):
        with requests.Session() as session:
            session.headers["User-Agent"] = "taxi_platform (tlc_release_sensor)"
            return evaluate_tlc_releases(
                context,
                specs,
                base_url,
                now=clock(),
                budget=requests_per_tick,
                recent_months=recent_months,
                first_tick=first_tick,
                session=session,
            )

    return tlc_release_sensor
