"""Errors a person can fix (a path, a setting), told as one line without a traceback: `CliError`,
why a path cannot be written, and which errors are the platform's own."""

from __future__ import annotations

import os
from pathlib import Path

from taxi_platform.settings import Settings


class CliError(Exception):
    """Something the person can fix (a path, a setting), told in one line without a traceback."""


def ensure_home(settings: Settings) -> None:
    """TAXI_HOME must be a folder that can be created and written in; say which, if not."""
    home = settings.home
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create {home}: {os_error_reason(exc, home)} (TAXI_HOME)") from None
    if not os.access(home, os.W_OK | os.X_OK):
        raise CliError(f"cannot write in {home}: permission denied (TAXI_HOME)")


def os_error_reason(exc: OSError, path: Path | None = None) -> str:
    """Why `path` (default: the error's own) cannot be created or written."""
    path = path or (Path(exc.filename) if exc.filename is not None else None)
    if path is not None and isinstance(exc, (FileExistsError, NotADirectoryError)):
        # A regular file where a folder should be: name it rather than just say "File exists".
        blocker = next((p for p in (path, *path.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            return f"{blocker} is a file, not a folder"
    return exc.strerror or str(exc)


def os_error_line(exc: OSError, settings: Settings | None) -> str:
    """`<path>: <reason>`, naming TAXI_HOME when the path lies under it."""
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    line = f"{' -> '.join(paths)}: {os_error_reason(exc)}"
    if settings is not None and any(Path(p).resolve().is_relative_to(settings.home) for p in paths):
        line += " (under TAXI_HOME)"
    return line


def is_platform_error(exc: BaseException) -> bool:
    """The platform's own error classes (EmbeddedPostgresError, WarehouseError, DownloadFailed,
    DbtManifestMissing, ...): their messages are written for the person running the command."""
    return type(exc).__module__.split(".")[0] == "taxi_platform"
