"""The renderer of each column of a generated CSV month, in file order: money, integers, distance,
lookups (flags, FHV bases), the pickup and dropoff times, and empty columns."""

from __future__ import annotations

from taxi_platform.datasets import ColumnType, DatasetSpec
from taxi_platform.sample import _render as render


def value_field(name: str) -> render.Field | None:
    """The renderer of a column by its (case-insensitive) name; None if the name is unknown."""
    money = {
        "fare_amount": "fare",
        "extra": "extra",
        "mta_tax": "mta",
        "tip_amount": "tip",
        "tolls_amount": "tolls",
        "improvement_surcharge": "improvement",
        "total_amount": "total",
        "congestion_surcharge": "congestion",
    }
    ints = {
        "vendorid": "vendor",
        "passenger_count": "passengers",
        "ratecodeid": "ratecode",
        "pulocationid": "pu",
        "dolocationid": "do",
        "payment_type": "payment",
        "trip_type": "trip_type",
    }
    key = name.lower()
    if key in money:
        return render.money_field(money[key])
    if key in ints:
        return render.int_field(ints[key])
    if key == "trip_distance":
        return render.distance_field("distance")
    if key == "store_and_fwd_flag":
        return render.LookupField("store_fwd", render.table(["N", "Y"]))
    if key in ("dispatching_base_num", "affiliated_base_number"):  # FHV bases: B00001 ...
        return render.LookupField("base", render.table([f"B{i:05d}" for i in range(3600)]))
    if key in ("ehail_fee", "sr_flag"):  # empty all through the published files
        return render.EmptyField()
    return None


def csv_fields(
    spec: DatasetSpec, congestion: bool, days: render.DayTable, *, attributed: bool
) -> list[render.Field]:
    """One renderer per spec column, in file order."""
    fields: list[render.Field] = []
    for column in (spec.column(name) for name in spec.csv_columns):
        field: render.Field | None
        if not attributed and column.name in spec.unattributed_columns:
            field = render.EmptyField()
        elif column.name == spec.pickup_column:
            field = render.DateTimeField("pickup", days)
        elif column.name == spec.dropoff_column:
            field = render.DateTimeField("dropoff", days)
        elif column.name.lower() == "congestion_surcharge" and not congestion:
            field = render.EmptyField()
        else:
            field = value_field(column.name)
        if field is None:
            # Unknown column of a future spec: a time if it is one, else NULL.
            is_time = column.type is ColumnType.TIMESTAMP
            field = render.DateTimeField("pickup", days) if is_time else render.EmptyField()
        fields.append(field)
    return fields
