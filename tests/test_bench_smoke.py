"""`make bench` at a tiny size, end to end (its own PostgreSQL, generated months, every measurement),
so the benchmark cannot rot: the full-size run is not part of the test command (~15 minutes).
(`--no-cli`: the extra reload through `dagster asset materialize` mostly times process starts.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEASURES = ("floor", "floor_unlogged", "ours_first", "ours_reload", "reference")


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and value > 0


def test_bench_runs_end_to_end_and_writes_every_measurement(tmp_path):
    out, md = tmp_path / "latest.json", tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--rows",
            "20000",
            "--small-rows",
            "5000",
            "--pandas-rows",
            "2000",
            "--green-rows",
            "3000",
            "--out",
            str(out),
            "--markdown",
            str(md),
            "--no-cli",
            "--tmp",
            os.environ.get("TAXI_TEST_TMP", "/tmp"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    results = json.loads(out.read_text())
    assert set(results["sizes"]) == {"20k", "5k"}
    for label, size in results["sizes"].items():
        for name in MEASURES:
            m = size[name]
            assert _positive(m["seconds"]) and _positive(m["rows_per_second"]), (label, name, m)
            assert m["cpu_seconds"]["server"] >= 0 and m["cpu_seconds"]["client"] >= 0
        for name in ("ours_first", "ours_reload"):
            ours = size[name]
            assert 50 < ours["peak_rss_mb"] < 2000
            assert set(ours["phases"]) == {"raw_file", "staging", "replace"}
            assert all(v >= 0 for v in ours["phases"].values())
            assert _positive(ours["process_seconds"]) and ours["process_seconds"] >= ours["seconds"]
            assert ours["rows_read"] == ours["staged_rows"] == size["rows"]
            assert ours["final_rows"] == size["rows"] - size["duplicate_rows"]
            assert ours["checks"] == {
                "unique_row_id_is_unique": True,
                "has_rows": True,
                "pickups_in_month": True,
                "rows_match_file": True,
            }
        assert size["ours_reload"]["previous_rows"] == size["ours_reload"]["final_rows"]
        assert set(size["reference"]["phases"]) == {"create_truncate", "copy", "update_md5", "merge"}
        # The reference's MERGE inserts the in-file duplicates too (one of its flaws).
        assert size["reference"]["rows_inserted"] == size["rows"]
        assert all(_positive(v) for v in size["ratios"].values()), size["ratios"]

    pandas = results["pandas"]
    assert pandas["rows"] == 2000 and _positive(pandas["seconds"])
    assert set(pandas["extrapolated_seconds"]) == {"20k", "5k"}
    assert all(_positive(v) for v in pandas["extrapolated_seconds"].values())

    assert set(results["targets"]) == {
        "ours_first_vs_floor",
        "ours_reload_vs_first",
        "reference_vs_ours",
        "pandas_vs_ours",
        "peak_rss_mb",
        "dbt_vs_ingest",
    }
    for name, target in results["targets"].items():
        assert _positive(target["value"]) and isinstance(target["met"], bool), (name, target)
    dbt = results["dbt"]
    assert dbt["green_rows"] == 3000 and dbt["green_ingest"]["final_rows"] > 2900
    assert dbt["green_ingest"]["checks"] == {
        "unique_row_id_is_unique": True,
        "has_rows": True,
        "pickups_in_month": True,
        "rows_match_file": True,
    }
    # The dbt tests of the month ran as asset checks, and all passed.
    for build in ("first_build", "dbt"):
        assert dbt[build]["checks_passed"] >= 7 and dbt[build]["checks_failed"] == 0, dbt[build]
    assert dbt["first_build_ratio"] == dbt["first_build"]["seconds"] / dbt["ingest_seconds"]
    assert dbt["ingest_seconds"] == dbt["yellow_ingest_seconds"] + dbt["green_ingest"]["seconds"]
    assert (
        dbt["ratio"] == dbt["seconds"] / dbt["ingest_seconds"] == results["targets"]["dbt_vs_ingest"]["value"]
    )
    machine = results["machine"]
    assert machine["nproc"] >= 1 and machine["memory_gb"] > 0 and machine["postgres"].startswith("PostgreSQL")

    text = md.read_text()
    assert "| size | measure | seconds | rows/s | peak RSS |" in text and "20k" in text
    assert "Targets" in text and "dbt build of 2019-01 for both colours" in text
