"""Sample data: generated monthly trip files and a local HTTP mirror of the release layout."""

from taxi_platform.sample.generator import (
    REAL_ROW_COUNTS,
    GeneratedFile,
    full_size_rows,
    generate_month,
)
from taxi_platform.sample.mirror import (
    MirrorRequestHandler,
    MirrorServer,
    Route,
    mirror_path,
    write_mirror,
)

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
