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

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import dagster as dg
import requests

from taxi_platform.assets.trips import FILE_VERSION_TAG, RELEASE_CHANGE_TAG
from taxi_platform.automation.jobs import partition_key, run_tags, trip_job_name
from taxi_platform.datasets import DatasetSpec, expected_published_month
from taxi_platform.partitions import is_partition_month, next_month
from taxi_platform.redact import mask_url
from taxi_platform.settings import Settings
from taxi_platform.source.tlc import tlc_file_url

TLC_SENSOR_NAME = "tlc_release_sensor"
CURSOR_VERSION = 1
TICK_BUDGET_SECONDS = 30.0
REQUEST_TIMEOUT_SECONDS = 5.0
BACKOFF_FIRST = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=1)


@dataclass(frozen=True)
class FileVersion:
    """What identifies one upload of a file: its ETag, Last-Modified and size."""

    etag: str | None
    last_modified: str | None
    size: int

    @property
    def key(self) -> str:
        return f"{self.etag or '-'}|{self.last_modified or '-'}|{self.size}"


@dataclass
class TlcCursor:
    files: dict[str, FileVersion] = field(default_factory=dict)  # "<dataset>/<YYYY-MM>" -> version
    baselined: bool = False
    failures: int = 0  # consecutive ticks that had to back off
    retry_at: str | None = None  # ISO time before which nothing is asked
    older: dict[str, str] = field(default_factory=dict)  # dataset -> the older month checked last

    def dump(self) -> str:
        return json.dumps(
            {
                "v": CURSOR_VERSION,
                "baselined": self.baselined,
                "failures": self.failures,
                "retry_at": self.retry_at,
                "older": self.older,
                "files": {k: [v.etag, v.last_modified, v.size] for k, v in sorted(self.files.items())},
            },
            separators=(",", ":"),
        )

    @classmethod
    def load(cls, text: str | None) -> TlcCursor:
        if not text:
            return cls()
        try:
            raw = json.loads(text)
            if raw.get("v") != CURSOR_VERSION:
                return cls()
            files = {str(k): FileVersion(v[0], v[1], int(v[2])) for k, v in raw["files"].items()}
            retry_at = raw.get("retry_at")
            if retry_at is not None:
                datetime.fromisoformat(retry_at)  # refuse what is not a time
            return cls(
                files=files,
                baselined=bool(raw["baselined"]),
                failures=int(raw.get("failures", 0)),
                retry_at=retry_at,
                older={str(k): str(v) for k, v in raw.get("older", {}).items()},
            )
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return cls()  # unreadable (edited by hand): start over, as a first tick


# --- one HEAD ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """The answer for one file: `version` when it is there (None with `unchanged`: a 304),
    `missing` for 403/404, `failure` (a reason) for what calls for backing off."""

    version: FileVersion | None = None
    unchanged: bool = False
    missing: int | None = None
    failure: str | None = None


def head_file(url: str, known: FileVersion | None, session: requests.Session, timeout: float) -> Probe:
    """A conditional HEAD of `url` (or a stat of a file:// URL, whose version is its mtime and size)."""
    if url.startswith("file://"):
        path = Path(unquote(urlsplit(url).path))
        try:
            stat = path.stat()
        except FileNotFoundError:
            return Probe(missing=404)
        except OSError as exc:
            return Probe(failure=f"{path}: {exc.strerror}")
        modified = format_datetime(datetime.fromtimestamp(stat.st_mtime, UTC), usegmt=True)
        return Probe(version=FileVersion(None, modified, stat.st_size))
    headers = {}
    if known is not None and known.etag:
        headers["If-None-Match"] = known.etag
    if known is not None and known.last_modified:
        headers["If-Modified-Since"] = known.last_modified
    try:
        answer = session.head(url, headers=headers, timeout=timeout, allow_redirects=True)
    except requests.RequestException as exc:
        return Probe(failure=f"{mask_url(url)}: {type(exc).__name__}")
    if answer.status_code == 304:
        return Probe(unchanged=True)
    if answer.status_code in (403, 404):
        return Probe(missing=answer.status_code)
    if answer.status_code != 200:
        return Probe(failure=f"{mask_url(url)} answered {answer.status_code}")
    try:
        size = int(answer.headers.get("Content-Length", ""))
    except ValueError:
        return Probe(failure=f"{mask_url(url)} answered without a Content-Length")
    return Probe(version=FileVersion(answer.headers.get("ETag"), answer.headers.get("Last-Modified"), size))


# --- the tick ---------------------------------------------------------------------------------


def months_between(first: date, last: date) -> list[date]:
    months, month = [], first
    while month <= last:
        months.append(month)
        month = next_month(month)
    return months


def month_back(month: date, n: int) -> date:
    index = month.year * 12 + month.month - 1 - n
    return date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True)
