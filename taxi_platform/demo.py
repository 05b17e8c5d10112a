"""`taxi-platform demo`: generated months of the chosen source's files, served on 127.0.0.1 as the
source serves them (the TLC's CloudFront layout, or the course's GitHub releases), loaded through
the platform's own assets (zones, trips, dbt) into the configured warehouse, then a summary.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

from taxi_platform.resources import resolved
from taxi_platform.settings import Settings
from taxi_platform.warehouse.embedded import embedded_server


@dataclass(frozen=True)
class DemoMirror:
    """How the demo imitates a source: write its files, serve them, point the settings at them."""

    write: Callable[[Path, argparse.Namespace], None]
    serve: Callable[[Path], contextlib.AbstractContextManager[str]]
    settings: Callable[[Settings, str], Settings]


def _write_tlc(root: Path, args: argparse.Namespace) -> None:
    from taxi_platform.sample.parquet_generator import write_tlc_tree

    write_tlc_tree(root, args.datasets, args.months, rows="real" if args.full else args.rows, seed=args.seed)


@contextlib.contextmanager
def _serve_tlc(root: Path) -> Iterator[str]:
    from taxi_platform.sample.tlc_mirror import serve_tlc_mirror

    with serve_tlc_mirror(root) as mirror:
        yield mirror.url


def _write_course(root: Path, args: argparse.Namespace) -> None:
    from taxi_platform.sample.generator import full_size_rows
    from taxi_platform.sample.mirror import write_mirror
    from taxi_platform.sample.zones import write_mirror_zones

    rows = full_size_rows if args.full else args.rows
    write_mirror(root, args.datasets, args.months, rows=rows, seed=args.seed)
    write_mirror_zones(root)


@contextlib.contextmanager
def _serve_course(root: Path) -> Iterator[str]:
    from taxi_platform.sample.mirror import MirrorServer

    with MirrorServer(root) as mirror:
        yield mirror.base_url


DEMO_MIRRORS = {
    "tlc": DemoMirror(_write_tlc, _serve_tlc, lambda s, url: replace(s, tlc_url=url)),
    "course": DemoMirror(_write_course, _serve_course, lambda s, url: replace(s, source_url=url)),
}


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Generate the months' files, serve them as the chosen source does, load them through the
    platform's assets (zones, trips, dbt), and print what was loaded."""
    import dagster as dg

    from taxi_platform.assets.dbt import DBT_REFERENCE_KEYS
    from taxi_platform.assets.trips import final_key, raw_file_key, staging_key
    from taxi_platform.assets.zones import reference_file_key, reference_table_key
    from taxi_platform.datasets import ZONES
    from taxi_platform.definitions import build_definitions
    from taxi_platform.resources import build_resources

    mirror_root = settings.home / "mirror" / settings.source
    mirror = DEMO_MIRRORS[settings.source]
    print(f"Writing generated release files to {mirror_root} ...", flush=True)
    mirror.write(mirror_root, args)
    # A dataset's months at the source start at its first month (green: 2014-01 at the TLC's).
    loads = [(m, spec) for m in args.months for spec in args.datasets if spec.first_published <= m]

    embedded_was_running = settings.postgres_url is None and embedded_server(settings).is_running()
    os.environ.setdefault("DAGSTER_HOME", str(settings.home / "dagster"))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    dagster_yaml = Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml"
    if not dagster_yaml.exists() or dagster_yaml.stat().st_size == 0:
        # The local instance of `make dev` too (queued runs, the warehouse pool's limit).
        dagster_yaml.write_text((Path(__file__).parent / "instance" / "dagster.yaml").read_text())

    table: list[tuple] = []
    dbt_seconds: list[float] = []
    try:
        with mirror.serve(mirror_root) as base_url:
            # Served over HTTP on 127.0.0.1: the demo exercises the same download path as the source.
            demo_settings = mirror.settings(settings, base_url)
            warehouse = (
                "TAXI_POSTGRES_URL"
                if settings.postgres_url
                else f"embedded PostgreSQL under {settings.embedded_pg_dir}"
            )
            print(f"Serving the mirror at {base_url}; warehouse: {warehouse}", flush=True)
            defs = build_definitions(demo_settings)
            job = defs.resolve_implicit_global_asset_job_def()
            # Dagster's console log (and dbt's, through it) only with --verbose: the demo prints its
            # own progress, and a failure's root cause in one line. Every event stays in the instance.
            quiet = {
                "loggers": {"console": {"config": {"log_level": "DEBUG" if args.verbose else "CRITICAL"}}}
            }
            # dagster-dbt re-emits dbt's log on stdout (for compute-log capture): into a file, unless
            # --verbose, and without colour codes either way.
            os.environ.setdefault("DBT_USE_COLORS", "false")
            dbt_log = settings.home / "demo-dbt.log"

            def run_quietly(**kwargs):
                if args.verbose:
                    return job.execute_in_process(**kwargs)
                with open(dbt_log, "a") as log, contextlib.redirect_stdout(log):
                    return job.execute_in_process(**kwargs)

            with dg.DagsterInstance.get() as instance:
                # Zones and the unpartitioned dbt models first: the monthly dbt models join them.
                reference = [reference_file_key(ZONES), reference_table_key(ZONES), *DBT_REFERENCE_KEYS]
                if not _succeeded(
                    run_quietly(
                        instance=instance, asset_selection=reference, raise_on_error=False, run_config=quiet
                    )
                ):
                    return 1
                for month in args.months:
                    for spec in (spec for m, spec in loads if m == month):
                        started = time.monotonic()
                        result = run_quietly(
                            instance=instance,
                            partition_key=f"{month:%Y-%m-01}",
                            raise_on_error=False,
                            asset_selection=[raw_file_key(spec), staging_key(spec), final_key(spec)],
                            tags={"taxi": spec.name, "file": spec.file_name(month)},
                            run_config=quiet,
                        )
                        seconds = time.monotonic() - started
                        if not _succeeded(result):
                            return 1
                        meta = _metadata(result)
                        raw, final = meta.get(raw_file_key(spec), {}), meta.get(final_key(spec), {})
                        table.append(
                            (
                                spec.name,
                                f"{month:%Y-%m}",
                                raw.get("rows"),
                                final.get("duplicates_dropped"),
                                final.get("dagster/row_count"),
                                seconds,
                            )
                        )
                        print(
                            f"{spec.name} {month:%Y-%m}: {raw.get('rows', 0):,} rows read, "
                            f"{final.get('dagster/row_count', 0):,} trips in the final table "
                            f"({seconds:.1f} s)",
                            flush=True,
                        )
                    monthly_dbt = [
                        k
                        for k in job.asset_layer.asset_graph.get_all_asset_keys()
                        if k.path[0] == "dbt" and k not in reference
                    ]
                    started = time.monotonic()
                    if not _succeeded(
                        run_quietly(
                            instance=instance,
                            asset_selection=monthly_dbt,
                            partition_key=f"{month:%Y-%m-01}",
                            raise_on_error=False,
                            run_config=quiet,
                        )
                    ):
                        return 1
                    dbt_seconds.append(time.monotonic() - started)
                    print(f"dbt models built for {month:%Y-%m} in {dbt_seconds[-1]:.1f} s", flush=True)

            _print_table(table)
            print(
                f"dbt: {len(dbt_seconds)} month(s) built in {sum(dbt_seconds):.1f} s"
                + ("" if args.verbose else f" (dbt's log: {dbt_log})")
            )
            _print_top_zones(build_resources(demo_settings)["warehouse"], settings.dbt_schema, args.months)
    finally:  # also after a failure: the demo leaves the server as it found it
        if settings.postgres_url is None and not embedded_was_running and not args.keep_running:
            embedded_server(settings).stop()
            print("Stopped the embedded PostgreSQL (it was not running before; --keep-running keeps it).")
    return 0


