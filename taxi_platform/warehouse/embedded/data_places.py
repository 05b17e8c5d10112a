"""Data directories outside TAXI_HOME, as root, where `nobody` cannot enter it: SYSTEM_DATA/<key>,
the key derived from TAXI_HOME/postgres's path only (the link to it is checked, never followed);
placed there on first use, removed with their TAXI_HOME, or once orphaned (TAXI_HOME deleted)."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import stat
from pathlib import Path

from taxi_platform.warehouse.embedded.errors import EmbeddedPostgresError
from taxi_platform.warehouse.embedded.root_files import (
    check_root_chain,
    data_dir_fd,
    file_lock,
    opened_folder,
    read_text,
    remove_root_folder,
    system_dir,
    write_text,
)
from taxi_platform.warehouse.embedded.server_user import (
    UNPRIVILEGED_USER,
    cannot_reach,
    server_user_can_enter,
)

# Read when used, so that tests can point it at a folder of their own (root's, enterable by all).
SYSTEM_DATA = Path("/var/lib/taxi-platform")  # data directories placed outside TAXI_HOME


def place_key(root: Path) -> str:
    return hashlib.sha256(str(root).encode()).hexdigest()[:16]


def postmaster_alive(data_dir: Path) -> bool:
    try:
        with data_dir_fd(data_dir) as fd:
            pid = int(read_text(fd, "postmaster.pid", data_dir / "postmaster.pid").split()[0])
    except (OSError, ValueError, IndexError, EmbeddedPostgresError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, OverflowError):
        return False
    return True


def remove_orphaned_data_dirs() -> list[Path]:
    """As root: delete the data folders in SYSTEM_DATA whose TAXI_HOME no longer points at them (it
    was deleted without `make clean`) and whose server does not run."""
    if not SYSTEM_DATA.is_dir():
        return []
    check_root_chain(SYSTEM_DATA)
    with file_lock(SYSTEM_DATA / ".lock"):
        return remove_orphans(SYSTEM_DATA, keep=None)


def remove_orphans(base: Path, keep: Path | None) -> list[Path]:
    removed = []
    for place in base.iterdir():
        if place.name.startswith(".") or place == keep or place.is_symlink() or not place.is_dir():
            continue
        try:
            with opened_folder(place) as fd:
                owner = Path(read_text(fd, "home", place / "home", owner=0).strip())
        except (OSError, EmbeddedPostgresError):
            continue  # not one of ours
        if place_key(owner) != place.name:
            continue  # not one of ours either
        try:
            if os.readlink(owner / "data") == str(place / "pgdata"):
                continue  # its TAXI_HOME still uses it
        except OSError:
            pass  # no link there: TAXI_HOME was deleted, or made again without it
        if postmaster_alive(place / "pgdata"):
            continue
        try:
            remove_root_folder(place)
        except (OSError, EmbeddedPostgresError):
            continue
        removed.append(place)
    return removed


def outside_place(root: Path) -> Path:
    """SYSTEM_DATA/<key> of TAXI_HOME/postgres at `root`: the folder of its data directory (pgdata)
    and the server's log when they are placed outside TAXI_HOME."""
    return SYSTEM_DATA / place_key(root)


def remove_outside_place(place: Path) -> None:
    """Delete a data directory's place in SYSTEM_DATA (root's, checked first)."""
    check_root_chain(SYSTEM_DATA)
    with file_lock(SYSTEM_DATA / ".lock"):
        remove_root_folder(place)


def place_data_dir_outside(server, owner: pwd.struct_passwd) -> Path:
    """Make SYSTEM_DATA/<key> with an empty data directory owned by the server's user, and link
    TAXI_HOME/postgres/data to it (`server` is the EmbeddedPostgres)."""
    try:
        base = system_dir(SYSTEM_DATA)
        place = outside_place(server.root)
        with file_lock(base / ".lock"):
            remove_orphans(base, keep=place)
            if place.is_symlink():
                place.unlink()
            elif os.path.lexists(place):  # from an earlier TAXI_HOME at this path, deleted since
                if postmaster_alive(place / "pgdata"):
                    server._run(
                        ["pg_ctl", "-D", str(place / "pgdata"), "-w", "-t", "60", "-m", "fast", "stop"]
                    )
                remove_root_folder(place)
            place.mkdir(mode=0o755)
            os.chmod(place, 0o755)
            with opened_folder(place) as fd:
                write_text(fd, "home", f"{server.root}\n", mode=0o644)  # whose it is (for the clean-up)
                os.mkdir("pgdata", 0o700, dir_fd=fd)
                os.chown("pgdata", owner.pw_uid, owner.pw_gid, dir_fd=fd, follow_symlinks=False)
            with server._root_fd() as fd:
                try:
                    st = os.lstat("data", dir_fd=fd)
                except FileNotFoundError:
                    pass
                else:
                    if stat.S_ISDIR(st.st_mode):  # an in-place attempt that never finished initdb
                        shutil.rmtree("data", dir_fd=fd)
                    else:
                        os.unlink("data", dir_fd=fd)
                os.symlink(place / "pgdata", "data", dir_fd=fd)
    except OSError as exc:
        raise EmbeddedPostgresError(
            f"{cannot_reach('the data directory under', server.root.parent)}, and placing it in "
            f"{SYSTEM_DATA} instead failed: {exc.strerror or exc} ({exc.filename}). Make "
            f"{SYSTEM_DATA} writable by root, set TAXI_HOME to a folder '{UNPRIVILEGED_USER}' can "
            "enter, or set TAXI_POSTGRES_URL to use an external PostgreSQL."
        ) from None
    if not server_user_can_enter(place / "pgdata"):
        raise EmbeddedPostgresError(
            f"{cannot_reach('the data directory', place / 'pgdata')}: make "
            f"{SYSTEM_DATA.parent} enterable by all, or set TAXI_POSTGRES_URL"
        )
    return place
