"""The dataset spec table: the single source of truth for every trip dataset.

Every asset, table, check and sample file is derived from these entries. A source spec (`SOURCES`:
the TLC's Parquet releases, the course's CSV backup) says which datasets and months its files
cover; `source_datasets()` gives the specs as that source serves them (file format, the months
known to be published), and the monthly partitions of each dataset are its months there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from enum import Enum

from taxi_platform.eras import FHV_ERAS, FHVHV_ERAS, GREEN_ERAS, YELLOW_ERAS, SchemaEra


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
    index = today.year * 12 + today.month - 1 - 2 - (0 if today.day >= PUBLISHED_BY_DAY else 1)
    return date(index // 12, index % 12 + 1, 1)


class ColumnType(str, Enum):
    """Logical column types, rendered per warehouse dialect (see `warehouse/*`)."""

    INTEGER = "integer"
    TIMESTAMP = "timestamp"
    # Money and distances: exact decimals, so sums match to the cent and ids render canonically.
    DECIMAL = "decimal"
    TEXT = "text"
    # The 2009-2010 coordinates: measurements, not money; kept as the TLC's doubles.
    DOUBLE = "double"


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # "yellow": also the release tag and the prefix of table names
    release_tag: str  # the course backup's GitHub release
    # The warehouse schema: the union of every era's columns (NULL where an era lacks one).
    columns: tuple[Column, ...]
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
    # The course's CSV files: their columns in file order (a subset of `columns`); () when the
    # course backup does not hold the dataset.
    csv_columns: tuple[str, ...] = ()
    # The TLC's Parquet releases: the schema eras (eras.py) and the first month published.
    eras: tuple[SchemaEra, ...] = ()
    first_month: date = date(2009, 1, 1)
    file_extension: str = "csv.gz"  # of the source's files: "csv.gz" (course) or "parquet" (TLC)
    # The last partition month at the source the spec is served from (None: the last complete
    # month); the first is `first_published`.
    last_month: date | None = date(2021, 7, 1)
    source_name: str = "course-csv"  # in messages: "... of yellow in the course-csv source"

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
        """`yellow_tripdata_{month}.csv.gz` (or `.parquet`), where {month} is `YYYY-MM`."""
        return f"{self.release_tag}_tripdata_{{month}}.{self.file_extension}"

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
            *self.csv_columns,
            *(c.target for era in self.eras for c in era.columns),
            *(c.raw_column for era in self.eras for c in era.columns if c.raw_column),
        ):
            if required not in names:
                raise ValueError(f"dataset {self.name!r}: {required!r} is not one of its columns")
        if len(set(names)) != len(names):
            raise ValueError(f"dataset {self.name!r}: duplicate column names")


def _cols(*pairs: tuple[str, ColumnType]) -> tuple[Column, ...]:
    return tuple(Column(n, t) for n, t in pairs)


# Short names for the column tables below.
INT, TIME, DEC, TEXT = ColumnType.INTEGER, ColumnType.TIMESTAMP, ColumnType.DECIMAL, ColumnType.TEXT
DOUBLE = ColumnType.DOUBLE

# The columns of the course's CSV files, in file order.
_YELLOW_CSV = (
    "VendorID",
    "tpep_pickup_datetime",
    "tpep_dropoff_datetime",
    "passenger_count",
    "trip_distance",
    "RatecodeID",
    "store_and_fwd_flag",
    "PULocationID",
    "DOLocationID",
    "payment_type",
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "improvement_surcharge",
    "total_amount",
    "congestion_surcharge",
)
_GREEN_CSV = (
    "VendorID",
    "lpep_pickup_datetime",
    "lpep_dropoff_datetime",
    "store_and_fwd_flag",
    "RatecodeID",
    "PULocationID",
    "DOLocationID",
    "passenger_count",
    "trip_distance",
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "ehail_fee",
    "improvement_surcharge",
    "total_amount",
    "payment_type",
    "trip_type",
    "congestion_surcharge",
)

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
        ("airport_fee", DEC),
        ("cbd_congestion_fee", DEC),
        # 2009-2010: the vendor's code, and coordinates instead of zones.
        ("vendor_name", TEXT),
        ("pickup_longitude", DOUBLE),
        ("pickup_latitude", DOUBLE),
        ("dropoff_longitude", DOUBLE),
        ("dropoff_latitude", DOUBLE),
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
    csv_columns=_YELLOW_CSV,
    eras=YELLOW_ERAS,
    first_month=date(2009, 1, 1),
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
        ("cbd_congestion_fee", DEC),
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
    csv_columns=_GREEN_CSV,
    eras=GREEN_ERAS,
    first_month=date(2014, 1, 1),
)

# For-hire vehicles (dispatched by bases): no fares. A trip is identified by its base, times and
# zones (and its affiliated base: two bases may dispatch at the same second between two zones).
FHV = DatasetSpec(
    name="fhv",
    release_tag="fhv",
    columns=_cols(
        ("dispatching_base_num", TEXT),
        ("pickup_datetime", TIME),
        ("dropoff_datetime", TIME),
        ("PULocationID", INT),
        ("DOLocationID", INT),
        ("SR_Flag", INT),
        ("Affiliated_base_number", TEXT),
    ),
    pickup_column="pickup_datetime",
    dropoff_column="dropoff_datetime",
    identity_columns=(
        "dispatching_base_num",
        "pickup_datetime",
        "dropoff_datetime",
        "PULocationID",
        "DOLocationID",
        "Affiliated_base_number",
    ),
    first_published=date(2015, 1, 1),
    last_published=date(2024, 5, 1),
    description="For-hire vehicle trips (bases other than the high-volume services); no fares.",
    eras=FHV_ERAS,
    first_month=date(2015, 1, 1),
    file_extension="parquet",
)

# High-volume for-hire services (Uber, Lyft, Via, Juno). A trip is identified by the service, its
# base, its request, pickup and dropoff times, zones, miles and base fare: the request time
# separates two riders picked up together, the fare and miles two trips of the same second.
FHVHV = DatasetSpec(
    name="fhvhv",
    release_tag="fhvhv",
    columns=_cols(
        ("hvfhs_license_num", TEXT),
        ("dispatching_base_num", TEXT),
        ("originating_base_num", TEXT),
        ("request_datetime", TIME),
        ("on_scene_datetime", TIME),
        ("pickup_datetime", TIME),
        ("dropoff_datetime", TIME),
        ("PULocationID", INT),
        ("DOLocationID", INT),
        ("trip_miles", DEC),
        ("trip_time", INT),
        ("base_passenger_fare", DEC),
        ("tolls", DEC),
        ("bcf", DEC),
        ("sales_tax", DEC),
        ("congestion_surcharge", DEC),
        ("airport_fee", DEC),
        ("tips", DEC),
        ("driver_pay", DEC),
        ("shared_request_flag", TEXT),
        ("shared_match_flag", TEXT),
        ("access_a_ride_flag", TEXT),
        ("wav_request_flag", TEXT),
        ("wav_match_flag", TEXT),
        ("cbd_congestion_fee", DEC),
    ),
    pickup_column="pickup_datetime",
    dropoff_column="dropoff_datetime",
    identity_columns=(
        "hvfhs_license_num",
        "dispatching_base_num",
        "request_datetime",
        "pickup_datetime",
        "dropoff_datetime",
        "PULocationID",
        "DOLocationID",
        "trip_miles",
        "base_passenger_fare",
    ),
    first_published=date(2019, 2, 1),
    last_published=date(2024, 5, 1),
    description="High-volume for-hire trips (Uber, Lyft, Via, Juno).",
    eras=FHVHV_ERAS,
    first_month=date(2019, 2, 1),
    file_extension="parquet",
)

# Every dataset, with the schema of its final table (the TLC's releases hold all four).
ALL_DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (YELLOW, GREEN, FHV, FHVHV)}
# The datasets of the course's CSV backup (yellow and green), as it serves them.
DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (YELLOW, GREEN)}

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
