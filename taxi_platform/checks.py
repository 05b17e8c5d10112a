"""Data-quality checks on each final trip table, evaluated per month right after the month loads.

They are declared on the final asset (`check_specs`) and run inside its materialization, so each
result belongs to the month just loaded; the blocking ones stop downstream assets (dbt) on failure.
"""

from datetime import date

import dagster as dg

from taxi_platform.datasets import DatasetSpec
from taxi_platform.warehouse.base import TripWarehouse

UNIQUE_IDS = "unique_row_id_is_unique"
HAS_ROWS = "has_rows"
PICKUPS_IN_MONTH = "pickups_in_month"


def trip_check_specs(asset_key: dg.AssetKey, min_in_month_share: float) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(UNIQUE_IDS, asset=asset_key, blocking=True,
                          description="No unique_row_id appears twice in the month."),
        dg.AssetCheckSpec(HAS_ROWS, asset=asset_key, blocking=True,
                          description="The month holds at least one trip."),
        dg.AssetCheckSpec(
            PICKUPS_IN_MONTH, asset=asset_key,
            description=f"At least {min_in_month_share:.0%} of the month's trips were picked up in "
                        "that month (every file holds a few late-reported trips of earlier months).",
        ),
    ]


def evaluate_trip_checks(spec: DatasetSpec, month: date, warehouse: TripWarehouse,
                         min_in_month_share: float) -> list[dg.AssetCheckResult]:
    ids = warehouse.id_profile(spec, month)
    pickups = warehouse.pickup_profile(spec, month)
    return [
        dg.AssetCheckResult(
            check_name=UNIQUE_IDS, passed=ids.duplicate_ids == 0,
            metadata={"rows": ids.rows, "duplicate_ids": ids.duplicate_ids},
        ),
        dg.AssetCheckResult(check_name=HAS_ROWS, passed=pickups.rows > 0,
                            metadata={"rows": pickups.rows}),
        dg.AssetCheckResult(
            check_name=PICKUPS_IN_MONTH,
            passed=pickups.rows > 0 and pickups.in_month_share >= min_in_month_share,
            metadata={
                "rows": pickups.rows,
                "in_month_rows": pickups.in_month_rows,
                "in_month_share": round(pickups.in_month_share, 6),
                "threshold": min_in_month_share,
            },
        ),
    ]
