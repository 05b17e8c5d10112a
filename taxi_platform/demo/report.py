"""What the demo prints: the table of the months loaded, the top pickup zones by revenue (read
through the warehouse interface, from the dbt mart), and a failed run's root cause in one line."""

from __future__ import annotations

import re
import sys
from datetime import date

from taxi_platform.warehouse.base import ZONE_REVENUE_MODEL, TripWarehouse


def run_succeeded(result) -> bool:
    """Whether the run succeeded; if not, each failed step's root cause, one line each, the first
    repeated last (the line a person reads)."""
    if result.success:
        return True
    causes = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error.cause is not None:  # Dagster's wrappers first, the real error last
                error = error.cause
            causes.append(f"{event.step_key}: {root_cause_line(error.message, error.cls_name)}")
    print(f"\nrun {result.run_id} failed (all its events: `make dev`, then Runs):", file=sys.stderr)
    for cause in causes:
        print(f"  {cause}", file=sys.stderr)
    print(f"demo failed: {causes[0] if causes else 'the run failed before any step ran'}", file=sys.stderr)
    return False


def root_cause_line(message: str, cls_name: str | None) -> str:
    """The one line of an error a person needs: dbt's own error (`Database Error in model m:
    relation ... does not exist`) rather than dagster-dbt's "The dbt CLI process with command";
    otherwise the first line, without the exception's class path."""
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if re.match(r"(Database|Compilation|Runtime) Error in ", line) and i + 1 < len(lines):
            return f"dbt: {line}: {lines[i + 1]}"
    line = lines[0] if lines else ""
    kind, sep, text = line.partition(": ")  # "package.module.SomeError: the message"
    return text if sep and cls_name and kind.split(".")[-1] == cls_name else line


def print_top_zones(warehouse: TripWarehouse, dbt_schema: str, months: list[date], top: int = 10) -> None:
    """The `top` pickup zones by revenue over `months`, from the dbt mart ZONE_REVENUE_MODEL."""
    rows = warehouse.top_pickup_zones(months, top)
    print(
        f"\nTop {top} pickup zones by revenue, {months[0]:%Y-%m} .. {months[-1]:%Y-%m} "
        f"(dbt model {dbt_schema}.{ZONE_REVENUE_MODEL}):"
    )
    width = max(len(f"{r.zone} ({r.borough})") for r in rows) if rows else 10
    for r in rows:
        print(
            f"  {f'{r.zone} ({r.borough})':<{width}}  {r.service_type:<6}  {r.revenue:>14,.2f}  "
            f"{r.trips:>9,} trips"
        )


def materialization_metadata(result) -> dict:
    out = {}
    for event in result.get_asset_materialization_events():
        m = event.event_specific_data.materialization
        out[m.asset_key] = {k: v.value for k, v in m.metadata.items()}
    return out


def print_load_table(rows: list[tuple]) -> None:
    header = ("dataset", "month", "rows read", "duplicates dropped", "rows in final table", "seconds")
    cells = [header] + [(d, m, f"{r:,}", f"{dup:,}", f"{f:,}", f"{s:.1f}") for d, m, r, dup, f, s in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def fmt(row):  # text columns left-aligned, numbers right-aligned
        return " | ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths)))

    print("\n" + fmt(header))
    print("-+-".join("-" * w for w in widths))
    for row in cells[1:]:
        print(fmt(row))
    print(f"\n{len(rows)} dataset-months loaded in {sum(r[-1] for r in rows):.1f} s")
