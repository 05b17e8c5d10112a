"""The trip id (`unique_row_id`): ONE definition, as data, rendered per engine (DuckDB for the
PostgreSQL load: `engine/trip_ids.py`; GoogleSQL for BigQuery: `warehouse/bigquery_trip_id.py`).

    unique_row_id = lower-case hex MD5 of the UTF-8 text
        canon(f1) || '|' || canon(f2) || ... || canon(f7)

over the dataset's identity fields (VendorID, pickup, dropoff, PULocationID, DOLocationID,
fare_amount, trip_distance), where canon() is the canonical text of the *parsed* value:

    NULL       -> ''                      (no field value renders empty: all are numbers or times)
    integer    -> decimal digits          ('1', '264', '-3')
    timestamp  -> 'YYYY-MM-DD HH:MM:SS'   (24-hour clock, no zone, no fraction)
    decimal    -> shortest exact decimal  ('1.5' for 1.50, '7' for 7.00, '0.2' for .20, '-0.5')
    text       -> the text as it is

'|' never occurs in a canonical value, so the concatenation is unambiguous (the reference
pipeline's separator-less concatenation is not). Parsing before rendering makes `.20`, `0.2` and
`0.20` the same trip, on PostgreSQL and BigQuery alike.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from decimal import Decimal

from taxi_platform.datasets import ColumnType, DatasetSpec

SEPARATOR = "|"
NULL_TEXT = ""
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


def canonical_text(value: object, type_: ColumnType) -> str:
    """Reference implementation of canon() for already-parsed Python values."""
    if value is None:
        return NULL_TEXT
    if type_ is ColumnType.INTEGER:
        return str(int(value))  # type: ignore[call-overload]  # an int (or a bool) here
    if type_ is ColumnType.TIMESTAMP:
        assert isinstance(value, datetime)
        return value.strftime(TIMESTAMP_FORMAT)
    if type_ is ColumnType.DECIMAL:
        d = Decimal(value) if not isinstance(value, Decimal) else value  # type: ignore[arg-type]
        if d == 0:
            return "0"
        text = format(d.normalize(), "f")
        return text
    return str(value)


def parse_field(raw: str, type_: ColumnType) -> object:
    """Parse one CSV field the way the warehouse does (empty -> NULL)."""
    if raw == "":
        return None
    if type_ is ColumnType.INTEGER:
        return int(raw)
    if type_ is ColumnType.TIMESTAMP:
        return datetime.strptime(raw, TIMESTAMP_FORMAT)
    if type_ is ColumnType.DECIMAL:
        return Decimal(raw)
    return raw


def trip_id_from_values(spec: DatasetSpec, values: dict[str, object]) -> str:
    text = SEPARATOR.join(
        canonical_text(values[name], spec.column(name).type) for name in spec.identity_columns
    )
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def trip_id_from_csv_row(spec: DatasetSpec, row: list[str]) -> str:
    """The id of one raw CSV row (fields in file order)."""
    index = {name: i for i, name in enumerate(spec.csv_columns)}
    values = {name: parse_field(row[index[name]], spec.column(name).type) for name in spec.identity_columns}
    return trip_id_from_values(spec, values)
