"""The warehouse interface the trip assets use; PostgreSQL now, BigQuery implements the same."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import NamedTuple

import dagster as dg

from taxi_platform.datasets import DatasetSpec, ReferenceSpec
from taxi_platform.lake.handles import LakeFile

Log = Callable[[str], None]


class WarehouseError(RuntimeError):
    """A load or query failed; the message is safe to show (secrets masked)."""


class BadInputError(WarehouseError):
    """The file's content was refused (bad value, missing field): names the file and line."""


class ConnectionLostError(WarehouseError):
    """The database connection dropped mid-operation; nothing was committed."""


@dataclass(frozen=True)
class StagingResult:
    table: str
    rows: int  # rows in the staging table
    seconds: float
    # BigQuery: bytes processed / billed by the operation's jobs (None where not reported).
    bytes_processed: int | None = None
    bytes_billed: int | None = None
    # Data rows of the file, when staging dropped its in-file duplicates (PostgreSQL); None: all staged.
    rows_read: int | None = None
    sha256: str | None = None  # of the file staged, where the load computes it (PostgreSQL)
    # Parquet months: the schema era the file matched and the fingerprint of its schema.
    schema_era: str | None = None
    schema_fingerprint: str | None = None


@dataclass(frozen=True)
class ReplaceResult:
    table: str
    staged_rows: int
    final_rows: int
    previous_rows: int  # rows this month had before the replace (0 when new)
    seconds: float
    # BigQuery: bytes processed / billed by the operation's jobs (None where not reported).
    bytes_processed: int | None = None
    bytes_billed: int | None = None
    # BigQuery: the dry run's estimate of the bytes the replace's DML processes (None elsewhere).
    bytes_estimated: int | None = None
    # The new rows' id profile when the replace established it in its own transaction (PostgreSQL);
    # None: the checks query the table (`id_profile`).
    ids: IdProfile | None = None
    # The new rows' pickup profile, when the load counted it (PostgreSQL's engine); None: the
    # checks query the table (`pickup_profile`).
    pickups: PickupProfile | None = None
    sha256: str | None = None  # of the file whose rows the month now holds, where known
    staged_by_run: str | None = None  # the run that staged them, where known

    @property
    def duplicates_dropped(self) -> int:
        return self.staged_rows - self.final_rows


@dataclass(frozen=True)
class ReferenceResult:
    table: str
    rows: int
    previous_rows: int
    seconds: float
    # BigQuery: bytes processed / billed by the operation's jobs (None where not reported).
    bytes_processed: int | None = None
    bytes_billed: int | None = None


@dataclass(frozen=True)
class IdSummary:
    """A month's trips as two numbers both engines compute alike: the row count, and the sum of
    the first 60 bits of each unique_row_id (hex MD5): equal sets of ids give equal sums."""

    rows: int
    id_sum: int


@dataclass(frozen=True)
class IdProfile:
    rows: int
    distinct_ids: int

    @property
    def duplicate_ids(self) -> int:
        return self.rows - self.distinct_ids


@dataclass(frozen=True)
class PickupProfile:
    rows: int
    in_month_rows: int  # rows whose pickup lies in the month

    @property
    def in_month_share(self) -> float:
        return self.in_month_rows / self.rows if self.rows else 0.0


class ZoneRevenue(NamedTuple):
    """One row of the demo's report: a pickup zone's revenue and trips for one service over the months."""

    zone: str | None
    borough: str | None
    service_type: str
    revenue: Decimal
    trips: int


# The dbt mart the report reads: revenue per pickup zone, month and service (dbt_project/models).
ZONE_REVENUE_MODEL = "dm_monthly_zone_revenue"