def _succeeded(result) -> bool:
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
            causes.append(f"{event.step_key}: {_root_cause_line(error.message, error.cls_name)}")
    print(f"\nrun {result.run_id} failed (all its events: `make dev`, then Runs):", file=sys.stderr)
    for cause in causes:
        print(f"  {cause}", file=sys.stderr)
    print(f"demo failed: {causes[0] if causes else 'the run failed before any step ran'}", file=sys.stderr)
    return False


def _root_cause_line(message: str, cls_name: str | None) -> str:
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


def _print_top_zones(warehouse, dbt_schema: str, months: list[date], top: int = 10) -> None:
    from psycopg2 import sql

    query = sql.SQL(
        "SELECT revenue_zone, revenue_borough, service_type, sum(revenue_monthly_total_amount), "
        "sum(total_monthly_trips) FROM {} WHERE revenue_month = ANY(%s) "
        "GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT %s"
    ).format(sql.Identifier(dbt_schema, "dm_monthly_zone_revenue"))
    with resolved(warehouse).connect("demo report") as conn, conn.cursor() as cur:
        cur.execute(query, (list(months), top))
        rows = cur.fetchall()
    print(
        f"\nTop {top} pickup zones by revenue, {months[0]:%Y-%m} .. {months[-1]:%Y-%m} "
        f"(dbt model {dbt_schema}.dm_monthly_zone_revenue):"
    )
    width = max(len(f"{z} ({b})") for z, b, *_ in rows) if rows else 10
    for zone, borough, service, revenue, trips in rows:
        print(f"  {f'{zone} ({borough})':<{width}}  {service:<6}  {revenue:>14,.2f}  {trips:>9,} trips")


def _metadata(result) -> dict:
    out = {}
    for event in result.get_asset_materialization_events():
        m = event.event_specific_data.materialization
        out[m.asset_key] = {k: v.value for k, v in m.metadata.items()}
    return out


def _print_table(rows: list[tuple]) -> None:
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
