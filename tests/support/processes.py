"""The processes of this test session still running: servers, daemons and browsers it started
(a descendant of this process, or one whose command line, working folder or environment names this
session: the embedded PostgreSQL is detached by pg_ctl, and run workers outlive their parent) that
were not there when the session started. Linux: read from /proc."""

from __future__ import annotations

import os
import re
from pathlib import Path

from support.paths import TMP_PREFIX

PROC = Path("/proc")
# Set by `snapshot()`, inherited by every process the session starts (unless given a bare env).
SESSION_VARIABLE = "PYTEST_TAXI_SESSION"
# What the suite starts: the embedded server, Dagster's processes, the emulators, the browser.
WATCHED = re.compile(
    r"(^|/)(postgres|dagster|dagster-daemon|dagster-webserver|bqemulator|chromium|chrome|headless_shell)$"
)


def _running() -> set[int]:
    return {int(p.name) for p in PROC.iterdir() if p.name.isdigit()}


def snapshot() -> set[int]:
    """Marks this session's environment; the ids of the processes running now."""
    os.environ[SESSION_VARIABLE] = TMP_PREFIX
    return _running()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # gone meanwhile, or another user's
        return b""


def _parent(pid: int) -> int:
    stat = _read(PROC / str(pid) / "stat")
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else 0


def _descends_from(pid: int, ancestor: int) -> bool:
    seen = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        pid = _parent(pid)
        if pid == ancestor:
            return True
    return False


def _watched(argv: list[str]) -> bool:
    if "gcp_storage_emulator" in argv:  # python -m gcp_storage_emulator
        return True
    # A console script runs as `python .../bin/dagster-daemon ...`: its first two words.
    return any(WATCHED.search(word) for word in argv[:2])


def _ours(pid: int, argv: list[str]) -> bool:
    if _descends_from(pid, os.getpid()):
        return True
    mark = TMP_PREFIX.encode()
    try:
        cwd = os.readlink(PROC / str(pid) / "cwd").encode()
    except OSError:
        cwd = b""
    # TMP_PREFIX is in the environment as SESSION_VARIABLE's value, or in a TAXI_HOME/DAGSTER_HOME.
    return any(mark in text for text in (" ".join(argv).encode(), cwd, _read(PROC / str(pid) / "environ")))


def leftover_processes(at_start: set[int]) -> list[str]:
    """'pid: command line' of each watched process of this session that is still running."""
    left = []
    for pid in sorted(_running() - at_start - {os.getpid()}):
        argv = [a.decode(errors="replace") for a in _read(PROC / str(pid) / "cmdline").split(b"\0") if a]
        if argv and _watched(argv) and _ours(pid, argv):
            left.append(f"{pid}: {' '.join(argv)[:300]}")
    return left
