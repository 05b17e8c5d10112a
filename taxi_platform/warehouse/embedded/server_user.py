"""The unprivileged user the embedded PostgreSQL runs as when we are root (it refuses to run as
root): running a command as that user, and asking what it can reach."""

from __future__ import annotations

import pwd
import subprocess
from pathlib import Path

UNPRIVILEGED_USER = "nobody"


def server_user() -> pwd.struct_passwd:
    return pwd.getpwnam(UNPRIVILEGED_USER)


def as_server_user(cmd: list[str]) -> list[str]:
    user = server_user()
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", *cmd]


def server_user_can_enter(path: Path) -> bool:
    """As root: whether the server's user reaches `path` (asked of the system, so ACLs count)."""
    return (
        subprocess.run(as_server_user(["test", "-x", str(path)]), cwd="/", capture_output=True).returncode
        == 0
    )


def cannot_reach(what: str, path: Path) -> str:
    return (
        f"the embedded PostgreSQL runs as '{UNPRIVILEGED_USER}' (it refuses to run as root), which "
        f"cannot reach {what} {path}"
    )
