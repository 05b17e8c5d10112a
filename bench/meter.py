"""CPU seconds next to wall seconds: on a shared machine the wall time of a measurement depends on
what else runs, its CPU time much less. Linux only (reads /proc); elsewhere the CPU is None."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Any

import psycopg2

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, list[int]]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), [int(x) for x in fields[11:15]]  # ppid; utime stime cutime cstime


def server_cpu(data_dir: Path) -> float | None:
    """CPU seconds used so far by a PostgreSQL server: the postmaster with its ended children, plus
    every live backend, worker and background process."""
    try:
        postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
        _, times = _stat(postmaster)
        total = sum(times)
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    ppid, times = _stat(int(entry))
                except (OSError, IndexError, ValueError):
                    continue
                if ppid == postmaster:
                    total += times[0] + times[1]
        return total / _TICK
    except (OSError, ValueError):
        return None


def client_cpu() -> float:
    """CPU seconds of this process and its ended children (psql, gunzip, the Dagster process)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def fetch_value(cur: psycopg2.extensions.cursor) -> Any:
    """The first column of the first row of the query `cur` just executed (one that returns a row)."""
    row = cur.fetchone()
    if row is None:
        raise RuntimeError(f"no row from {cur.query!r}")
    return row[0]


def settle(url: str, timeout: float = 600.0) -> None:
    """Before a measurement: do now the background work the previous measurements left (autovacuum
    would otherwise vacuum the month just loaded during the next measurement), then CHECKPOINT, so
    that no measurement pays for another's."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:  # a running autovacuum would block VACUUM's locks
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")
                if fetch_value(cur) == 0:
                    break
                time.sleep(1.0)
            cur.execute("VACUUM (ANALYZE)")
            cur.execute("CHECKPOINT")
    finally:
        conn.close()
