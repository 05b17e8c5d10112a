"""Our month load, measured as the real thing: a Dagster run of raw file -> staging -> final (with
its checks) for one month, in its own process, against the benchmark's PostgreSQL.

`materialize()` runs `python -m bench.materialize`: the code location's definitions, resources and
instance, the steps executed in that one process, which reports its own peak RSS (VmHWM).
`materialize(cli=True)` runs `dagster asset materialize` instead, as a person types it: the code
location's executor (in-process) under the CLI's own launch. Times:

- `seconds`: the run, from its start to its success event (the Dagster instance's run stats);
- `process_seconds`: the whole command, including starting Python and importing Dagster and the
  code location (a fixed cost per run, whatever the file size);
- `phases`: each asset's own `duration_seconds` metadata (download+verify, staging COPY, replace),
  and `steps`: each step's wall time as Dagster recorded it (the replace step includes the checks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, Protocol, TypedDict

from taxi_platform.assets.trip_keys import final_key, raw_file_key, staging_key
from taxi_platform.datasets import DatasetSpec

REPO = Path(__file__).resolve().parents[1]


# An external server's URL (`python -m bench.run --postgres-url`); None: the embedded one.
EXTERNAL_POSTGRES_URL: str | None = None


class ChildPaths(TypedDict):
    """The paths a child run takes (`materialize(..., **paths)`, `build_dbt(..., **paths)`)."""

    home: Path
    mirror: Path
    dagster_home: Path
    log_file: Path


def child_env(home: Path, mirror: Path, dagster_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAXI_")}
    env.update(
        {
            "TAXI_HOME": str(home),  # the embedded PostgreSQL under it: the benchmark's server
            "TAXI_SOURCE": "course",
            "TAXI_SOURCE_URL": mirror.as_uri(),
            "DAGSTER_HOME": str(dagster_home),
        }
    )
    if EXTERNAL_POSTGRES_URL:
        env["TAXI_POSTGRES_URL"] = EXTERNAL_POSTGRES_URL
    return env


def materialize(
    spec: DatasetSpec,
    month: date,
    *,
    home: Path,
    mirror: Path,
    dagster_home: Path,
    log_file: Path,
    cli: bool = False,
) -> dict:
    selection = ",".join(k.to_user_string() for k in (raw_file_key(spec), staging_key(spec), final_key(spec)))
    if cli:
        command = [
            str(Path(sys.executable).parent / "dagster"),
            "asset",
            "materialize",
            "-m",
            "taxi_platform.definitions",
            "--select",
            selection,
            "--partition",
            f"{month:%Y-%m-01}",
        ]
    else:
        command = [sys.executable, "-m", "bench.materialize", spec.name, f"{month:%Y-%m}"]
    proc, process_seconds = _run_child(
        command, home=home, mirror=mirror, dagster_home=dagster_home, log_file=log_file
    )
    peak_kb = None
    if not cli:
        peak_kb = json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_kb"]
    result = _run_details(dagster_home, spec)
    result.update(process_seconds=process_seconds, peak_rss_mb=peak_kb / 1024 if peak_kb else None)
    return result


def build_dbt(month: date | None, *, home: Path, mirror: Path, dagster_home: Path, log_file: Path) -> dict:
    """A Dagster run of the monthly dbt models for `month` (both colours), or of the zones and
    unpartitioned models when `month` is None: {"seconds", "process_seconds", "checks"}."""
    args = ["dbt", f"{month:%Y-%m}"] if month else ["reference"]
    _proc, process_seconds = _run_child(
        [sys.executable, "-m", "bench.materialize", *args],
        home=home,
        mirror=mirror,
        dagster_home=dagster_home,
        log_file=log_file,
    )
    import dagster as dg

    with _dagster_home(dagster_home), dg.DagsterInstance.get() as instance:
        run = instance.get_runs(limit=1)[0]
        if run.status != dg.DagsterRunStatus.SUCCESS:
            raise RuntimeError(f"run {run.run_id} ended {run.status}")
        stats = instance.get_run_stats(run.run_id)
        checks = [
            r.get_dagster_event().asset_check_evaluation_data.passed
            for r in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        ]
    return {
        "seconds": _run_seconds(stats),
        "process_seconds": process_seconds,
        "run_id": run.run_id,
        "checks_passed": sum(checks),
        "checks_failed": len(checks) - sum(checks),
    }


@contextmanager
def _dagster_home(path: Path):
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(path)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous


class _RunStats(Protocol):
    """What a run's stats (`DagsterInstance.get_run_stats`) give: its id and start and end times."""

    @property
    def run_id(self) -> str: ...
    @property
    def start_time(self) -> float | None: ...
    @property
    def end_time(self) -> float | None: ...


def _run_seconds(stats: _RunStats) -> float:
    """The run's wall time, from its start to its end event (both recorded for an ended run)."""
    if stats.start_time is None or stats.end_time is None:
        raise RuntimeError(f"run {stats.run_id} has no recorded start or end time")
    return stats.end_time - stats.start_time


def _run_child(
    command: list[str], *, home: Path, mirror: Path, dagster_home: Path, log_file: Path
) -> tuple[subprocess.CompletedProcess, float]:
    dagster_home.mkdir(parents=True, exist_ok=True)
    instance_yaml = dagster_home / "dagster.yaml"
    if not instance_yaml.exists():
        instance_yaml.write_text("telemetry:\n  enabled: false\n")
    with open(log_file, "a") as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        started = time.monotonic()
        proc = subprocess.run(
            command,
            cwd=REPO,
            env=child_env(home, mirror, dagster_home),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        process_seconds = time.monotonic() - started
        log.write(proc.stdout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed (exit {proc.returncode}); see {log_file}")
    return proc, process_seconds


def _run_details(dagster_home: Path, spec: DatasetSpec) -> dict:
    import dagster as dg

    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    try:
        with dg.DagsterInstance.get() as instance:
            run = instance.get_runs(limit=1)[0]
            if run.status != dg.DagsterRunStatus.SUCCESS:
                raise RuntimeError(f"run {run.run_id} ended {run.status}")
            stats = instance.get_run_stats(run.run_id)
            steps = {
                s.step_key: s.end_time - s.start_time
                for s in instance.get_run_step_stats(run.run_id)
                if s.end_time and s.start_time
            }
            metadata: dict[dg.AssetKey, dict[str, Any]] = {}
            for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
                mat = record.get_dagster_event().step_materialization_data.materialization
                metadata[mat.asset_key] = {k: v.value for k, v in mat.metadata.items()}
            checks: dict[str, bool] = {}
            for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
                evaluation = record.get_dagster_event().asset_check_evaluation_data
                checks[evaluation.check_name] = evaluation.passed
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous
    raw, staging, final = (metadata[k] for k in (raw_file_key(spec), staging_key(spec), final_key(spec)))
    return {
        "seconds": _run_seconds(stats),
        "run_id": run.run_id,
        "phases": {
            "raw_file": raw["duration_seconds"],
            "staging": staging["duration_seconds"],
            "replace": final["duration_seconds"],
        },
        "steps": steps,
        "rows_read": raw["rows"],
        "staged_rows": final["staged_rows"],
        "final_rows": final["dagster/row_count"],
        "duplicates_dropped": final["duplicates_dropped"],
        "previous_rows": int(final["previous_rows"]),  # text in the metadata: no chart of it
        "checks": checks,
    }
