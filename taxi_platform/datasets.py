"""The dataset spec table: the single source of truth for every trip dataset.

Every asset, table, check and sample file is derived from these entries; adding a dataset (FHV) is
one more `DatasetSpec` plus its tests. The source spec (`SOURCE`) says which months the files cover:
the monthly partitions are its months.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import Enum


@dataclass(frozen=True)
class SourceSpec:
    """Where the monthly files come from, and which months it holds: the monthly partitions of
    every trip asset and dbt model run from `first_month` to `last_month` (both included, first
    days of months). `last_month=None` describes a live publisher: up to the last complete month."""

    name: str
    description: str
    first_month: date
    last_month: date | None

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


# The course's CSV backup (GitHub releases of DataTalksClub/nyc-tlc-data): frozen, no month is
# added after 2021-07. A later source (the TLC's own Parquet files) brings its own range.
COURSE_CSV = SourceSpec(
    name="course-csv",
    description=(
        "The course's CSV backup of the TLC trip records (DataTalksClub/nyc-tlc-data "
        "releases): yellow and green 2019-01..2021-07, frozen."
    ),
    first_month=date(2019, 1, 1),
    last_month=date(2021, 7, 1),
)

# The source the platform loads: its months are the monthly partitions (see partitions.py).
SOURCE = COURSE_CSV


class ColumnType(str, Enum):
    """Logical column types, rendered per warehouse dialect (see `warehouse/*`)."""

    INTEGER = "integer"
    TIMESTAMP = "timestamp"
    # Money and distances: exact decimals, so sums match to the cent and ids render canonically.
    DECIMAL = "decimal"
    TEXT = "text"


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # "yellow": also the release tag and the prefix of table names
    release_tag: str
    columns: tuple[Column, ...]  # in file order
    pickup_column: str
    dropoff_column: str
    identity_columns: tuple[str, ...]  # the fields hashed into unique_row_id, in this order
    # First and last month known to be published (first day of the month), within the source's
    # months; a later month of the source whose file answers 404 is skipped as not published yet.
    first_published: date
    last_published: date
    description: str
    # Columns that are empty in the tail block of 2020+ files (rows not attributed to a vendor).
    unattributed_columns: tuple[str, ...] = ()

    @property
    def table_name(self) -> str:
        return f"{self.name}_tripdata"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name}: no column {name!r}")

    @property
    def file_name_template(self) -> str:
        """`yellow_tripdata_{month}.csv.gz`, where {month} is `YYYY-MM`."""
        return f"{self.release_tag}_tripdata_{{month}}.csv.gz"

    def file_name(self, month: date) -> str:
        """`yellow_tripdata_2019-01.csv.gz`: the release asset name for a month."""
        return self.file_name_template.format(month=f"{month:%Y-%m}")

    def is_published(self, month: date) -> bool:
        """Whether the month lies in the range known to be published (later months may appear)."""
        return self.first_published <= month <= self.last_published

    def __post_init__(self) -> None:
        names = self.column_names
        for required in (
            self.pickup_column,
            self.dropoff_column,
            *self.identity_columns,
            *self.unattributed_columns,
        ):
            if required not in names:
                raise ValueError(f"dataset {self.name!r}: {required!r} is not one of its columns")
        if len(set(names)) != len(names):
            raise ValueError(f"dataset {self.name!r}: duplicate column names")


def _cols(*pairs: tuple[str, ColumnType]) -> tuple[Column, ...]:
    return tuple(Column(n, t) for n, t in pairs)


# Short names for the column tables below.
INT, TIME, DEC, TEXT = ColumnType.INTEGER, ColumnType.TIMESTAMP, ColumnType.DECIMAL, ColumnType.TEXT

YELLOW = DatasetSpec(
    name="yellow",
    release_tag="yellow",
    columns=_cols(
        ("VendorID", INT),
        ("tpep_pickup_datetime", TIME),
        ("tpep_dropoff_datetime", TIME),
        ("passenger_count", INT),
        ("trip_distance", DEC),
        ("RatecodeID", INT),
        ("store_and_fwd_flag", TEXT),
        ("PULocationID", INT),
        ("DOLocationID", INT),
        ("payment_type", INT),
        ("fare_amount", DEC),
        ("extra", DEC),
        ("mta_tax", DEC),
        ("tip_amount", DEC),
        ("tolls_amount", DEC),
        ("improvement_surcharge", DEC),
        ("total_amount", DEC),
        ("congestion_surcharge", DEC),
    ),
    pickup_column="tpep_pickup_datetime",
    dropoff_column="tpep_dropoff_datetime",
    identity_columns=(
        "VendorID",
        "tpep_pickup_datetime",
        "tpep_dropoff_datetime",
        "PULocationID",
        "DOLocationID",
        "fare_amount",
        "trip_distance",
    ),
    first_published=date(2019, 1, 1),
    last_published=date(2021, 7, 1),
    description="Yellow taxi trips (street hails, Manhattan and airports).",
    unattributed_columns=("VendorID", "passenger_count", "RatecodeID", "store_and_fwd_flag", "payment_type"),
)

GREEN = DatasetSpec(
    name="green",
    release_tag="green",
    columns=_cols(
        ("VendorID", INT),
        ("lpep_pickup_datetime", TIME),
        ("lpep_dropoff_datetime", TIME),
        ("store_and_fwd_flag", TEXT),
        ("RatecodeID", INT),
        ("PULocationID", INT),
        ("DOLocationID", INT),
        ("passenger_count", INT),
        ("trip_distance", DEC),
        ("fare_amount", DEC),
        ("extra", DEC),
        ("mta_tax", DEC),
        ("tip_amount", DEC),
        ("tolls_amount", DEC),
        ("ehail_fee", DEC),
        ("improvement_surcharge", DEC),
        ("total_amount", DEC),
        ("payment_type", INT),
        ("trip_type", INT),
        ("congestion_surcharge", DEC),
    ),
    pickup_column="lpep_pickup_datetime",
    dropoff_column="lpep_dropoff_datetime",
    identity_columns=(
        "VendorID",
        "lpep_pickup_datetime",
        "lpep_dropoff_datetime",
        "PULocationID",
        "DOLocationID",
        "fare_amount",
        "trip_distance",
    ),
    first_published=date(2019, 1, 1),
    last_published=date(2021, 7, 1),
    description="Green taxi trips (boro taxis, outside central Manhattan).",
    unattributed_columns=(
        "VendorID",
        "passenger_count",
        "RatecodeID",
        "store_and_fwd_flag",
        "payment_type",
        "trip_type",
    ),
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (YELLOW, GREEN)}


@dataclass(frozen=True)
class ReferenceSpec:
    """A small unpartitioned reference file of a release (the zone lookup), loaded whole."""

    name: str  # also the warehouse table name
    release_tag: str
    file_name: str
    columns: tuple[Column, ...]
    key_column: str
    description: str


ZONES = ReferenceSpec(
    name="taxi_zones",
    release_tag="misc",
    file_name="taxi_zone_lookup.csv",
    columns=_cols(("LocationID", INT), ("Borough", TEXT), ("Zone", TEXT), ("service_zone", TEXT)),
    key_column="LocationID",
    description="The TLC taxi zones (LocationID, Borough, Zone, service_zone) from the misc release.",
)


def get_dataset(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None
