"""Data-quality checks on each final trip table, evaluated per month right after the month loads.

They are declared on the final asset (`check_specs`, partitioned like it) and run inside its
materialization, so each result belongs to the month just loaded and is filed under its partition:
one bad month turns that month red, not the asset. A range run files each month's results under
that month's partition. The blocking ones stop downstream assets (dbt) on failure.
"""

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

import dagster as dg

from taxi_platform.datasets import DatasetSpec
from taxi_platform.warehouse.base import IdProfile, IdSummary, PickupProfile, TripWarehouse

UNIQUE_IDS = "unique_row_id_is_unique"
HAS_ROWS = "has_rows"
PICKUPS_IN_MONTH = "pickups_in_month"
ROWS_MATCH_FILE = "rows_match_file"
AGREES_WITH_OTHER_TARGET = "agrees_with_other_target"
# check name -> blocking
BLOCKING = {
    UNIQUE_IDS: True,
    HAS_ROWS: True,
    PICKUPS_IN_MONTH: False,
    ROWS_MATCH_FILE: True,
    AGREES_WITH_OTHER_TARGET: False,
}
# Partitioned checks are "preview" in Dagster 1.13 and the only way to give each month its own
# result; the warning would be printed at every load of the code location, so it is silenced, for
# it alone.
warnings.filterwarnings(
    "ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning
)


def trip_check_specs(
    asset_key: dg.AssetKey,
    min_in_month_share: float,
    partitions_def: dg.PartitionsDefinition,
    other_target: str | None = None,
) -> list[dg.AssetCheckSpec]:
    """Partitioned like the asset: each month's result is that month's, in the UI too.
    `other_target`: the warehouse the month must agree with (TAXI_COMPARE_TARGET), if any."""

    def check(name: str, description: str) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(
            name,
            asset=asset_key,
            blocking=BLOCKING[name],
            partitions_def=partitions_def,
            description=description,
        )

    other = [
        check(
            AGREES_WITH_OTHER_TARGET,
            f"The month holds the same trips as on {other_target} (TAXI_COMPARE_TARGET): the same row "
            "count and the same set of unique_row_id (their summed first 60 bits).",
        )
    ]
    return (other if other_target else []) + [
        check(UNIQUE_IDS, "No unique_row_id appears twice in the month."),
        check(HAS_ROWS, "The month holds at least one trip."),
        check(
            PICKUPS_IN_MONTH,
            f"At least {min_in_month_share:.0%} of the month's trips were picked up in that month "
            "(every file holds a few late-reported trips of earlier months).",
        ),
        check(
            ROWS_MATCH_FILE,
            "Reconciliation: the rows read from the month's file equal the file's own count (its "
            "Parquet footer, or its CSV data lines, counted while it downloaded), and the month's "
            "trips equal those rows minus the duplicates dropped.",
        ),
    ]


@dataclass(frozen=True)
class RowCounts:
    """What the reconciliation compares: the file's own count (the download's inspection), the rows
    the load read from it, the duplicates it dropped, and the trips the table holds."""

    file_rows: int | None  # None: no record of the month's download
    rows_read: int
    duplicates_dropped: int


def reconciliation(month: date, counts: RowCounts | None, table_rows: int) -> dg.AssetCheckResult:
    if counts is None or counts.file_rows is None:
        return dg.AssetCheckResult(
            check_name=ROWS_MATCH_FILE,
            passed=False,
            description="no record of this month's file and load to reconcile: materialize the month",
            metadata={"month": f"{month:%Y-%m}", "rows": table_rows},
        )
    passed = (
        counts.rows_read == counts.file_rows and table_rows == counts.rows_read - counts.duplicates_dropped
    )
    return dg.AssetCheckResult(
        check_name=ROWS_MATCH_FILE,
        passed=passed,
        metadata={
            "month": f"{month:%Y-%m}",
            "file_rows": counts.file_rows,
            "rows_read": counts.rows_read,
            "duplicates_dropped": counts.duplicates_dropped,
            "rows": table_rows,
        },
    )


