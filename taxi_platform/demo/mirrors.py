"""How the demo (and `taxi-platform mirror`) imitates each source on this machine: write its files,
serve them on 127.0.0.1, and point the settings at them (the TLC's CloudFront layout, or the
course's GitHub releases)."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from taxi_platform.settings import Settings


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
    from taxi_platform.sample.mirror import write_mirror
    from taxi_platform.sample.row_counts import full_size_rows
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
