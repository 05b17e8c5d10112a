"""`make bench`: a month of yellow loaded by us against what PostgreSQL itself can ingest, the
reference pipeline's SQL and pandas, in ONE run on ONE PostgreSQL, on this machine.

    python -m bench.run [--rows 7696617] [--small-rows 1000000] [--pandas-rows 1000000]
                        [--repeat 1] [--out bench/results/latest.json] [--markdown PATH]

It starts its own embedded PostgreSQL under a fresh folder in /tmp (stopped and removed at the
end), generates the months (yellow 2019-01 at `--rows`, its real size; yellow 2019-02 at
`--small-rows`) into a local mirror, and measures for each size:

  floor            gunzip -c | psql \\copy into an unindexed typed table created beforehand
  floor_unlogged   the same into an UNLOGGED table created in the COPY's transaction (extra)
  reference        the course's Kestra SQL: TRUNCATE shared staging, COPY, UPDATE md5, MERGE
  ours_first       a Dagster run of raw file -> staging -> final (+ checks), new month, in one
                   process (bench/materialize.py: the code location's definitions and instance)
  ours_reload      the same month again (the month's rows are replaced)
  ours_cli_reload  (extra, large month, --no-cli to skip) the reload through `dagster asset
                   materialize`, the command a person types

and pandas `read_csv(chunksize=100_000)` + `to_sql` on `--pandas-rows` rows, extrapolated
linearly to each size. With `--repeat N` every measurement is taken N times and the fastest
counts (all samples are kept). Results: a JSON file (`--out`) and a Markdown table (`--markdown`;
by default bench/RESULTS.md for a full-size run, else next to the JSON).

While the large month is loaded, `dbt_month` loads green for the same month at its real size and
times the dbt build of that month's models for both colours (`--no-dbt` skips it) against the
ingest of both colours.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

from bench import baselines, meter, ours
from bench.report import markdown, print_table
from taxi_platform.datasets import GREEN, YELLOW
from taxi_platform.sample.generator import generate_month
from taxi_platform.sample.mirror import mirror_path
from taxi_platform.sample.row_counts import full_size_rows
from taxi_platform.sample.zones import write_mirror_zones
from taxi_platform.warehouse.embedded.server import EmbeddedPostgres

REPO = Path(__file__).resolve().parents[1]
LARGE_MONTH = date(2019, 1, 1)
SMALL_MONTH = date(2019, 2, 1)
DEFAULT_ROWS = full_size_rows(YELLOW, LARGE_MONTH)  # 7,696,617: yellow 2019-01
DEFAULT_SMALL_ROWS = 1_000_000
DEFAULT_PANDAS_ROWS = 1_000_000
DEFAULT_OUT = REPO / "bench" / "results" / "latest.json"
COMMITTED_MARKDOWN = REPO / "bench" / "RESULTS.md"

TARGETS = {  # name: (description, threshold, comparison): the ingest engine issue's targets
    "ours_first_vs_floor": ("our first load / floor", 1.2, "<="),
    "ours_reload_vs_first": ("our reload / our first load", 1.0, "<="),
    "reference_vs_ours": ("reference SQL / our first load", 2.4, ">="),
    "pandas_vs_ours": ("pandas to_sql (extrapolated) / our first load", 35.0, ">="),
    "peak_rss_mb": ("peak RSS of the materializing process, MB", 400.0, "<"),
}
DBT_VS_INGEST = 1.5  # dbt rebuild of a month, both colours / that month's ingest


def _label(rows: int) -> str:
    return f"{rows / 1e6:.1f}M" if rows >= 1_000_000 else f"{rows / 1e3:.0f}k"


def _fastest(samples: list[dict]) -> dict:
    best = dict(min(samples, key=lambda s: s["seconds"]))
    if len(samples) > 1:
        best["samples"] = [round(s["seconds"], 3) for s in samples]
    return best


def _measure(repeat: int, fn: Callable[[], dict], rows: int, url: str, data_dir: Path) -> dict:
    samples = []
    for _ in range(repeat):
        meter.settle(url)
        server, client = meter.server_cpu(data_dir), meter.client_cpu()
        sample = fn()
        server_after = meter.server_cpu(data_dir)
        sample["cpu_seconds"] = {
            "server": None if server is None or server_after is None else server_after - server,
            "client": meter.client_cpu() - client,
        }
        samples.append(sample)
    best = _fastest(samples)
    best["rows_per_second"] = rows / best["seconds"]
    if samples[0].get("peak_rss_mb") is not None:
        best["peak_rss_mb"] = max(s["peak_rss_mb"] for s in samples)
    return best


def machine_info(url: str) -> dict:
    import psycopg2

    def first(path: str, key: str) -> str | None:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        except OSError:
            return None
        return None

    mem_kb = first("/proc/meminfo", "MemTotal")
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT version()")
            version = meter.fetch_value(cur)
            settings = {}
            for name in (
                "server_version",
                "shared_buffers",
                "work_mem",
                "maintenance_work_mem",
                "wal_level",
                "max_wal_size",
                "data_checksums",
                "max_parallel_workers_per_gather",
                "io_method",
            ):
                cur.execute("SELECT current_setting(%s, true)", (name,))
                settings[name] = meter.fetch_value(cur)
    finally:
        conn.close()
    return {
        "nproc": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)),
        "cpu_model": first("/proc/cpuinfo", "model name"),
        "memory_gb": round(int(mem_kb.split()[0]) / 1024 / 1024, 1) if mem_kb else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgres": version,
        "postgres_settings": settings,
        "git_commit": git_commit(),
        "load_average_start": os.getloadavg(),
    }


def git_commit() -> str | None:
    """The checkout's commit, recorded with every result (None outside a git checkout)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def dbt_month(
    month: date,
    yellow_ingest: dict,
    green_rows: int | None,
    repeat: int,
    url: str,
    data_dir: Path,
    *,
    home: Path,
    mirror: Path,
    dagster_home: Path,
    log_file: Path,
) -> dict:
    """The dbt build of one month for both colours against that month's ingest (target: <= 2x).

    Yellow is already loaded (`yellow_ingest`: our first load); green is loaded here (its real size
    unless `green_rows`), then the zones and unpartitioned models are built (not measured), then the
    monthly models of the month twice over: the first build creates fact_trips and the mart
    (CREATE TABLE AS), a rebuild replaces the month in the existing tables (the incremental path,
    as every later month takes; the fastest of `repeat` samples). The target uses the rebuild.
    """
    paths = ours.ChildPaths(home=home, mirror=mirror, dagster_home=dagster_home, log_file=log_file)
    rows = green_rows or full_size_rows(GREEN, month)
    generate_month(GREEN, month, mirror_path(mirror, GREEN, month), rows=rows, seed=2)
    write_mirror_zones(mirror)
    green = _measure(1, lambda: ours.materialize(GREEN, month, **paths), rows, url, data_dir)
    ours.build_dbt(None, **paths)
    build = lambda: ours.build_dbt(month, **paths)  # noqa: E731
    trips = yellow_ingest["rows_read"] + rows
    first = _measure(1, build, trips, url, data_dir)
    rebuild = _measure(repeat, build, trips, url, data_dir)
    ingest = yellow_ingest["seconds"] + green["seconds"]
    return {
        "month": f"{month:%Y-%m}",
        "green_rows": rows,
        "green_ingest": green,
        "yellow_ingest_seconds": yellow_ingest["seconds"],
        "ingest_seconds": ingest,
        "first_build": first,
        "dbt": rebuild,
        "seconds": rebuild["seconds"],
        "ratio": rebuild["seconds"] / ingest,
        "first_build_ratio": first["seconds"] / ingest,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def run(args: argparse.Namespace) -> dict:
    root = Path(tempfile.mkdtemp(prefix="taxi-bench-", dir=args.tmp))
    root.chmod(0o755)  # the embedded server runs as `nobody` when we are root
    home, mirror, dagster_home = root / "home", root / "mirror", root / "dagster"
    log_file = root / "materialize.log"
    server = None if args.postgres_url else EmbeddedPostgres(home / "postgres")
    ours.EXTERNAL_POSTGRES_URL = args.postgres_url
    started_at = datetime.now(UTC)
    print(f"bench: working in {root}", flush=True)
    try:
        if server is None:  # an external server: its CPU is metered when its data folder is given
            url, data_dir = args.postgres_url, Path(args.postgres_data_dir or root / "no-data-dir")
        else:
            url, data_dir = server.ensure_running(), server.data_dir
        machine = machine_info(url)
        sizes = [(LARGE_MONTH, args.rows), (SMALL_MONTH, args.small_rows)]
        files = {}
        for month, rows in sizes:
            t = time.monotonic()
            generated = generate_month(YELLOW, month, mirror_path(mirror, YELLOW, month), rows=rows, seed=1)
            files[month] = generated
            print(
                f"bench: generated {generated.path.name}: {rows:,} rows, "
                f"{generated.path.stat().st_size / 1e6:,.0f} MB in {time.monotonic() - t:.1f} s",
                flush=True,
            )

        results: dict = {"sizes": {}}
        for month, rows in sizes:
            path, file_name = files[month].path, YELLOW.file_name(month)
            label = _label(rows)
            print(f"bench: {label} ({file_name}) ...", flush=True)
            entry: dict = {
                "rows": rows,
                "file": file_name,
                "gzip_bytes": path.stat().st_size,
                "duplicate_rows": files[month].duplicate_rows,
            }

            def step(name: str, fn: Callable[[], dict]) -> None:
                entry[name] = _measure(args.repeat, fn, rows, url, data_dir)
                extra = (
                    f", peak RSS {entry[name]['peak_rss_mb']:.0f} MB"
                    if entry[name].get("peak_rss_mb") is not None
                    else ""
                )
                print(f"bench:   {name:15s} {entry[name]['seconds']:8.2f} s{extra}", flush=True)

            def ours_load(cli: bool = False) -> dict:
                return ours.materialize(
                    YELLOW,
                    month,
                    home=home,
                    mirror=mirror,
                    dagster_home=dagster_home,
                    log_file=log_file,
                    cli=cli,
                )

            def ours_first() -> dict:
                _drop_month(url, month)
                return ours_load()

            def reference_first() -> dict:
                baselines.reference_reset(url, YELLOW)
                return baselines.reference(url, YELLOW, path, file_name)

            step("floor", lambda: baselines.floor(url, YELLOW, path))
            step("floor_unlogged", lambda: baselines.floor(url, YELLOW, path, unlogged=True))
            step("ours_first", ours_first)
            step("ours_reload", ours_load)
            step("reference", reference_first)
            if args.cli and month == LARGE_MONTH:
                step("ours_cli_reload", lambda: ours_load(cli=True))
            if month == LARGE_MONTH and args.dbt:  # while the large month is loaded
                print("bench:   dbt build of the month, both colours ...", flush=True)
                results["dbt"] = dbt_month(
                    month,
                    entry["ours_first"],
                    args.green_rows,
                    args.repeat,
                    url,
                    data_dir,
                    home=home,
                    mirror=mirror,
                    dagster_home=dagster_home,
                    log_file=log_file,
                )
                print(
                    f"bench:   dbt             {results['dbt']['seconds']:8.2f} s "
                    f"(ingest of both colours {results['dbt']['ingest_seconds']:.2f} s)",
                    flush=True,
                )
            baselines.reference_reset(url, YELLOW)
            results["sizes"][label] = entry

        print(f"bench: pandas to_sql on {args.pandas_rows:,} rows ...", flush=True)
        small_path = files[SMALL_MONTH].path
        pandas = _measure(
            args.repeat,
            lambda: baselines.pandas_to_sql(url, YELLOW, small_path, args.pandas_rows),
            args.pandas_rows,
            url,
            data_dir,
        )
        pandas["extrapolated_seconds"] = {
            label: e["rows"] / pandas["rows_per_second"] for label, e in results["sizes"].items()
        }
        results["pandas"] = pandas
        print(f"bench:   pandas          {pandas['seconds']:8.2f} s for {pandas['rows']:,} rows", flush=True)

        for label, e in results["sizes"].items():
            e["ratios"] = {
                "ours_first_vs_floor": _ratio(e["ours_first"]["seconds"], e["floor"]["seconds"]),
                "ours_first_process_vs_floor": _ratio(
                    e["ours_first"]["process_seconds"], e["floor"]["seconds"]
                ),
                "ours_reload_vs_first": _ratio(e["ours_reload"]["seconds"], e["ours_first"]["seconds"]),
                "reference_vs_ours": _ratio(e["reference"]["seconds"], e["ours_first"]["seconds"]),
                "pandas_vs_ours": _ratio(pandas["extrapolated_seconds"][label], e["ours_first"]["seconds"]),
            }
        large = results["sizes"][_label(args.rows)]
        peak = max(
            e[k]["peak_rss_mb"] for e in results["sizes"].values() for k in ("ours_first", "ours_reload")
        )
        values = {**large["ratios"], "peak_rss_mb": peak}
        results["targets"] = {}
        for name, (what, threshold, op) in TARGETS.items():
            value = values[name]
            met = value is not None and (
                value <= threshold if op == "<=" else value >= threshold if op == ">=" else value < threshold
            )
            results["targets"][name] = {
                "what": what,
                "target": f"{op} {threshold:g}",
                "value": value,
                "met": met,
                "size": _label(args.rows),
            }
        dbt = results.get("dbt")
        results["targets"]["dbt_vs_ingest"] = {
            "what": "dbt build of one month, both colours / ingest of that month",
            "target": f"<= {DBT_VS_INGEST:g}",
            "value": dbt["ratio"] if dbt else None,
            "met": dbt["ratio"] <= DBT_VS_INGEST if dbt else None,
            **({} if dbt else {"status": "skipped (--no-dbt)"}),
        }
        machine["load_average_end"] = os.getloadavg()
        return {
            "schema_version": 1,
            "started_at": started_at.isoformat(timespec="seconds"),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": (datetime.now(UTC) - started_at).total_seconds(),
            "args": {
                "rows": args.rows,
                "small_rows": args.small_rows,
                "pandas_rows": args.pandas_rows,
                "repeat": args.repeat,
                "external_server": bool(args.postgres_url),
            },
            "machine": machine,
            **results,
        }
    finally:
        try:
            if server is not None:
                server.stop()
        finally:
            if args.keep:
                print(f"bench: kept {root}", flush=True)
            else:
                shutil.rmtree(root, ignore_errors=True)


def _drop_month(url: str, month: date) -> None:
    """Before a first load: no trace of the month (or any) in our schemas."""
    baselines._execute(
        url, "DROP SCHEMA IF EXISTS taxi CASCADE", "DROP SCHEMA IF EXISTS taxi_staging CASCADE", "CHECKPOINT"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows", type=int, default=DEFAULT_ROWS, help="rows of the large month (yellow 2019-01)"
    )
    parser.add_argument("--small-rows", type=int, default=DEFAULT_SMALL_ROWS, help="rows of the small month")
    parser.add_argument("--pandas-rows", type=int, default=DEFAULT_PANDAS_ROWS, help="rows pandas loads")
    parser.add_argument("--repeat", type=int, default=1, help="samples per measurement (the fastest counts)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON results file")
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="the Markdown table (default: bench/RESULTS.md for a full-size run)",
    )
    parser.add_argument(
        "--cli",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also reload through `dagster asset materialize` (the CLI)",
    )
    parser.add_argument(
        "--dbt",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the dbt build of the large month for both colours",
    )
    parser.add_argument(
        "--green-rows",
        type=int,
        default=None,
        help="rows of green for the dbt measurement (default: its real size)",
    )
    parser.add_argument("--tmp", default="/tmp", help="where the working folder is created")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    parser.add_argument(
        "--postgres-url",
        default=None,
        help="measure on this PostgreSQL instead of an embedded one (its schemas taxi, "
        "taxi_staging and taxi_dbt are dropped and rebuilt)",
    )
    parser.add_argument(
        "--postgres-data-dir",
        default=None,
        help="with --postgres-url: the server's data folder, to meter its CPU",
    )
    args = parser.parse_args(argv)
    if min(args.rows, args.small_rows, args.pandas_rows, args.repeat) < 1:
        parser.error("sizes and --repeat must be positive")
    if args.pandas_rows > args.small_rows:
        parser.error("--pandas-rows must not exceed --small-rows (pandas reads the small month)")

    # A stopped benchmark (Ctrl-C, kill) still stops its server and removes its folder.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    full_size = (args.rows, args.small_rows, args.pandas_rows) == (
        DEFAULT_ROWS,
        DEFAULT_SMALL_ROWS,
        DEFAULT_PANDAS_ROWS,
    )
    md_path = args.markdown or (COMMITTED_MARKDOWN if full_size else args.out.with_name("RESULTS.md"))
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(markdown(results))
    print_table(results)
    print(f"bench: results in {args.out} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
