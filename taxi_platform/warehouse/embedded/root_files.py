"""Folders and files root uses where the server's user writes too: opened without following a
symlink, in folders checked to be root's, refused unless plain files with one link; folders root
deletes are checked to be root's first (see the package's docstring)."""

from __future__ import annotations

import errno
import fcntl
import os
import pwd
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from taxi_platform.warehouse.embedded.errors import EmbeddedPostgresError


def not_root_only(st: os.stat_result) -> bool:
    """Whether a folder is not root's, or users other than root may create, rename or delete in it."""
    return st.st_uid != 0 or bool(st.st_mode & 0o022)


def check_root_chain(path: Path) -> None:
    """As root: `path` and every folder above it, as written and with symlinks resolved, are root's
    and only root may change them (above `path`, a folder writable by all with the sticky bit, such
    as /tmp, is accepted: nobody else may rename or delete root's entries in it)."""
    lexical = Path(os.path.abspath(path))
    real = Path(os.path.realpath(path))
    for folder in dict.fromkeys([lexical, *lexical.parents, real, *real.parents]):
        st = os.lstat(folder)
        if stat.S_ISLNK(st.st_mode):
            bad = st.st_uid != 0
        else:
            sticky_above = folder not in (lexical, real) and bool(st.st_mode & stat.S_ISVTX)
            bad = (
                not stat.S_ISDIR(st.st_mode)
                or st.st_uid != 0
                or (bool(st.st_mode & 0o022) and not sticky_above)
            )
        if bad:
            raise EmbeddedPostgresError(
                f"{folder} is not a folder owned by root that only root may change: the embedded "
                f"PostgreSQL does not use {path} (fix or remove it)"
            )


def system_dir(path: Path) -> Path:
    """SYSTEM_CACHE or SYSTEM_DATA: created root-owned, mode 755; refused unless it and the folders
    above it are root's and only root may change them."""
    path.mkdir(parents=True, exist_ok=True)
    check_root_chain(path)
    if stat.S_IMODE(path.stat().st_mode) != 0o755:
        os.chmod(path, 0o755)
    return path


def open_folder(path: Path | str, where: Path, *, dir_fd: int | None = None, follow: bool = False) -> int:
    """The folder `path` open (relative to `dir_fd` if given), never through a symlink unless `follow`."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        return os.open(path, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise EmbeddedPostgresError(
                f"{where} is a symbolic link or a file where the embedded PostgreSQL expects a folder: "
                "it is not followed (remove it if you did not make it)"
            ) from None
        raise


@contextmanager
def opened_folder(path: Path) -> Iterator[int]:
    """`path` open as a folder. As root: never through a symlink, and only if it is root's and only
    root may write in it (so no other user can swap what is in it)."""
    as_root = os.geteuid() == 0
    fd = open_folder(path, path, follow=not as_root)
    try:
        if as_root and not_root_only(os.fstat(fd)):
            raise EmbeddedPostgresError(
                f"{path} is not owned by root or is writable by others: the embedded PostgreSQL "
                "does not use it as root (fix or remove it)"
            )
        yield fd
    finally:
        os.close(fd)


@contextmanager
def data_dir_fd(data_dir: Path) -> Iterator[int]:
    """The data directory open through its folder (root's, as root), never through a symlink."""
    with opened_folder(data_dir.parent) as parent:
        fd = open_folder(data_dir.name, data_dir, dir_fd=parent)
    try:
        yield fd
    finally:
        os.close(fd)


def open_plain_file(dir_fd: int, name: str, flags: int, where: Path, mode: int = 0o600) -> int:
    """`name` in the folder open as `dir_fd`: never through a symlink, and only a plain file with one
    link (not a FIFO, a device, or a hard link to a file elsewhere)."""
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):
            fd = -1
        else:
            raise
    if fd < 0 or not stat.S_ISREG((st := os.fstat(fd)).st_mode) or st.st_nlink != 1:
        if fd >= 0:
            os.close(fd)
        raise EmbeddedPostgresError(
            f"{where} is not a plain file (a symbolic link, a hard link, a FIFO or a device): the "
            "embedded PostgreSQL does not use it (remove it if you did not make it)"
        )
    return fd


def read_text(dir_fd: int, name: str, where: Path, *, owner: int | None = None, last: int = 0) -> str:
    """The file `name` (its `last` bytes only if given), refused unless `owner` owns it, if given."""
    fd = open_plain_file(dir_fd, name, os.O_RDONLY, where)
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if owner is not None and st.st_uid != owner:
            raise EmbeddedPostgresError(
                f"{where} is not owned by {pwd.getpwuid(owner).pw_name}: the embedded PostgreSQL does "
                "not use it (remove it if you did not make it)"
            )
        if last:
            fh.seek(max(0, st.st_size - last))
        return fh.read().decode(errors="replace")


def write_text(
    dir_fd: int, name: str, text: str, *, mode: int = 0o600, owner: pwd.struct_passwd | None = None
) -> None:
    """`name` in the folder open as `dir_fd` replaced by a new file (never written through whatever
    was there), with `mode` and, if given, `owner`."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    fd = os.open(
        name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd
    )
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, owner.pw_uid, owner.pw_gid)
        fh.write(text)


def remove_root_folder(path: Path) -> None:
    """As root: delete `path`, a folder root owns and only root may change, with all in it.
    `shutil.rmtree` walks it by file descriptors and never follows the symlinks the server's user
    may have left in it (`avoids_symlink_attacks`); the folders above `path` are checked by callers."""
    if not shutil.rmtree.avoids_symlink_attacks:
        raise EmbeddedPostgresError(
            f"shutil.rmtree may follow symbolic links on this system: {path} is not deleted as root"
        )
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or not_root_only(st):
        raise EmbeddedPostgresError(
            f"{path} is not a folder owned by root that only root may change: it is not deleted"
        )
    shutil.rmtree(path)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
