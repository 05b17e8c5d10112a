"""`taxi-platform`: the commands a person types (the Makefile calls these).

    taxi-platform demo [--months 2019-01..2019-03] [--rows N | --full]
    taxi-platform sample yellow 2019-01 out.csv.gz [--rows N]
    taxi-platform mirror write|serve [--root DIR]
    taxi-platform db start|stop|status|psql|env|remove

A bad argument is a usage error (exit code 2), among them a --months month outside the source's
months (the partitions, 2019-01..2021-07 for the course's CSV backup); a setting, a path or one of
the platform's own errors is printed as one `taxi-platform: error: ...` line (exit code 1; 2 for a
setting).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

from taxi_platform.datasets import DATASETS, SOURCE, get_dataset
from taxi_platform.partitions import next_month, outside_partitions
from taxi_platform.settings import Settings, SettingsError
from taxi_platform.warehouse.embedded import EmbeddedPostgres, bin_dir

DEMO_ROWS = 20_000


def _month(text: str) -> date:
    try:
        year, month = text.split("-")[:2]
        return date(int(year), int(month), 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a YYYY-MM month") from None


def _months(text: str) -> list[date]:
    """`2019-01..2019-03` or `2019-01,2019-05`: months of the source (the partitions)."""
    if ".." in text:
        first, last = (_month(p) for p in text.split(".."))
        months, m = [], first
        while m <= last:
            months.append(m)
            m = next_month(m)
        if not months:  # nothing to do would fail later, far from the argument
            raise argparse.ArgumentTypeError(f"{text!r}: the first month is after the last")
    else:
        months = [_month(p) for p in text.split(",")]
    for m in months:  # no partition, no file in the source: refused here, not deep in a run
        why_not = outside_partitions(m)
        if why_not is not None:
            raise argparse.ArgumentTypeError(f"{text!r}: {m:%Y-%m} is {why_not}")
    return months


def _row_count(text: str) -> int:
    try:
        rows = int(text)
    except ValueError:
        rows = -1
    if rows < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a row count (a whole number, 0 or more)")
    return rows


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0-65535; 0 picks a free one)")
    return port


def _datasets(text: str) -> list:
    try:
        return [get_dataset(n.strip()) for n in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _embedded(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.embedded_pg_dir, port=settings.embedded_port)


class CliError(Exception):
    """Something the person can fix (a path, a setting), told in one line without a traceback."""


def _ensure_home(settings: Settings) -> None:
    """TAXI_HOME must be a folder that can be created and written in; say which, if not."""
    home = settings.home
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create {home}: {_reason(exc, home)} (TAXI_HOME)") from None
    if not os.access(home, os.W_OK | os.X_OK):
        raise CliError(f"cannot write in {home}: permission denied (TAXI_HOME)")


def _reason(exc: OSError, path: Path | None = None) -> str:
    """Why `path` (default: the error's own) cannot be created or written."""
    path = path or (Path(exc.filename) if exc.filename is not None else None)
    if path is not None and isinstance(exc, (FileExistsError, NotADirectoryError)):
        # A regular file where a folder should be: name it rather than just say "File exists".
        blocker = next((p for p in (path, *path.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            return f"{blocker} is a file, not a folder"
    return exc.strerror or str(exc)


def _os_error_line(exc: OSError, settings: Settings | None) -> str:
    """`<path>: <reason>`, naming TAXI_HOME when the path lies under it."""
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    line = f"{' -> '.join(paths)}: {_reason(exc)}"
    if settings is not None and any(Path(p).resolve().is_relative_to(settings.home) for p in paths):
        line += " (under TAXI_HOME)"
    return line


def _is_platform_error(exc: BaseException) -> bool:
    """The platform's own error classes (EmbeddedPostgresError, WarehouseError, DownloadFailed,
    DbtManifestMissing, ...): their messages are written for the person running the command."""
    return type(exc).__module__.split(".")[0] == "taxi_platform"


# --- demo ------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    import dagster as dg

    from taxi_platform.assets.dbt import DBT_REFERENCE_KEYS
    from taxi_platform.assets.trips import final_key, raw_file_key, staging_key
    from taxi_platform.assets.zones import reference_file_key, reference_table_key
    from taxi_platform.datasets import ZONES
    from taxi_platform.definitions import build_definitions
    from taxi_platform.resources import build_resources
    from taxi_platform.sample.generator import full_size_rows
    from taxi_platform.sample.mirror import MirrorServer, write_mirror
    from taxi_platform.sample.zones import write_mirror_zones

    mirror_root = settings.home / "mirror"
    rows = full_size_rows if args.full else args.rows
    print(f"Writing generated release files to {mirror_root} ...", flush=True)
    write_mirror(mirror_root, args.datasets, args.months, rows=rows, seed=args.seed)
    write_mirror_zones(mirror_root)

    embedded_was_running = settings.postgres_url is None and _embedded(settings).is_running()
    os.environ.setdefault("DAGSTER_HOME", str(settings.home / "dagster"))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    dagster_yaml = Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml"
    if not dagster_yaml.exists() or dagster_yaml.stat().st_size == 0:
        # The local instance of `make dev` too (queued runs, the warehouse pool's limit).
        dagster_yaml.write_text((Path(__file__).parent / "instance" / "dagster.yaml").read_text())

    table: list[tuple] = []
    dbt_seconds: list[float] = []
    all_datasets = set(DATASETS) <= {spec.name for spec in args.datasets}  # the dbt models join them
    try:
        with MirrorServer(mirror_root) as mirror:
            # Served over HTTP on 127.0.0.1, so the demo exercises the same download path as GitHub.
            demo_settings = replace(settings, source_url=mirror.base_url)
            warehouse = (
                "TAXI_POSTGRES_URL"
                if settings.postgres_url
                else f"embedded PostgreSQL under {settings.embedded_pg_dir}"
            )
            print(f"Serving the mirror at {mirror.base_url}; warehouse: {warehouse}", flush=True)
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
                    for spec in args.datasets:
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
                    if not all_datasets:
                        continue
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
            if not all_datasets:
                print(f"dbt: not built (its models join {' and '.join(DATASETS)}: load every dataset)")
            else:
                print(
                    f"dbt: {len(dbt_seconds)} month(s) built in {sum(dbt_seconds):.1f} s"
                    + ("" if args.verbose else f" (dbt's log: {dbt_log})")
                )
                _print_top_zones(
                    build_resources(demo_settings)["warehouse"], settings.dbt_schema, args.months
                )
    finally:  # also after a failure: the demo leaves the server as it found it
        if settings.postgres_url is None and not embedded_was_running and not args.keep_running:
            _embedded(settings).stop()
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
    with _resolved(warehouse).connect("demo report") as conn, conn.cursor() as cur:
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


# --- sample & mirror ---------------------------------------------------------------------------
def cmd_sample(args: argparse.Namespace, settings: Settings) -> int:
    from taxi_platform.sample.generator import full_size_rows, generate_month

    spec = get_dataset(args.dataset)
    rows = full_size_rows(spec, args.month) if args.rows is None else args.rows
    started = time.monotonic()
    try:
        out = generate_month(
            spec,
            args.month,
            Path(args.out),
            rows=rows,
            seed=args.seed,
            line_ending="\r\n" if args.crlf else "\n",
        )
    except OSError as exc:
        raise CliError(f"cannot write {args.out}: {_reason(exc)} (argument out)") from None
    print(
        f"{out.path}: {out.rows:,} rows ({out.duplicate_rows:,} exact duplicates, "
        f"{out.out_of_month_rows:,} out of month, {out.unattributed_rows:,} unattributed) "
        f"in {time.monotonic() - started:.1f} s"
    )
    return 0


def cmd_mirror(args: argparse.Namespace, settings: Settings) -> int:
    from taxi_platform.sample.generator import full_size_rows
    from taxi_platform.sample.mirror import MirrorServer, write_mirror

    root = Path(args.root) if args.root else settings.home / "mirror"
    if args.action == "write":
        files = write_mirror(
            root, args.datasets, args.months, rows=full_size_rows if args.full else args.rows, seed=args.seed
        )
        print(f"{len(files)} files under {root}; use TAXI_SOURCE_URL={root.resolve().as_uri()}")
        return 0
    from taxi_platform.sample.releases_api import register_releases_api

    server = MirrorServer(root, port=args.port)
    api = register_releases_api(server)  # a GitHub-compatible releases API for the release sensor
    with server as mirror:
        print(
            f"Serving {root} at {mirror.base_url} (TAXI_SOURCE_URL={mirror.base_url}, "
            f"TAXI_RELEASES_API_URL={mirror.base_url}{api}); Ctrl-C stops.",
            flush=True,
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


# --- dbt ---------------------------------------------------------------------------------------
def _dbt_command(settings: Settings, args: list[str]) -> list[str]:
    from taxi_platform.resources import dbt_executable

    project = str(settings.dbt_project_dir)
    return [dbt_executable(), *args, "--project-dir", project, "--profiles-dir", project]


def cmd_dbt_prepare(args: argparse.Namespace, settings: Settings) -> int:
    """`dbt parse`: writes the manifest the Dagster definitions load (no database needed), and the
    stamp of the files it was parsed from, so `dagster dev` does not parse them again. The same
    parse as `dagster dev`'s: under its lock, the manifest moved into place whole."""
    from dagster_dbt import DbtProject
    from dagster_dbt.errors import DagsterDbtCliRuntimeError

    from taxi_platform.assets.dbt import reparse_manifest

    project = DbtProject(project_dir=settings.dbt_project_dir, profiles_dir=settings.dbt_project_dir)
    try:
        reparse_manifest(project, force=True)
    except DagsterDbtCliRuntimeError as exc:  # dbt's own messages: the file and what is wrong
        print(str(exc)[-4000:], file=sys.stderr)
        return 1
    print(f"dbt manifest ready: {project.manifest_path}")
    return 0


def cmd_dbt(args: argparse.Namespace, settings: Settings) -> int:
    """Any dbt command against the platform's warehouse (`taxi-platform dbt build -s fact_trips`)."""
    from taxi_platform.resources import build_resources

    warehouse = build_resources(settings)["warehouse"]
    # The months of a Dagster step never leak into a command typed by hand (a `--full-refresh`
    # would rebuild only them); by hand, months are `--vars '{month: 2019-01-01}'`.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("TAXI_DBT_MONTH_")}
    env = {**inherited, **_resolved(warehouse).dbt_env()}
    return subprocess.call(_dbt_command(settings, args.dbt_args), env=env)


def _resolved(resource):
    """A resource whose EnvVar fields are read from the environment, for use outside a run."""
    return resource.process_config_and_initialize()


# --- db ------------------------------------------------------------------------------------------
def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    if settings.postgres_url and args.action not in ("status", "env", "remove"):
        print("TAXI_POSTGRES_URL is set: the platform uses that server, not the embedded one.")
        return 1
    if args.action not in ("status", "env", "remove"):  # they only read (or delete); the others
        _ensure_home(settings)  # create the server's folders
    server = _embedded(settings)
    if args.action == "start":
        server.ensure_running()
        print(
            f"embedded PostgreSQL running on 127.0.0.1:{server.url().rsplit(':', 1)[1].split('/')[0]} "
            f"(data in {server.data_dir})"
        )
    elif args.action == "stop":
        print("stopped" if server.stop() else "not running")
    elif args.action == "remove":
        data_dir = server.data_dir
        print(f"removed the embedded PostgreSQL in {data_dir}" if server.remove() else "nothing to remove")
    elif args.action == "status":
        if settings.postgres_url:
            from taxi_platform.redact import mask_url

            print(f"external PostgreSQL: {mask_url(settings.postgres_url)}")
        else:
            print(
                f"embedded PostgreSQL in {server.data_dir}: "
                f"{'running' if server.is_running() else 'not running'}"
            )
        for name, value in {**_connection_details(settings, server), **_schemas(settings)}.items():
            print(f"  {name:<9} {value}")
        print(
            '  dbt       `taxi-platform dbt <command>`, or `eval "$(taxi-platform db env)"` then plain '
            "`dbt` inside dbt_project/"
        )
    elif args.action == "env":
        for line in _dbt_env_lines(settings, server):
            print(line)
    elif args.action == "psql":
        url = server.ensure_running()
        return subprocess.call([str(bin_dir() / "psql"), url])
    return 0


def _connection_details(settings: Settings, server) -> dict[str, str]:
    if not settings.postgres_url:
        return server.connection_details()
    from urllib.parse import unquote, urlsplit

    url = urlsplit(settings.postgres_url)
    try:
        port = str(url.port or 5432)
    except ValueError:
        raise CliError("TAXI_POSTGRES_URL has a port that is not a number") from None
    return {
        "host": url.hostname or "127.0.0.1",
        "port": port,
        "database": unquote(url.path.lstrip("/")),
        "user": unquote(url.username or ""),
        "password": "in TAXI_POSTGRES_URL",
    }


def _schemas(settings: Settings) -> dict[str, str]:
    return {
        "schemas": f"{settings.warehouse_schema} (final tables), {settings.staging_schema} "
        f"(staging), {settings.dbt_schema} (dbt models)"
    }


def _dbt_env_lines(settings: Settings, server) -> list[str]:
    """Shell exports that point plain `dbt` (profiles.yml in dbt_project/) at the warehouse. The
    password is read from its file when the shell evaluates them: it is never printed."""
    import shlex

    if not settings.postgres_url and not server.is_initialized():
        raise CliError("the embedded PostgreSQL has not been created yet: run `taxi-platform db start` first")
    details = _connection_details(settings, server)
    values = {
        "TAXI_DBT_TARGET": "postgres",
        "TAXI_DBT_PG_HOST": details["host"],
        "TAXI_DBT_PG_PORT": details["port"],
        "TAXI_DBT_PG_USER": details["user"],
        "TAXI_DBT_PG_DBNAME": details["database"],
        "TAXI_WAREHOUSE_SCHEMA": settings.warehouse_schema,
        "TAXI_DBT_SCHEMA": settings.dbt_schema,
    }
    password = (
        ['export TAXI_DBT_PG_PASSWORD="$(cat ' + shlex.quote(str(server.root / "password")) + ')"']
        if not settings.postgres_url
        else ["# export TAXI_DBT_PG_PASSWORD=<the password in TAXI_POSTGRES_URL> (not printed here)"]
    )
    return (
        [f"export {k}={shlex.quote(v)}" for k, v in values.items()]
        + password
        + ["export DBT_PROFILES_DIR=" + shlex.quote(str(settings.dbt_project_dir))]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="taxi-platform", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="generate release files, serve them, load them, print a table")
    demo.add_argument(
        "--months",
        type=_months,
        default=_months("2019-01..2019-03"),
        help=f"months to load, within {SOURCE.months_text}: 2019-01, or a range "
        "2019-01..2019-03 (the default)",
    )
    demo.add_argument(
        "--datasets",
        type=_datasets,
        default=list(DATASETS.values()),
        help=f"comma-separated datasets (default: {','.join(DATASETS)})",
    )
    demo.add_argument(
        "--verbose",
        action="store_true",
        help="print Dagster's and dbt's logs (by default: progress and a summary)",
    )
    demo.add_argument(
        "--rows", type=_row_count, default=DEMO_ROWS, help=f"rows per file (default {DEMO_ROWS:,})"
    )
    demo.add_argument("--full", action="store_true", help="full-size months (yellow 2019-01: 7.7 M rows)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--keep-running", action="store_true", help="leave the embedded PostgreSQL running afterwards"
    )
    demo.set_defaults(func=cmd_demo)

    sample = sub.add_parser("sample", help="write one generated monthly release file")
    sample.add_argument("dataset", choices=list(DATASETS))
    sample.add_argument("month", type=_month)
    sample.add_argument("out")
    sample.add_argument("--rows", type=_row_count, default=None, help="default: the real month's size")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--crlf", action="store_true")
    sample.set_defaults(func=cmd_sample)

    mirror = sub.add_parser("mirror", help="write or serve a local mirror of generated release files")
    mirror.add_argument("action", choices=["write", "serve"])
    mirror.add_argument("--root", default=None, help="default: $TAXI_HOME/mirror")
    mirror.add_argument(
        "--months",
        type=_months,
        default=_months("2019-01..2019-03"),
        help=f"months to write, within {SOURCE.months_text} (default 2019-01..2019-03)",
    )
    mirror.add_argument("--datasets", type=_datasets, default=list(DATASETS.values()))
    mirror.add_argument("--rows", type=_row_count, default=DEMO_ROWS)
    mirror.add_argument("--full", action="store_true")
    mirror.add_argument("--seed", type=int, default=0)
    mirror.add_argument("--port", type=_port, default=0)
    mirror.set_defaults(func=cmd_mirror)

    prepare = sub.add_parser("dbt-prepare", help="parse the dbt project (writes the manifest)")
    prepare.set_defaults(func=cmd_dbt_prepare)

    dbt = sub.add_parser("dbt", help="run dbt against the platform's warehouse")
    dbt.add_argument("dbt_args", nargs=argparse.REMAINDER)
    dbt.set_defaults(func=cmd_dbt)

    db = sub.add_parser("db", help="the embedded PostgreSQL")
    db.add_argument(
        "action",
        choices=["start", "stop", "status", "psql", "env", "remove"],
        help="status: where a SQL client connects; env: shell exports for plain dbt; "
        "remove: stop it and delete its data (`make clean`)",
    )
    db.set_defaults(func=cmd_db)

    args = parser.parse_args(argv)
    settings = None
    try:
        settings = Settings.from_env()
        return args.func(args, settings)
    except SettingsError as exc:  # its message names the setting (and never echoes a secret)
        _error(str(exc))
        return 2
    except Exception as exc:
        if isinstance(exc, CliError) or _is_platform_error(exc):
            _error(str(exc))
        elif isinstance(exc, OSError) and exc.filename is not None:
            _error(_os_error_line(exc, settings))
        else:
            raise  # unexpected (a bug, an OSError without a path): the traceback helps
        return 1


def _error(message: str) -> None:
    print(f"taxi-platform: error: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
