"""Data-quality checks on each final trip table, evaluated per month right after the month loads.

They are declared on the final asset (`check_specs`) and run inside its materialization, so each
result belongs to the month just loaded; the blocking ones stop downstream assets (dbt) on failure.
A range run evaluates them per month and reports one result per check covering its months.
"""

from datetime import date
from typing import Mapping

import dagster as dg

from taxi_platform.datasets import DatasetSpec
from taxi_platform.warehouse.base import IdProfile, PickupProfile, TripWarehouse

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
                         min_in_month_share: float, ids: IdProfile | None = None,
                         pickups: PickupProfile | None = None) -> list[dg.AssetCheckResult]:
    """`ids`, `pickups`: the profiles the load established from the rows it wrote, if it did
    (saves scanning millions of rows again); otherwise the table is queried."""
    ids = ids or warehouse.id_profile(spec, month)
    pickups = pickups or warehouse.pickup_profile(spec, month)
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


def merge_check_results(by_month: Mapping[str, list[dg.AssetCheckResult]]) -> list[dg.AssetCheckResult]:
    """One result per check for the run (Dagster takes one per step): a one-month run's result as
    it is; a range run's passes only if every month passed, with each month's metadata under it."""
    if len(by_month) <= 1:
        return next(iter(by_month.values()), [])
    merged = []
    for name in (UNIQUE_IDS, HAS_ROWS, PICKUPS_IN_MONTH):
        results = {key: next(r for r in month_results if r.check_name == name)
                   for key, month_results in by_month.items()}
        failing = [key[:7] for key, r in results.items() if not r.passed]
        merged.append(dg.AssetCheckResult(
            check_name=name, passed=not failing,
            description=f"failed for {', '.join(failing)}" if failing else None,
            metadata={
                "months": len(results),
                "failing_months": ", ".join(failing) or "none",
                "by_month": dg.MetadataValue.json(
                    {key[:7]: {k: v.value for k, v in r.metadata.items()} for key, r in results.items()}),
            },
        ))
    return merged
