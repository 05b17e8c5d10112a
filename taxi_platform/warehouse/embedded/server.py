"""EmbeddedPostgres: the embedded server of TAXI_HOME/postgres, started on demand and reused across
runs (`ensure_running`), stopped (`stop`), deleted (`remove`); its connection URL and details.
Starting is guarded by a file lock, so concurrent runs share one server (see the package's docstring)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from taxi_platform.warehouse.embedded.binaries import server_bin_dir
from taxi_platform.warehouse.embedded.data_places import outside_place, remove_outside_place
from taxi_platform.warehouse.embedded.errors import EmbeddedPostgresError
from taxi_platform.warehouse.embedded.initdb import DATABASE, SUPERUSER, initialise
from taxi_platform.warehouse.embedded.root_files import (
    file_lock,
    open_folder,
    open_plain_file,
    opened_folder,
    read_text,
    remove_root_folder,
)
from taxi_platform.warehouse.embedded.server_user import (
    as_server_user,
    cannot_reach,
    server_user,
    server_user_can_enter,
)

LOG_NAME = "server.log"  # beside the data directory


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
        return outside_place(self.root)

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
        fd = open_folder(self.root, self.root, follow=not self._as_root)
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
            cmd = as_server_user(cmd)
            kwargs.setdefault("cwd", "/")
        return subprocess.run(cmd, capture_output=True, text=True, **kwargs)

    def _prepare_log(self, owner: pwd.struct_passwd) -> None:
        """As root: the server's log, a plain file the server's user owns (pg_ctl, run as that user,
        appends to it), in a folder root owns."""
        log = self.log_file
        with opened_folder(log.parent) as fd:
            log_fd = open_plain_file(fd, LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, log)
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
            with opened_folder(log.parent) as fd:
                return read_text(fd, LOG_NAME, log, last=size)
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
        with file_lock(self.root.parent / ".postgres.lock"):
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

    def _read_root_file(self, path: Path) -> str:
        with self._root_fd() as fd:
            return read_text(fd, path.name, path, owner=0 if self._as_root else None)

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
                initialise(self)
            if not self.is_running():
                self._start()
            self._ensure_database()
        return self.url()

    def _start(self) -> None:
        if self._as_root and not server_user_can_enter(self.data_dir):
            system_data = self._outside_place.parent  # SYSTEM_DATA
            raise EmbeddedPostgresError(
                f"{cannot_reach('the data directory', self.data_dir)} (a folder above it was made "
                f"private after it was created). Remove {self.root} (`taxi-platform db remove`): the "
                f"next run creates it again, outside TAXI_HOME if need be (in {system_data}); or set "
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
            self._prepare_log(server_user())
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
                remove_outside_place(place)
            if self._as_root:  # root's (see _lock); the server's user may have left symlinks in data/
                remove_root_folder(self.root)
            else:
                shutil.rmtree(self.root)
        return True


def embedded_server(settings) -> EmbeddedPostgres:
    """The embedded PostgreSQL of TAXI_HOME's settings (whether or not TAXI_POSTGRES_URL is set)."""
    return EmbeddedPostgres(settings.embedded_pg_dir, port=settings.embedded_port)
