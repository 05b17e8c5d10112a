"""Which TLC files a tick asks about, most urgent first: the recent window's months not seen yet,
then those seen (re-uploads), then older months round-robin from where the last tick stopped."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from taxi_platform.automation.tlc_cursor import TlcCursor
from taxi_platform.datasets import DatasetSpec
from taxi_platform.partitions import add_months, month_range, next_month
from taxi_platform.source_specs import expected_published_month


def month_back(month: date, n: int) -> date:
    return add_months(month, -n)


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
    window = month_range(month_back(due, recent_months - 1), next_month(due))
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
        months = month_range(spec.first_published, month_back(window_start, 1))
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
