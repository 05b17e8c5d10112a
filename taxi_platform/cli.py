"""`taxi-platform`: the commands a person types (the Makefile calls these).

    taxi-platform demo [--months 2019-01..2019-03] [--rows N | --full]
    taxi-platform sample yellow 2019-01 out.csv.gz [--rows N]
    taxi-platform mirror write|serve [--root DIR]
    taxi-platform db start|stop|status|psql|env|remove
    taxi-platform dbt build -s fact_trips   (any dbt command, the connection filled in)

A bad argument is a usage error (exit code 2), among them a --months month outside the source's
months (the partitions, 2019-01..2021-07 for the course's CSV backup); a setting, a path or one of
the platform's own errors is printed as one `taxi-platform: error: ...` line (exit code 1; 2 for a
setting).

Only the parsing is here: each subcommand's work is in taxi_platform/commands/ (sample, mirror,
dbt, db) and taxi_platform/demo/.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from taxi_platform.commands.db import cmd_db
from taxi_platform.commands.dbt import cmd_dbt
from taxi_platform.commands.errors import CliError, is_platform_error, os_error_line
from taxi_platform.commands.files import cmd_mirror, cmd_sample
from taxi_platform.datasets import ALL_DATASETS
from taxi_platform.partitions import add_months, month_range
from taxi_platform.settings import Settings, SettingsError
from taxi_platform.source_specs import expected_published_month, source_datasets

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
        months = month_range(first, last)
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
        args.months = [add_months(last, -k) for k in (2, 1, 0)]
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


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from taxi_platform.demo.run import run_demo  # imports Dagster: only when the demo runs

    return run_demo(args, settings)


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
        if isinstance(exc, CliError) or is_platform_error(exc):
            _error(str(exc))
        elif isinstance(exc, OSError) and exc.filename is not None:
            _error(os_error_line(exc, settings))
        else:
            raise  # unexpected (a bug, an OSError without a path): the traceback helps
        return 1


def _error(message: str) -> None:
    print(f"taxi-platform: error: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
