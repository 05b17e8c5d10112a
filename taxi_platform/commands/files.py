"""`taxi-platform sample` (one generated month of the source's format) and `taxi-platform mirror`
(generated months written, or served, as the source publishes them)."""

from __future__ import annotations

import argparse
import time
from contextlib import AbstractContextManager
from pathlib import Path

from taxi_platform.commands.errors import CliError, os_error_reason
from taxi_platform.settings import Settings
from taxi_platform.source_specs import source_datasets


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
        from taxi_platform.sample.generator import generate_month
        from taxi_platform.sample.row_counts import full_size_rows

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
        raise CliError(f"cannot write {args.out}: {os_error_reason(exc)} (argument out)") from None
    print(
        f"{out.path}: {out.rows:,} rows ({out.duplicate_rows:,} exact duplicates, "
        f"{out.out_of_month_rows:,} out of month, {out.unattributed_rows:,} unattributed) "
        f"in {time.monotonic() - started:.1f} s"
    )
    return 0


def cmd_mirror(args: argparse.Namespace, settings: Settings) -> int:
    """Write (or serve) generated months as the source publishes them: the TLC's CloudFront
    layout, or the course's GitHub releases (with a releases API for its sensor)."""
    from taxi_platform.demo.mirrors import DEMO_MIRRORS

    mirror = DEMO_MIRRORS[settings.source]
    root = Path(args.root) if args.root else settings.home / "mirror" / settings.source
    setting = "TAXI_TLC_URL" if settings.source == "tlc" else "TAXI_SOURCE_URL"
    if args.action == "write":
        mirror.write(root, args)
        print(f"files written under {root}; use {setting}={root.resolve().as_uri()}")
        return 0
    if settings.source == "tlc":
        from taxi_platform.sample.tlc_mirror import serve_tlc_mirror

        tlc_server = serve_tlc_mirror(root, port=args.port)
        server: AbstractContextManager = tlc_server
        base, note = tlc_server.url, ""
    else:
        from taxi_platform.sample.mirror import MirrorServer
        from taxi_platform.sample.releases_server import register_releases_api

        releases_server = MirrorServer(root, port=args.port)
        # A GitHub-compatible releases API for the release sensor.
        api = register_releases_api(releases_server)
        server = releases_server
        server.__enter__()
        base = releases_server.base_url
        note = f", TAXI_RELEASES_API_URL={base}{api}"
    try:
        print(f"Serving {root} at {base} ({setting}={base}{note}); Ctrl-C stops.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        server.__exit__(None, None, None)
