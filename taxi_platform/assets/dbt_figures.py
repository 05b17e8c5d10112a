"""What a table built by dbt reports: its row count, and trips and revenue per month where the
model has them (counted by the platform's warehouse)."""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg

from taxi_platform.assets.partitioned_runs import run_months
from taxi_platform.warehouse.base import TripWarehouse


@dataclass(frozen=True)
class ModelFigures:
    """What a built table's materialization reports: `dagster/row_count` (of the partition's month
    for a monthly model), and `trips` / `revenue` where the model has them, so the UI plots them
    per month. Counted by the platform's warehouse, not dagster-dbt's `fetch_row_counts()`, which
    reads the relation names of the prepared manifest (another schema than a run's, in the tests)
    and counts whole tables."""

    month_column: str | None = None
    trips_column: str | None = None  # summed; None: a row is a trip
    revenue_column: str | None = None

    def read(
        self, warehouse: TripWarehouse, model: str, months: list[date]
    ) -> dict[date | None, dict[str, Any]]:
        sums = [c for c in (self.trips_column, self.revenue_column) if c]
        found = warehouse.dbt_model_figures(model, sums, self.month_column, months)
        metadata: dict[date | None, dict[str, Any]] = {}
        by_month: list[date | None] = list(months) if self.month_column else [None]
        for month in by_month:
            rows, *values = found.get(month) or (0,) + (0,) * len(sums)
            figures = dict(zip(sums, values))
            entry: dict[str, Any] = {"dagster/row_count": dg.MetadataValue.int(int(rows))}
            if self.month_column:
                trips = figures.get(self.trips_column, rows) if self.trips_column else rows
                entry["trips"] = dg.MetadataValue.int(int(trips or 0))
            if self.revenue_column:
                entry["revenue"] = dg.MetadataValue.float(round(float(figures[self.revenue_column] or 0), 2))
            metadata[month] = entry
        return metadata


# Tables built by dbt and what they report; views (the staging models) report nothing: counting
# one runs its query.
MODEL_FIGURES = {
    "fact_trips": ModelFigures(month_column="source_month", revenue_column="total_amount"),
    "dm_monthly_zone_revenue": ModelFigures(
        month_column="revenue_month",
        trips_column="total_monthly_trips",
        revenue_column="revenue_monthly_total_amount",
    ),
    "fact_fhv_trips": ModelFigures(month_column="source_month", revenue_column="passenger_total_amount"),
    "dm_monthly_zone_trips": ModelFigures(
        month_column="source_month", trips_column="trips", revenue_column="revenue"
    ),
    "dim_zones": ModelFigures(),
    "payment_type_lookup": ModelFigures(),
    "taxi_zone_lookup": ModelFigures(),
    "vendor_lookup": ModelFigures(),
    "hvfhs_license_lookup": ModelFigures(),
}


def with_model_figures(
    context: dg.AssetExecutionContext, events: Iterable[Any], warehouse: TripWarehouse, months: list[date]
) -> Iterator[Any]:
    """Each built table's materialization carries its figures. A range run has one
    materialization for all its months, so there each month's figures are also an observation
    of that month's partition (the UI plots both per partition). Figures that cannot be read are a
    warning, never a failed build: the tables were built."""
    for event in events:
        if isinstance(event, dg.Output):
            key = context.asset_key_for_output(event.output_name)
            figures = MODEL_FIGURES.get(key.path[-1])
            if figures is not None:
                try:
                    per_month = figures.read(warehouse, key.path[-1], months)
                except Exception as exc:  # noqa: BLE001 - any warehouse error: reported, build kept
                    context.log.warning(f"{key.to_user_string()}: its figures could not be read: {exc}")
                    per_month = None
                if per_month is None:
                    pass
                elif figures.month_column is None:
                    event = event.with_metadata({**event.metadata, **per_month[None]})
                elif len(months) == 1:
                    event = event.with_metadata({**event.metadata, **per_month[months[0]]})
                else:
                    for partition_key, month in run_months(context):
                        context.log_event(
                            dg.AssetObservation(
                                asset_key=key, partition=partition_key, metadata=per_month[month]
                            )
                        )
        yield event
