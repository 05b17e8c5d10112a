"""The release sensor's memory between ticks (`ReleaseCursor`, stored as JSON in the sensor's
cursor) and `ReleaseMatcher`, which tells which release files are months of which dataset."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from taxi_platform.datasets import DatasetSpec
from taxi_platform.source.github_headers import MAX_RATE_LIMIT_WAIT
from taxi_platform.source.release_listing import PageState, ReleaseAsset

CURSOR_VERSION = 1
_VERSION = re.compile(r".+\|[0-9]{1,15}")  # "<updated_at>|<size>"


@dataclass
class ReleaseCursor:
    baselined: bool = False
    pages: list[PageState] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # "<tag>/<name>" -> "<updated_at>|<size>"
    # Files of a month that is not a partition yet (published early): requested once it is.
    pending: dict[str, str] = field(default_factory=dict)
    retry_at: str | None = None  # ISO time before which the API is not called (rate limit)

    def dump(self) -> str:
        return json.dumps(
            {
                "v": CURSOR_VERSION,
                "baselined": self.baselined,
                "pages": [[p.url, p.etag, p.next_url] for p in self.pages],
                "files": dict(sorted(self.files.items())),
                "pending": dict(sorted(self.pending.items())),
                "retry_at": self.retry_at,
            },
            separators=(",", ":"),
        )

    @classmethod
    def load(cls, text: str | None, now: datetime | None = None) -> ReleaseCursor:
        """The cursor's state; with `now`, a rate-limit time more than MAX_RATE_LIMIT_WAIT ahead is
        brought back to that (an older version kept whatever the headers said)."""
        if not text:
            return cls()
        try:
            raw = json.loads(text)
            if raw.get("v") != CURSOR_VERSION:
                return cls()
            pages = [PageState(*p) for p in raw["pages"]]
            if not all(
                isinstance(p.url, str)
                and isinstance(p.etag, str | None)
                and isinstance(p.next_url, str | None)
                for p in pages
            ):
                pages = []  # then every page is asked unconditionally
            pending = {str(k): str(v) for k, v in raw.get("pending", {}).items()}
            return cls(
                baselined=bool(raw["baselined"]),
                pages=pages,
                files={str(k): str(v) for k, v in raw["files"].items()},
                pending={k: v for k, v in pending.items() if "/" in k and _VERSION.fullmatch(v)},
                retry_at=_retry_at(raw.get("retry_at"), now),
            )
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return cls()  # an unreadable cursor (edited by hand): start over, as a first tick


def _retry_at(value: object, now: datetime | None) -> str | None:
    """A remembered rate-limit time as aware UTC ISO text, at most MAX_RATE_LIMIT_WAIT after `now`;
    None when unreadable (then the API is asked)."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if now is not None:
            when = min(when, now + MAX_RATE_LIMIT_WAIT)
        return when.astimezone(UTC).isoformat()
    except (ValueError, OverflowError):
        return None


def _file_pattern(spec: DatasetSpec) -> re.Pattern[str]:
    # [0-9], not \d: \d also takes other scripts' digits, e.g. full-width ２０１９.
    template = re.escape(spec.file_name_template).replace(
        re.escape("{month}"), r"(?P<y>[0-9]{4})-(?P<m>[0-9]{2})"
    )
    return re.compile(template)


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


def pending_asset(key: str, version: str) -> ReleaseAsset:
    """The release file a pending cursor entry (`<tag>/<name>` -> `<updated_at>|<size>`) stands for."""
    tag, name = key.split("/", 1)
    updated_at, size = version.rsplit("|", 1)
    return ReleaseAsset(tag=tag, name=name, size=int(size), updated_at=updated_at, download_url="")