class Check:
    spec: DatasetSpec
    month: date
    kind: str  # "unseen" | "recent" | "older"

    @property
    def key(self) -> str:
        return f"{self.spec.name}/{self.month:%Y-%m}"


def plan_checks(
    specs: Mapping[str, DatasetSpec], state: TlcCursor, now: datetime, recent_months: int, budget: int
) -> list[Check]:
    """The tick's checks, most urgent first, at most `budget`."""
    due = expected_published_month(now.date())
    window = months_between(month_back(due, recent_months - 1), next_month(due))
    unseen, recent, older = [], [], []
    for spec in specs.values():
        own = [m for m in window if m >= spec.first_published]
        unseen += [Check(spec, m, "unseen") for m in own if f"{spec.name}/{m:%Y-%m}" not in state.files]
        recent += [Check(spec, m, "recent") for m in own if f"{spec.name}/{m:%Y-%m}" in state.files]
    room = budget - len(unseen) - len(recent)
    if room > 0:
        older = _older_round_robin(specs, state, window[0], room)
    return (unseen + recent + older)[:budget]


def _older_round_robin(
    specs: Mapping[str, DatasetSpec], state: TlcCursor, window_start: date, room: int
) -> list[Check]:
    """Up to `room` months before the window, shared among the datasets, each continuing after
    the month its last tick checked (from its first month again after the newest)."""
    queues: list[Iterator[Check]] = []
    for spec in specs.values():
        months = months_between(spec.first_published, month_back(window_start, 1))
        if not months:
            continue
        last = state.older.get(spec.name)
        start = next((i for i, m in enumerate(months) if f"{m:%Y-%m}" > (last or "")), 0)
        order = months[start:] + months[:start]
        queues.append(iter([Check(spec, m, "older") for m in order]))
    picked: list[Check] = []
    while queues and len(picked) < room:
        for queue in list(queues):
            check = next(queue, None)
            if check is None:
                queues.remove(queue)
            elif len(picked) < room:
                picked.append(check)
    return picked


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
            dg.RunRequest(
                run_key=f"{url}@{version.key}",
                job_name=trip_job_name(check.spec),
                partition_key=partition_key(check.month),
                tags={
                    **run_tags(check.spec, check.month),
                    RELEASE_CHANGE_TAG: change,
                    FILE_VERSION_TAG: version.key,
                },
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
    settings: Settings,
    specs: Mapping[str, DatasetSpec],
    jobs: list[dg.UnresolvedAssetJobDefinition],
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    @dg.sensor(
        name=TLC_SENSOR_NAME,
        jobs=jobs,
        minimum_interval_seconds=settings.release_sensor_interval_seconds,
        default_status=default_status,
        description=(
            "Conditional HEAD requests on the TLC's files (TAXI_TLC_URL): loads a month when it is "
            "published and a file when it is re-uploaded with other bytes."
        ),
    )
    def tlc_release_sensor(context: dg.SensorEvaluationContext):
        with requests.Session() as session:
            session.headers["User-Agent"] = "taxi_platform (tlc_release_sensor)"
            return evaluate_tlc_releases(
                context,
                specs,
                settings.tlc_url,
                now=clock(),
                budget=settings.tlc_sensor_requests,
                recent_months=settings.tlc_sensor_recent_months,
                first_tick=settings.release_sensor_first_tick,
                session=session,
            )

    return tlc_release_sensor
