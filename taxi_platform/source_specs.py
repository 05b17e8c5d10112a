"""The sources of monthly trip files: the TLC's own Parquet releases and the course's CSV backup.

A `SourceSpec` says which datasets and months its files cover (`TAXI_SOURCE` picks one of
`SOURCES`); `source_datasets()` gives the dataset specs (datasets.py) as that source serves them:
its file format, and the months known to be published there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

from taxi_platform.datasets import ALL_DATASETS, DatasetSpec
from taxi_platform.partitions import add_months


@dataclass(frozen=True)
class SourceSpec:
    """Where the monthly files come from, and which months it holds: the monthly partitions of a
    dataset run from its first month there (`first_month`, or the dataset's own if later) to
    `last_month` (both included, first days of months). `last_month=None` describes a live
    publisher: up to the last complete month."""

    key: str  # the value of TAXI_SOURCE
    name: str  # in messages: "the course-csv source"
    description: str
    first_month: date
    last_month: date | None
    file_extension: str  # of its trip files: "csv.gz" or "parquet"
    dataset_names: tuple[str, ...]
    # The last month known to be published; None: a live publisher, whose month M is expected by
    # the PUBLISHED_BY_DAY of M+2 (`expected_published_month`).
    last_published: date | None = None

    def __post_init__(self) -> None:
        for bound in (self.first_month, self.last_month):
            if bound is not None and bound.day != 1:
                raise ValueError(f"source {self.name!r}: {bound} is not the first day of a month")
        if self.last_month is not None and self.last_month < self.first_month:
            raise ValueError(f"source {self.name!r}: its last month is before its first")

    @property
    def months_text(self) -> str:
        """`2019-01..2021-07`, as the CLI's --months writes a range."""
        last = "the last complete month" if self.last_month is None else f"{self.last_month:%Y-%m}"
        return f"{self.first_month:%Y-%m}..{last}"

    def why_not(self, month: date) -> str | None:
        """Why `month` is never one of this source's months, to follow "<month> is": "before the
        first month of the course-csv source (2019-01..2021-07)"; None when it is one of them (or
        will be, once complete)."""
        if month < self.first_month:
            return f"before the first month of the {self.name} source ({self.months_text})"
        if self.last_month is not None and month > self.last_month:
            return f"after the last month of the {self.name} source ({self.months_text})"
        return None


# The TLC publishes month M about seven weeks after it ends, around the 18th-23rd of M+2.
PUBLISHED_BY_DAY = 25


def expected_published_month(today: date) -> date:
    """The latest month the TLC has normally published by `today` (M once the 25th of M+2 passed)."""
    return add_months(today, -2 - (0 if today.day >= PUBLISHED_BY_DAY else 1))


# The TLC's own Parquet releases: four datasets, 2009 to the last complete month (the default).
TLC_PARQUET = SourceSpec(
    key="tlc",
    name="tlc-parquet",
    description=(
        "The TLC's own monthly Parquet releases (d37ci6vzurychx.cloudfront.net/trip-data): yellow "
        "from 2009-01, green 2014-01, fhv 2015-01, fhvhv 2019-02, to the latest month published."
    ),
    first_month=date(2009, 1, 1),
    last_month=None,
    file_extension="parquet",
    dataset_names=("yellow", "green", "fhv", "fhvhv"),
)
# The course's CSV backup (GitHub releases of DataTalksClub/nyc-tlc-data): frozen, no month is
# added after 2021-07; kept for the course's homework figures.
COURSE_CSV = SourceSpec(
    key="course",
    name="course-csv",
    description=(
        "The course's CSV backup of the TLC trip records (DataTalksClub/nyc-tlc-data "
        "releases): yellow and green 2019-01..2021-07, frozen."
    ),
    first_month=date(2019, 1, 1),
    last_month=date(2021, 7, 1),
    file_extension="csv.gz",
    dataset_names=("yellow", "green"),
    last_published=date(2021, 7, 1),
)
SOURCES: dict[str, SourceSpec] = {source.key: source for source in (TLC_PARQUET, COURSE_CSV)}


def source_datasets(source: SourceSpec, today: date | None = None) -> dict[str, DatasetSpec]:
    """The source's datasets as it serves them: its file format, and the months known to be
    published there (the first month of the dataset at that source; the last: the source's, or
    for a live publisher the month expected by `today`)."""
    last = source.last_published or expected_published_month(today or date.today())
    specs = {}
    for name in source.dataset_names:
        spec = ALL_DATASETS[name]
        specs[name] = replace(
            spec,
            file_extension=source.file_extension,
            first_published=max(source.first_month, spec.first_month),
            last_published=last,
            last_month=source.last_month,
            source_name=source.name,
        )
    return specs