class TripWarehouse(dg.ConfigurableResource, ABC):
    """Per-month staging, atomic per-month replace of the final table, and the check queries."""

    @abstractmethod
    def final_table(self, spec: DatasetSpec) -> str:
        """Fully qualified name of `<colour>_tripdata`, for metadata."""

    @abstractmethod
    def load_staging(
        self, spec: DatasetSpec, month: date, lake_file: LakeFile, log: Log, run_id: str = ""
    ) -> StagingResult:
        """Replace the month's staging table with the file's rows, ids and file name computed in
        the load; `run_id` tags what this run staged."""

    @abstractmethod
    def replace_month(
        self, spec: DatasetSpec, month: date, log: Log, run_id: str = "", staged_sha256: str | None = None
    ) -> ReplaceResult:
        """Replace exactly that month's rows of the final table with the distinct staged trips,
        atomically; `run_id`: the run whose staging this replace follows; `staged_sha256`: the
        file that run staged (where known), so rows staged since from another file are refused."""

    @abstractmethod
    def id_profile(self, spec: DatasetSpec, month: date) -> IdProfile:
        """Rows and distinct trip ids of the month in the final table."""

    @abstractmethod
    def id_summary(self, spec: DatasetSpec, month: date) -> IdSummary | None:
        """The month's rows and the sum of its ids' first 60 bits (None: no final table yet):
        what another warehouse compares with its own (the `agrees_with_other_target` check)."""

    @abstractmethod
    def pickup_profile(self, spec: DatasetSpec, month: date) -> PickupProfile:
        """Rows, and rows whose pickup lies in the month, of the month in the final table."""

    @abstractmethod
    def load_reference(self, ref: ReferenceSpec, lake_file: LakeFile, log: Log) -> ReferenceResult:
        """Replace a reference table (zones) with the file's rows, atomically."""

    @abstractmethod
    def dbt_env(self) -> dict[str, str]:
        """Environment variables that point the dbt project's profile at this warehouse."""

    @abstractmethod
    def dbt_model_figures(
        self, model: str, sums: Sequence[str], month_column: str | None = None, months: Sequence[date] = ()
    ) -> dict[date | None, tuple]:
        """(count(*), sum(column) for each of `sums`) of a model the dbt project built: per month
        of `months` present in it, or for the whole table (key None) without a `month_column`.
        For the metadata the UI plots per partition. Identifiers are validated."""

    @abstractmethod
    def top_pickup_zones(self, months: Sequence[date], limit: int = 10) -> list[ZoneRevenue]:
        """The `limit` (zone, service) pairs with the most revenue over `months`, highest first,
        summed from the dbt mart ZONE_REVENUE_MODEL in the dbt schema/dataset: the demo's report."""

    @abstractmethod
    def ensure_trip_tables(self, specs: Sequence[DatasetSpec]) -> None:
        """Create the final tables that do not exist yet, empty (the dbt models read all four,
        whichever datasets the source holds)."""

    def dbt_build_lock(self) -> AbstractContextManager:
        """Held around a dbt build: two builds must not race to create an incremental model's
        table (one month's rows would be lost). No lock where the warehouse has none."""
        return nullcontext()


# A file whose pickups mostly fall outside its month is another month's file (or a broken one):
# it is refused before any table changes. Real months keep well over 99 % in their month; the
# non-blocking `pickups_in_month` check (TAXI_MIN_IN_MONTH_SHARE) watches the finer threshold.
MIN_IN_MONTH_SHARE_TO_LOAD = 0.5


def refuse_wrong_month(file_name: str, month: date, rows: int, in_month: int | None) -> None:
    """Raise BadInputError when fewer than half of a file's rows were picked up in its month."""
    if in_month is None or rows == 0 or in_month >= rows * MIN_IN_MONTH_SHARE_TO_LOAD:
        return
    raise BadInputError(
        f"{file_name}: only {in_month:,} of its {rows:,} trips ({in_month / rows:.1%}) were picked "
        f"up in {month:%Y-%m}: is it another month's file? Refused (a month's file needs at least "
        f"{MIN_IN_MONTH_SHARE_TO_LOAD:.0%} of its pickups in its month); the final table was not changed"
    )


def cost_metadata(result: StagingResult | ReplaceResult | ReferenceResult) -> dict[str, int]:
    """`bytes_processed` / `bytes_billed` asset metadata, where the warehouse reports them."""
    return {
        name: value
        for name, value in (
            ("bytes_processed", result.bytes_processed),
            ("bytes_billed", result.bytes_billed),
            ("bytes_estimated", getattr(result, "bytes_estimated", None)),
        )
        if value is not None
    }