def agreement(
    month: date, ours: IdSummary | None, theirs: IdSummary | None, other_target: str
) -> dg.AssetCheckResult:
    """The month on this target against the other: equal counts and id sums, or why not."""
    metadata: dict = {"month": f"{month:%Y-%m}", "other_target": other_target}
    if ours is not None:
        metadata.update(rows=ours.rows, id_sum=str(ours.id_sum))
    if theirs is None:
        return dg.AssetCheckResult(
            check_name=AGREES_WITH_OTHER_TARGET,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{month:%Y-%m} is not loaded on {other_target} yet: nothing to compare",
            metadata=metadata,
        )
    metadata.update(other_rows=theirs.rows, other_id_sum=str(theirs.id_sum))
    passed = ours == theirs
    rows = "-" if ours is None else f"{ours.rows:,}"
    return dg.AssetCheckResult(
        check_name=AGREES_WITH_OTHER_TARGET,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{month:%Y-%m}: the same {theirs.rows:,} trips on both targets"
            if passed
            else f"{month:%Y-%m}: {rows} trips here, {theirs.rows:,} on {other_target}"
            + ("" if ours is None or ours.rows != theirs.rows else ", and other ids")
        ),
        metadata=metadata,
    )


def evaluate_trip_checks(
    spec: DatasetSpec,
    month: date,
    warehouse: TripWarehouse,
    min_in_month_share: float,
    ids: IdProfile | None = None,
    pickups: PickupProfile | None = None,
    counts: RowCounts | None = None,
) -> list[dg.AssetCheckResult]:
    """`ids`, `pickups`: the profiles the load established from the rows it wrote, if it did
    (saves scanning millions of rows again); otherwise the table is queried. `counts`: the file's
    rows and the load's, for the reconciliation."""
    ids = ids or warehouse.id_profile(spec, month)
    pickups = pickups or warehouse.pickup_profile(spec, month)
    return [
        dg.AssetCheckResult(
            check_name=UNIQUE_IDS,
            passed=ids.duplicate_ids == 0,
            metadata={"month": f"{month:%Y-%m}", "rows": ids.rows, "duplicate_ids": ids.duplicate_ids},
        ),
        dg.AssetCheckResult(
            check_name=HAS_ROWS,
            passed=pickups.rows > 0,
            metadata={"month": f"{month:%Y-%m}", "rows": pickups.rows},
        ),
        dg.AssetCheckResult(
            check_name=PICKUPS_IN_MONTH,
            passed=pickups.rows > 0 and pickups.in_month_share >= min_in_month_share,
            metadata={
                "month": f"{month:%Y-%m}",
                "rows": pickups.rows,
                "in_month_rows": pickups.in_month_rows,
                "in_month_share": round(pickups.in_month_share, 6),
                "threshold": min_in_month_share,
            },
        ),
        reconciliation(month, counts, ids.rows),
    ]


def named_check(result: dg.AssetCheckResult) -> str:
    """The check's name: every result of ours names its check (an asset may have several)."""
    assert result.check_name is not None
    return result.check_name


def check_evaluation(
    asset_key: dg.AssetKey, result: dg.AssetCheckResult, partition_key: str
) -> dg.AssetCheckEvaluation:
    """One month's result of a range run, filed under that month's partition."""
    check_name = named_check(result)
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=check_name,
        passed=result.passed,
        metadata=result.metadata,
        partition=partition_key,
        description=result.description,
        blocking=BLOCKING[check_name],
        severity=result.severity,
    )


def blocking_failures(by_month: Mapping[str, list[dg.AssetCheckResult]]) -> str:
    """`unique_row_id_is_unique for 2019-02, 2019-05`: the blocking checks that failed, and where."""
    failed: dict[str, list[str]] = {}
    for partition_key, results in sorted(by_month.items()):
        for result in results:
            if not result.passed and BLOCKING[named_check(result)]:
                failed.setdefault(named_check(result), []).append(partition_key[:7])
    return "; ".join(f"{name} for {', '.join(months)}" for name, months in failed.items())
