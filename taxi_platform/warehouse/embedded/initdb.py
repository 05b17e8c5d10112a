"""A new embedded server: its data directory (in place, or outside TAXI_HOME), initdb, the
configuration appended to postgresql.conf, and the password and port files root keeps."""

from __future__ import annotations

import os
import pwd
import secrets
import socket

from taxi_platform.warehouse.embedded.data_places import place_data_dir_outside
from taxi_platform.warehouse.embedded.errors import EmbeddedPostgresError
from taxi_platform.warehouse.embedded.root_files import (
    data_dir_fd,
    open_folder,
    open_plain_file,
    opened_folder,
    write_text,
)
from taxi_platform.warehouse.embedded.server_user import server_user, server_user_can_enter

DATABASE = "taxi"
SUPERUSER = "postgres"

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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def initialise(server) -> None:
    """A new data directory (in place, or outside TAXI_HOME as root where `nobody` cannot enter it),
    initdb with a random password, the server's configuration, and the password and port files."""
    server.root.mkdir(parents=True, exist_ok=True)
    port = server.port or free_port()
    password = secrets.token_urlsafe(24)
    owner = server_user() if server._as_root else None
    place = server.root
    if owner:
        with server._root_fd() as fd:
            os.fchmod(fd, 0o755)  # root's; the server's user goes through it to data/ and the log
        if server._data_link.is_symlink() or not server_user_can_enter(server.root.parent):
            place = place_data_dir_outside(server, owner)  # TAXI_HOME/postgres/data is a link to it
        else:
            make_data_dir_in_place(server, owner)
    pwfile = place / ".initdb-password"
    with opened_folder(place) as fd:
        write_text(fd, pwfile.name, password + "\n", owner=owner)
        try:
            result = server._run(
                [
                    "initdb",
                    "-D",
                    str(server.data_dir),
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
        raise EmbeddedPostgresError(f"initdb failed in {server.data_dir}:\n{result.stderr[-2000:]}")
    conf = server.data_dir / "postgresql.conf"
    with data_dir_fd(server.data_dir) as fd:
        conf_fd = open_plain_file(fd, conf.name, os.O_WRONLY | os.O_APPEND, conf)
        with os.fdopen(conf_fd, "a") as fh:
            if owner and os.fstat(conf_fd).st_uid != owner.pw_uid:
                raise EmbeddedPostgresError(f"{conf} is not the one initdb wrote: it is not changed")
            fh.write(SERVER_CONFIG.format(port=port))
    with server._root_fd() as fd:  # as root, root keeps the password; the server's user does not need it
        write_text(fd, server._password_file.name, password, mode=0o600)
        write_text(fd, server._port_file.name, str(port), mode=0o644)


def make_data_dir_in_place(server, owner: pwd.struct_passwd) -> None:
    """TAXI_HOME/postgres/data, empty, owned by the server's user (TAXI_HOME/postgres stays root's)."""
    with server._root_fd() as fd:
        try:
            os.mkdir("data", 0o700, dir_fd=fd)
        except FileExistsError:
            pass  # left by an initdb that failed: initdb says what is wrong with it
        data = open_folder("data", server._data_link, dir_fd=fd)
        try:
            os.fchown(data, owner.pw_uid, owner.pw_gid)
        finally:
            os.close(data)
