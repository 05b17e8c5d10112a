"""The demo's run: write the months' files, serve them as the chosen source does, load them through
the platform's assets (zones, trips, dbt) month by month, then print what was loaded."""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from pathlib import Path

from taxi_platform.demo.mirrors import DEMO_MIRRORS
from taxi_platform.demo.report import (
    materialization_metadata,
    print_load_table,
    print_top_zones,
    run_succeeded,
)
from taxi_platform.settings import Settings
from taxi_platform.warehouse.embedded.server import embedded_server


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Generate the months' files, serve them as the chosen source does, load them through the
    platform's assets (zones, trips, dbt), and print what was loaded."""
    import dagster as dg

    from taxi_platform.assets.dbt import DBT_REFERENCE_KEYS
    from taxi_platform.assets.trip_keys import final_key, raw_file_key, staging_key
    from taxi_platform.assets.zones import reference_file_key, reference_table_key
    from taxi_platform.datasets import ZONES
    from taxi_platform.definitions import build_definitions
    from taxi_platform.resources import build_warehouse

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
        dagster_yaml.write_text((Path(__file__).parents[1] / "instance" / "dagster.yaml").read_text())

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
                if not run_succeeded(
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
                        if not run_succeeded(result):
                            return 1
                        meta = materialization_metadata(result)
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
                    if not run_succeeded(
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

            print_load_table(table)
            print(
                f"dbt: {len(dbt_seconds)} month(s) built in {sum(dbt_seconds):.1f} s"
                + ("" if args.verbose else f" (dbt's log: {dbt_log})")
            )
            print_top_zones(build_warehouse(demo_settings), settings.dbt_schema, args.months)
    finally:  # also after a failure: the demo leaves the server as it found it
        if settings.postgres_url is None and not embedded_was_running and not args.keep_running:
            embedded_server(settings).stop()
            print("Stopped the embedded PostgreSQL (it was not running before; --keep-running keeps it).")
    return 0
