"""Where the tests find the repository and the shared real data, and where they put their files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REAL_SAMPLES = REPO.parent / "shared" / "data" / "real_samples"
ZONES_CSV = REPO.parent / "shared" / "data" / "taxi_zone_lookup.csv"
# Every folder this session creates starts with it: the leak check knows this session's processes
# by it (another session on the machine has another pid).
# The session's mark, inherited by pytest-xdist's workers (support/processes.py sets the variable
# before they start): their folders and processes count as the session's.
TMP_PREFIX = os.environ.get("PYTEST_TAXI_SESSION") or f"taxi-tests-{os.getpid()}-"


def new_tmp_root() -> Path:
    """A fresh folder for a session or a test's server, removed by whoever made it."""
    # The embedded server runs as `nobody` when we are root: its folder must be traversable,
    # which pytest's tmp_path under /root may not be.
    root = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=os.environ.get("TAXI_TEST_TMP", "/tmp")))
    root.chmod(0o755)
    return root
