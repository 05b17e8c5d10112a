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
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from taxi_platform.datasets import (
    ALL_DATASETS,
    expected_published_month,
    source_datasets,
)
from taxi_platform.partitions import next_month
from taxi_platform.settings import Settings, SettingsError
from taxi_platform.warehouse.embedded import bin_dir, embedded_server

DEMO_ROWS = 20_000
COURSE_DEFAULT_LAST = date(2019, 3, 1)  # the course source's default months: 2019-01..2019-03


def _month(text: str) -> date:
    try:
        year, month = text.split("-")[:2]
        return date(int(year), int(month), 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a YYYY-MM month") from None


def _months(text: str) -> list[date]:
    """`2019-01..2019-03` or `2019-01,2019-05` (checked against the source's months in `main`)."""
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
    return months


def _source_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace, settings: Settings) -> None:
    """--months and --datasets as the chosen source (TAXI_SOURCE) has them: a month outside its
    months (no partition, no file) or a dataset it does not hold is a usage error, here rather than
    deep in a run. Defaults: the source's datasets and its three latest months (the TLC's: those
    published by now; the course's: 2019-01..2019-03)."""
    if not hasattr(args, "months_text"):
        return
    source = settings.source_spec
    specs = source_datasets(source)
    if args.months_text is None:
        last = COURSE_DEFAULT_LAST if source.last_month else expected_published_month(date.today())
        index = last.year * 12 + last.month - 1
        args.months = [date((index - k) // 12, (index - k) % 12 + 1, 1) for k in (2, 1, 0)]
    else:
        try:
            args.months = _months(args.months_text)
        except argparse.ArgumentTypeError as exc:
            parser.error(f"argument --months: {exc}")
    for m in args.months:
        why_not = source.why_not(m)
        if why_not is not None:
            parser.error(f"argument --months: {args.months_text!r}: {m:%Y-%m} is {why_not}")
    names = args.datasets or list(specs)
    unknown = [n for n in names if n not in specs]
    if unknown:
        parser.error(
            f"argument --datasets: the {source.name} source has no {', '.join(unknown)} "
            f"(it has {', '.join(specs)}; TAXI_SOURCE)"
        )
    args.datasets = [specs[n] for n in names]


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


def _datasets(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    unknown = [n for n in names if n not in ALL_DATASETS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown dataset {unknown[0]!r}; known: {', '.join(ALL_DATASETS)}")
    return names


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
    from taxi_platform.demo import run_demo

    return run_demo(args, settings)


# --- sample & mirror ---------------------------------------------------------------------------
def cmd_sample(args: argparse.Namespace, settings: Settings) -> int:
    """One generated month of the source's format: the TLC's Parquet (the era of the month), or
    the course's gzipped CSV."""
    specs = source_datasets(settings.source_spec)
    if args.dataset not in specs:
        raise CliError(f"the {settings.source_spec.name} source has no {args.dataset} dataset (TAXI_SOURCE)")
    spec = specs[args.dataset]
    started = time.monotonic()
    try:
        if spec.file_extension == "parquet":
            from taxi_platform.sample.parquet_generator import generate_parquet_month

            made = generate_parquet_month(
                spec,
                args.month,
                Path(args.out),
                rows="real" if args.rows is None else args.rows,
                seed=args.seed,
            )
            print(
                f"{made.path}: {made.rows:,} rows ({made.duplicate_rows:,} exact duplicates, "
                f"{made.out_of_month_rows:,} out of month), era {made.era}, "
                f"in {time.monotonic() - started:.1f} s"
            )
            return 0
        from taxi_platform.sample.generator import full_size_rows, generate_month

        rows = full_size_rows(spec, args.month) if args.rows is None else args.rows
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
    """Write (or serve) generated months as the source publishes them: the TLC's CloudFront
    layout, or the course's GitHub releases (with a releases API for its sensor)."""
    from taxi_platform.demo import DEMO_MIRRORS

    mirror = DEMO_MIRRORS[settings.source]
    root = Path(args.root) if args.root else settings.home / "mirror" / settings.source
    setting = "TAXI_TLC_URL" if settings.source == "tlc" else "TAXI_SOURCE_URL"
    if args.action == "write":
        mirror.write(root, args)
        print(f"files written under {root}; use {setting}={root.resolve().as_uri()}")
        return 0
    if settings.source == "tlc":
        from taxi_platform.sample.tlc_mirror import serve_tlc_mirror

        server, note = serve_tlc_mirror(root, port=args.port), ""
        base = server.url
    else:
        from taxi_platform.sample.mirror import MirrorServer
        from taxi_platform.sample.releases_api import register_releases_api

        server = MirrorServer(root, port=args.port)
        api = register_releases_api(server)  # a GitHub-compatible releases API for the release sensor
        server.__enter__()
        base = server.base_url
        note = f", TAXI_RELEASES_API_URL={base}{api}"
    try:
        print(f"Serving {root} at {base} ({setting}={base}{note}); Ctrl-C stops.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        server.__exit__(None, None, None)


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
    from taxi_platform.resources import build_resources, resolved

    warehouse = build_resources(settings)["warehouse"]
    # The months of a Dagster step never leak into a command typed by hand (a `--full-refresh`
    # would rebuild only them); by hand, months are `--vars '{month: 2019-01-01}'`.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("TAXI_DBT_MONTH_")}
    warehouse = resolved(warehouse)
    if {"build", "run", "test"} & set(args.dbt_args[:1]):  # the models read all four trip tables
        warehouse.ensure_trip_tables(list(ALL_DATASETS.values()))
    env = {**inherited, **warehouse.dbt_env()}
    return subprocess.call(_dbt_command(settings, args.dbt_args), env=env)


# --- db ------------------------------------------------------------------------------------------
def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    if settings.postgres_url and args.action not in ("status", "env", "remove"):
        print("TAXI_POSTGRES_URL is set: the platform uses that server, not the embedded one.")
        return 1
    if args.action not in ("status", "env", "remove"):  # they only read (or delete); the others
        _ensure_home(settings)  # create the server's folders
    server = embedded_server(settings)
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
        dest="months_text",
        help="months to load, within the source's: 2024-01, or a range 2024-01..2024-03 (default: "
        "the three latest months published; the course source's: 2019-01..2019-03)",
    )
    demo.add_argument(
        "--datasets",
        type=_datasets,
        help="comma-separated datasets (default: all the source's: yellow,green,fhv,fhvhv for the TLC's)",
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
    sample.add_argument("dataset", choices=list(ALL_DATASETS))
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
        "--months", dest="months_text", help="months to write, within the source's (default: as the demo's)"
    )
    mirror.add_argument("--datasets", type=_datasets)
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
        _source_arguments(parser, args, settings)
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
