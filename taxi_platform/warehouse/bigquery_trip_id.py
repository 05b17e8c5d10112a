"""The trip id (`trip_id.py`'s one definition) rendered in GoogleSQL, for the BigQuery warehouse."""

from __future__ import annotations

from taxi_platform.datasets import ColumnType, DatasetSpec
from taxi_platform.trip_id import NULL_TEXT, SEPARATOR
from taxi_platform.warehouse.sql import bq_ident

# BigQuery: CAST(NUMERIC AS STRING) already gives the shortest form on BigQuery ('1.5'), but not
# on every engine that speaks its dialect (the emulator pads to the column's scale: '1.500000000'),
# so trailing fractional zeros are stripped explicitly; the result is the same text on both.
_BQ_DECIMAL_TEXT = (
    "REGEXP_REPLACE(REGEXP_REPLACE(CAST({col} AS STRING), "
    r"r'(\.[0-9]*[1-9])0+$', r'\1'), r'\.0+$', '')"
)


def bigquery_trip_id_sql(spec: DatasetSpec) -> str:
    """The id as a BigQuery (GoogleSQL) expression over the typed columns of a loaded month.

    Timestamps are TIMESTAMP (UTC, as a load job reads zone-less datetimes), so the text is
    formatted in UTC; integers are INT64, decimals NUMERIC.
    """
    parts = []
    for name in spec.identity_columns:
        col = bq_ident(name)  # validated plain name, backquoted
        type_ = spec.column(name).type
        if type_ is ColumnType.TIMESTAMP:
            rendered = f"FORMAT_TIMESTAMP('%Y-%m-%d %H:%M:%S', {col}, 'UTC')"
        elif type_ is ColumnType.DECIMAL:
            rendered = _BQ_DECIMAL_TEXT.format(col=col)
        elif type_ is ColumnType.INTEGER:
            rendered = f"CAST({col} AS STRING)"
        else:
            rendered = col
        parts.append(f"COALESCE({rendered}, '{NULL_TEXT}')")
    return "TO_HEX(MD5(CONCAT(" + f", '{SEPARATOR}', ".join(parts) + ")))"
