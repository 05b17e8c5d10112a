"""The dataset spec table: the single source of truth for every trip dataset.

Every asset, table, check and sample file is derived from these entries. A dataset's columns are
written once, by name, with one type per name (`_TYPE_OF`). The sources of the files and the specs
as each serves them (file format, the months known to be published): `source_specs.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import Enum
from functools import partial

from taxi_platform.eras import FHV_ERAS, FHVHV_ERAS, GREEN_ERAS, YELLOW_ERAS, SchemaEra


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


def _names(text: str) -> tuple[str, ...]:
    """Column names written one after the other, separated by spaces."""
    return tuple(text.split())


# Short names for the column types below.
INT, TIME, DEC, TEXT = ColumnType.INTEGER, ColumnType.TIMESTAMP, ColumnType.DECIMAL, ColumnType.TEXT
DOUBLE = ColumnType.DOUBLE

# The type of every trip column, whichever dataset has it (a name means the same in all of them).
_TYPE_OF: dict[str, ColumnType] = {
    **dict.fromkeys(
        _names("VendorID passenger_count RatecodeID PULocationID DOLocationID payment_type trip_type")
        + _names("SR_Flag trip_time"),
        INT,
    ),
    **dict.fromkeys(
        _names("tpep_pickup_datetime tpep_dropoff_datetime lpep_pickup_datetime lpep_dropoff_datetime")
        + _names("pickup_datetime dropoff_datetime request_datetime on_scene_datetime"),
        TIME,
    ),
    **dict.fromkeys(
        _names("trip_distance fare_amount extra mta_tax tip_amount tolls_amount improvement_surcharge")
        + _names("total_amount congestion_surcharge airport_fee cbd_congestion_fee ehail_fee trip_miles")
        + _names("base_passenger_fare tolls bcf sales_tax tips driver_pay"),
        DEC,
    ),
    **dict.fromkeys(
        _names("store_and_fwd_flag vendor_name dispatching_base_num Affiliated_base_number")
        + _names("hvfhs_license_num originating_base_num shared_request_flag shared_match_flag")
        + _names("access_a_ride_flag wav_request_flag wav_match_flag"),
        TEXT,
    ),
    **dict.fromkeys(_names("pickup_longitude pickup_latitude dropoff_longitude dropoff_latitude"), DOUBLE),
}


def _typed(names: tuple[str, ...]) -> tuple[Column, ...]:
    return tuple(Column(name, _TYPE_OF[name]) for name in names)


def _cols(*pairs: tuple[str, ColumnType]) -> tuple[Column, ...]:
    return tuple(Column(n, t) for n, t in pairs)


# The columns of the course's CSV files, in file order; the warehouse schema starts with them.
_YELLOW_CSV = _names(
    "VendorID tpep_pickup_datetime tpep_dropoff_datetime passenger_count trip_distance RatecodeID "
    "store_and_fwd_flag PULocationID DOLocationID payment_type fare_amount extra mta_tax tip_amount "
    "tolls_amount improvement_surcharge total_amount congestion_surcharge"
)
_GREEN_CSV = _names(
    "VendorID lpep_pickup_datetime lpep_dropoff_datetime store_and_fwd_flag RatecodeID PULocationID "
    "DOLocationID passenger_count trip_distance fare_amount extra mta_tax tip_amount tolls_amount "
    "ehail_fee improvement_surcharge total_amount payment_type trip_type congestion_surcharge"
)
# Street-hail taxis (yellow `tpep_`, green `lpep_`): a trip is identified by its vendor, times,
# zones, fare and distance; the block of 2020+ rows not attributed to a vendor leaves these empty.
_STREET_HAIL_UNATTRIBUTED = _names("VendorID passenger_count RatecodeID store_and_fwd_flag payment_type")


def _street_hail_identity(prefix: str) -> tuple[str, ...]:
    return _names(
        f"VendorID {prefix}_pickup_datetime {prefix}_dropoff_datetime PULocationID DOLocationID "
        "fare_amount trip_distance"
    )


YELLOW = DatasetSpec(
    name="yellow",
    release_tag="yellow",
    # 2009-2010: the vendor's code, and coordinates instead of zones.
    columns=_typed(
        _YELLOW_CSV
        + _names("airport_fee cbd_congestion_fee vendor_name")
        + _names("pickup_longitude pickup_latitude dropoff_longitude dropoff_latitude")
    ),
    pickup_column="tpep_pickup_datetime",
    dropoff_column="tpep_dropoff_datetime",
    identity_columns=_street_hail_identity("tpep"),
    first_published=date(2019, 1, 1),
    last_published=date(2021, 7, 1),
    description="Yellow taxi trips (street hails, Manhattan and airports).",
    unattributed_columns=_STREET_HAIL_UNATTRIBUTED,
    csv_columns=_YELLOW_CSV,
    eras=YELLOW_ERAS,
    first_month=date(2009, 1, 1),
)

GREEN = DatasetSpec(
    name="green",
    release_tag="green",
    columns=_typed(_GREEN_CSV + ("cbd_congestion_fee",)),
    pickup_column="lpep_pickup_datetime",
    dropoff_column="lpep_dropoff_datetime",
    identity_columns=_street_hail_identity("lpep"),
    first_published=date(2019, 1, 1),
    last_published=date(2021, 7, 1),
    description="Green taxi trips (boro taxis, outside central Manhattan).",
    unattributed_columns=_STREET_HAIL_UNATTRIBUTED + ("trip_type",),
    csv_columns=_GREEN_CSV,
    eras=GREEN_ERAS,
    first_month=date(2014, 1, 1),
)

# What the for-hire datasets share: their time columns' names, the TLC's Parquet files only, and
# the latest month known to be published when the table was written.
_for_hire_spec = partial(
    DatasetSpec,
    pickup_column="pickup_datetime",
    dropoff_column="dropoff_datetime",
    last_published=date(2024, 5, 1),
    file_extension="parquet",
)

# For-hire vehicles (dispatched by bases): no fares. A trip is identified by its base, times and
# zones (and its affiliated base: two bases may dispatch at the same second between two zones).
FHV = _for_hire_spec(
    name="fhv",
    release_tag="fhv",
    columns=_typed(
        _names(
            "dispatching_base_num pickup_datetime dropoff_datetime PULocationID DOLocationID SR_Flag "
            "Affiliated_base_number"
        )
    ),
    identity_columns=_names(
        "dispatching_base_num pickup_datetime dropoff_datetime PULocationID DOLocationID "
        "Affiliated_base_number"
    ),
    first_published=date(2015, 1, 1),
    description="For-hire vehicle trips (bases other than the high-volume services); no fares.",
    eras=FHV_ERAS,
    first_month=date(2015, 1, 1),
)

# High-volume for-hire services (Uber, Lyft, Via, Juno). A trip is identified by the service, its
# base, its request, pickup and dropoff times, zones, miles and base fare: the request time
# separates two riders picked up together, the fare and miles two trips of the same second.
FHVHV = _for_hire_spec(
    name="fhvhv",
    release_tag="fhvhv",
    columns=_typed(
        _names(
            "hvfhs_license_num dispatching_base_num originating_base_num request_datetime "
            "on_scene_datetime pickup_datetime dropoff_datetime PULocationID DOLocationID trip_miles "
            "trip_time base_passenger_fare tolls bcf sales_tax congestion_surcharge airport_fee tips "
            "driver_pay shared_request_flag shared_match_flag access_a_ride_flag wav_request_flag "
            "wav_match_flag cbd_congestion_fee"
        )
    ),
    identity_columns=_names(
        "hvfhs_license_num dispatching_base_num request_datetime pickup_datetime dropoff_datetime "
        "PULocationID DOLocationID trip_miles base_passenger_fare"
    ),
    first_published=date(2019, 2, 1),
    description="High-volume for-hire trips (Uber, Lyft, Via, Juno).",
    eras=FHVHV_ERAS,
    first_month=date(2019, 2, 1),
)

# Every dataset, with the schema of its final table (the TLC's releases hold all four).
ALL_DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (YELLOW, GREEN, FHV, FHVHV)}
# The datasets of the course's CSV backup (yellow and green), as it serves them.
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
