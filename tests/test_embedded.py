"""The embedded PostgreSQL: starts on demand under TAXI_HOME, is reused, stops, leaves nothing running."""

from __future__ import annotations

import subprocess

import psutil
import psycopg2

from conftest import _tmp_root
from taxi_platform.warehouse.embedded import EmbeddedPostgres


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
            cur.execute("SELECT current_database(), current_setting('listen_addresses'), "
                        "current_setting('wal_level')")
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
