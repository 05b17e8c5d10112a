"""`taxi-platform demo` (the README's first command) as a person runs it: progress and a summary by
default, dbt's and Dagster's logs only with --verbose, a failure's root cause in one line at the end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

from taxi_platform.sample.zones import zone_rows

BIN = Path(sys.executable).parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _demo(tmp_root: Path, env_extra: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    home = tmp_root / f"home_{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAXI_", "DAGSTER_"))}
    env.update({"TAXI_HOME": str(home), "PATH": f"{BIN}:/usr/bin:/bin", **env_extra})
    return subprocess.run(
        [str(BIN / "taxi-platform"), "demo", *args], env=env, capture_output=True, text=True, timeout=900
    )


def test_the_demo_prints_progress_and_a_summary_only(session_root, pg_url):
    name = uuid.uuid4().hex[:8]
    schemas = {
        "TAXI_POSTGRES_URL": pg_url,
        "TAXI_WAREHOUSE_SCHEMA": f"w_{name}",
        "TAXI_STAGING_SCHEMA": f"s_{name}",
        "TAXI_DBT_SCHEMA": f"d_{name}",
    }
    done = _demo(session_root, schemas, "--months", "2019-01", "--datasets", "yellow,green", "--rows", "2000")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert re.search(r"^yellow 2019-01: 2,000 rows read, [0-9,]+ trips in the final table", out, re.M)
    assert re.search(r"^green 2019-01: 2,000 rows read, ", out, re.M)
    assert re.search(r"^dbt: 1 month\(s\) built in [0-9.]+ s \(dbt.s log: .*demo-dbt.log\)$", out, re.M)
    assert "Top 10 pickup zones by revenue, 2019-01 .. 2019-01" in out
    # The zones are the real ones (the mirror serves the public table, the dbt seed).
    top = out.split("Top 10 pickup zones by revenue", 1)[1].splitlines()[1:11]
    assert len(top) == 10 and all(line.startswith("  ") for line in top), top
    names = {f"{zone} ({borough})" for _, borough, zone, _ in zone_rows()}
    assert all(re.split(r"\s{2,}", line.strip())[0] in names for line in top), top
    assert not ANSI.search(out + done.stderr)  # no colour codes
    assert "Running with dbt=" not in out + done.stderr  # dbt's log: --verbose only
    assert len(out.splitlines()) < 40


def test_a_failed_demo_ends_with_its_root_cause_in_one_line(session_root):
    secret = "Pw-not-to-print"
    done = _demo(
        session_root,
        {"TAXI_POSTGRES_URL": f"postgresql://taxi:{secret}@127.0.0.1:1/taxi"},
        "--months",
        "2019-01",
        "--datasets",
        "yellow",
        "--rows",
        "100",
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("demo failed: warehouse__taxi_zones: cannot connect to PostgreSQL"), done.stderr[
        -2000:
    ]
    assert "Traceback" not in done.stdout + done.stderr
    assert secret not in done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) < 10
