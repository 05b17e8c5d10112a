"""Sample data: generated monthly trip files and a local HTTP mirror of the release layout."""

from taxi_platform.sample.generator import GeneratedFile, generate_month
from taxi_platform.sample.mirror import (
    MirrorRequestHandler,
    MirrorServer,
    Route,
    mirror_path,
    write_mirror,
)
from taxi_platform.sample.row_counts import REAL_ROW_COUNTS, full_size_rows

__all__ = [
    "REAL_ROW_COUNTS",
    "GeneratedFile",
    "MirrorRequestHandler",
    "MirrorServer",
    "Route",
    "full_size_rows",
    "generate_month",
    "mirror_path",
    "write_mirror",
]
