"""The TLC's Parquet schema eras, as data: which columns a month's file holds, with the physical
types the TLC wrote, and where each lands in the dataset's one warehouse schema.

A file belongs to the era whose column names it has (any order; `ignored` columns may be present
or not); when two eras share the names (green A and B differ in types only) the one whose types
match is named, else the first. Types need not match: every value is cast to its canonical type by
the rules of `engine/parquet_select.py`, which refuse what does not fit. Facts:
`../shared/reference/TLC_PARQUET.md` and the real files of `../shared/data/real_parquet/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class FileColumn:
    name: str  # as the file spells it
    arrow_type: str  # as the TLC wrote it (pyarrow's spelling), for the generator and the docs
    column: str | None = None  # the canonical column it fills (None: the same name)
    # Text codes -> canonical values (upper-cased, trimmed; a code not listed is refused).
    value_map: tuple[tuple[str, object], ...] = ()
    # A canonical column that also keeps the raw text (2009's vendor_name beside its VendorID).
    raw_column: str | None = None

    @property
    def target(self) -> str:
        return self.column or self.name


@dataclass(frozen=True)
class SchemaEra:
    name: str  # "yellow-2011": the dataset and the first month it describes
    first_month: date
    columns: tuple[FileColumn, ...]  # in file order
    ignored: tuple[str, ...] = ()  # written by some months only (a pandas index): dropped
    # Months of the era published with other physical types (documentation and the generator):
    # (first month, {column: arrow type}).
    type_changes: tuple[tuple[date, tuple[tuple[str, str], ...]], ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def arrow_types(self, month: date) -> dict[str, str]:
        """The physical type of each column in the file of `month`."""
        types = {c.name: c.arrow_type for c in self.columns}
        for since, changes in self.type_changes:
            if month >= since:
                types.update(dict(changes))
        return types


def _cols(*specs: tuple) -> tuple[FileColumn, ...]:
    return tuple(FileColumn(*spec) for spec in specs)


# 2009-2010: vendors as codes. The data dictionary numbers CMT 1 and VeriFone (VTS) 2; DDS
# (Digital Dispatch Systems) has no VendorID: NULL, its code kept in vendor_name.
VENDOR_CODES = (("CMT", 1), ("VTS", 2), ("DDS", None))
# 2009-2010 payment types as words or codes -> the dictionary's numbers.
PAYMENT_CODES = (
    ("CREDIT", 1),
    ("CRE", 1),
    ("CRD", 1),
    ("CASH", 2),
    ("CAS", 2),
    ("CSH", 2),
    ("NO CHARGE", 3),
    ("NOC", 3),
    ("DISPUTE", 4),
    ("DIS", 4),
    ("UNK", 5),
    ("NA", 5),
)
# 2009's store_and_forward is a number (0/1, mostly null); later files say N / Y.
FLAG_CODES = (("0", "N"), ("0.0", "N"), ("1", "Y"), ("1.0", "Y"), ("N", "N"), ("Y", "Y"))

_YELLOW_2011 = (
    ("VendorID", "int64"),
    ("tpep_pickup_datetime", "timestamp[us]"),
    ("tpep_dropoff_datetime", "timestamp[us]"),
    ("passenger_count", "int64"),
    ("trip_distance", "double"),
    ("RatecodeID", "int64"),
    ("store_and_fwd_flag", "string"),
    ("PULocationID", "int64"),
    ("DOLocationID", "int64"),
    ("payment_type", "int64"),
    ("fare_amount", "double"),
    ("extra", "double"),
    ("mta_tax", "double"),
    ("tip_amount", "double"),
    ("tolls_amount", "double"),
    ("improvement_surcharge", "double"),
    ("total_amount", "double"),
    ("congestion_surcharge", "double"),
)
_YELLOW_2023_TYPES = (
    ("VendorID", "int32"),
    ("PULocationID", "int32"),
    ("DOLocationID", "int32"),
    ("passenger_count", "int64"),
    ("RatecodeID", "int64"),
    ("store_and_fwd_flag", "large_string"),
)

YELLOW_ERAS = (
    SchemaEra(
        "yellow-2009",
        date(2009, 1, 1),
        _cols(
            ("vendor_name", "string", "VendorID", VENDOR_CODES, "vendor_name"),
            ("Trip_Pickup_DateTime", "string", "tpep_pickup_datetime"),
            ("Trip_Dropoff_DateTime", "string", "tpep_dropoff_datetime"),
            ("Passenger_Count", "int64", "passenger_count"),
            ("Trip_Distance", "double", "trip_distance"),
            ("Start_Lon", "double", "pickup_longitude"),
            ("Start_Lat", "double", "pickup_latitude"),
            ("Rate_Code", "double", "RatecodeID"),
            ("store_and_forward", "double", "store_and_fwd_flag", FLAG_CODES),
            ("End_Lon", "double", "dropoff_longitude"),
            ("End_Lat", "double", "dropoff_latitude"),
            ("Payment_Type", "string", "payment_type", PAYMENT_CODES),
            ("Fare_Amt", "double", "fare_amount"),
            ("surcharge", "double", "extra"),
            ("mta_tax", "double"),
            ("Tip_Amt", "double", "tip_amount"),
            ("Tolls_Amt", "double", "tolls_amount"),
            ("Total_Amt", "double", "total_amount"),
        ),
    ),
    SchemaEra(
        "yellow-2010",
        date(2010, 1, 1),
        _cols(
            ("vendor_id", "string", "VendorID", VENDOR_CODES, "vendor_name"),
            ("pickup_datetime", "string", "tpep_pickup_datetime"),
            ("dropoff_datetime", "string", "tpep_dropoff_datetime"),
            ("passenger_count", "int64"),
            ("trip_distance", "double"),
            ("pickup_longitude", "double"),
            ("pickup_latitude", "double"),
            ("rate_code", "int64", "RatecodeID"),
            ("store_and_fwd_flag", "string", None, FLAG_CODES),
            ("dropoff_longitude", "double"),
            ("dropoff_latitude", "double"),
            ("payment_type", "string", None, PAYMENT_CODES),
            ("fare_amount", "double"),
            ("surcharge", "double", "extra"),
            ("mta_tax", "double"),
            ("tip_amount", "double"),
            ("tolls_amount", "double"),
            ("total_amount", "double"),
        ),
        ignored=("__index_level_0__",),
    ),
    SchemaEra(
        "yellow-2011",
        date(2011, 1, 1),
        _cols(*_YELLOW_2011, ("airport_fee", "double")),
        # From 2018-07 the counts are doubles; all-null fee columns come as int32 or null.
        type_changes=((date(2018, 7, 1), (("passenger_count", "double"), ("RatecodeID", "double"))),),
    ),
    SchemaEra(
        "yellow-2023",
        date(2023, 2, 1),
        _cols(*_YELLOW_2011, ("Airport_fee", "double", "airport_fee")),
        type_changes=((date(2023, 2, 1), _YELLOW_2023_TYPES),),
    ),
    SchemaEra(
        "yellow-2025",
        date(2025, 1, 1),
        _cols(*_YELLOW_2011, ("Airport_fee", "double", "airport_fee"), ("cbd_congestion_fee", "double")),
        type_changes=((date(2025, 1, 1), _YELLOW_2023_TYPES),),
    ),
)

_GREEN_A = (
    ("VendorID", "int64"),
    ("lpep_pickup_datetime", "timestamp[us]"),
    ("lpep_dropoff_datetime", "timestamp[us]"),
    ("store_and_fwd_flag", "string"),
    ("RatecodeID", "double"),
    ("PULocationID", "int64"),
    ("DOLocationID", "int64"),
    ("passenger_count", "double"),
    ("trip_distance", "double"),
    ("fare_amount", "double"),
    ("extra", "double"),
    ("mta_tax", "double"),
    ("tip_amount", "double"),
    ("tolls_amount", "double"),
    ("ehail_fee", "null"),
    ("improvement_surcharge", "double"),
    ("total_amount", "double"),
    ("payment_type", "double"),
    ("trip_type", "double"),
    ("congestion_surcharge", "double"),
)
_GREEN_B_TYPES = {
    "VendorID": "int32",
    "PULocationID": "int32",
    "DOLocationID": "int32",
    "RatecodeID": "int64",
    "passenger_count": "int64",
    "payment_type": "int64",
    "trip_type": "int64",
    "store_and_fwd_flag": "large_string",
    "ehail_fee": "double",
}
_GREEN_B = tuple((name, _GREEN_B_TYPES.get(name, type_)) for name, type_ in _GREEN_A)

GREEN_ERAS = (
    SchemaEra("green-2014", date(2014, 1, 1), _cols(*_GREEN_A)),
    SchemaEra("green-2023", date(2023, 2, 1), _cols(*_GREEN_B)),
    SchemaEra("green-2025", date(2025, 1, 1), _cols(*_GREEN_B, ("cbd_congestion_fee", "double"))),
)

FHV_ERAS = (
    SchemaEra(
        "fhv-2015",
        date(2015, 1, 1),
        _cols(
            ("dispatching_base_num", "string"),
            ("pickup_datetime", "timestamp[us]"),
            ("dropOff_datetime", "timestamp[us]", "dropoff_datetime"),
            ("PUlocationID", "double", "PULocationID"),
            ("DOlocationID", "double", "DOLocationID"),
            ("SR_Flag", "double"),
            ("Affiliated_base_number", "string"),
        ),
    ),
)

_FHVHV = (
    ("hvfhs_license_num", "string"),
    ("dispatching_base_num", "string"),
    ("originating_base_num", "string"),
    ("request_datetime", "timestamp[us]"),
    ("on_scene_datetime", "timestamp[us]"),
    ("pickup_datetime", "timestamp[us]"),
    ("dropoff_datetime", "timestamp[us]"),
    ("PULocationID", "int64"),
    ("DOLocationID", "int64"),
    ("trip_miles", "double"),
    ("trip_time", "int64"),
    ("base_passenger_fare", "double"),
    ("tolls", "double"),
    ("bcf", "double"),
    ("sales_tax", "double"),
    ("congestion_surcharge", "double"),
    ("airport_fee", "double"),
    ("tips", "double"),
    ("driver_pay", "double"),
    ("shared_request_flag", "string"),
    ("shared_match_flag", "string"),
    ("access_a_ride_flag", "string"),
    ("wav_request_flag", "string"),
    ("wav_match_flag", "string"),
)

FHVHV_ERAS = (
    SchemaEra("fhvhv-2019", date(2019, 2, 1), _cols(*_FHVHV)),
    SchemaEra("fhvhv-2025", date(2025, 1, 1), _cols(*_FHVHV, ("cbd_congestion_fee", "double"))),
)


def era_of_month(eras: tuple[SchemaEra, ...], month: date) -> SchemaEra:
    """The era the TLC published `month` in (the latest that began by then)."""
    found = [era for era in eras if era.first_month <= month]
    if not found:
        raise ValueError(f"no era begins by {month:%Y-%m} (the first begins {eras[0].first_month:%Y-%m})")
    return max(found, key=lambda era: era.first_month)
