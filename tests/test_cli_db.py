"""`taxi-platform db status` / `db env`: where a SQL client (psql, pgAdmin, plain dbt) connects."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAXI_")}
    return {**env, "TAXI_HOME": str(home), "PATH": f"{BIN}:/usr/bin:/bin"}


def test_db_status_names_the_connection_but_not_the_password(session_root, embedded_pg, pg_url):
    url = urlsplit(pg_url)
    done = subprocess.run(
        [str(BIN / "taxi-platform"), "db", "status"],
        env=_env(session_root / "home"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line.split(None, 1)[1] for line in done.stdout.splitlines()[1:]}
    assert done.stdout.splitlines()[0].endswith(": running")
    assert (lines["host"], lines["port"], lines["database"], lines["user"]) == (
        "127.0.0.1",
        str(url.port),
        "taxi",
        "postgres",
    )
    assert lines["password"].startswith(f"in {session_root / 'home' / 'postgres' / 'password'}")
    assert lines["schemas"] == "taxi (final tables), taxi_staging (staging), taxi_dbt (dbt models)"
    assert url.password not in done.stdout + done.stderr


def test_plain_dbt_inside_the_project_connects_with_db_env(session_root, embedded_pg, pg_url):
    env = _env(session_root / "home")
    exports = subprocess.run(
        [str(BIN / "taxi-platform"), "db", "env"], env=env, capture_output=True, text=True, timeout=60
    )
    assert exports.returncode == 0 and urlsplit(pg_url).password not in exports.stdout
    done = subprocess.run(
        ["bash", "-c", 'eval "$(taxi-platform db env)" && cd dbt_project && dbt debug'],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert "All checks passed!" in done.stdout
    assert f"port: {urlsplit(pg_url).port}" in done.stdout


def test_db_env_before_the_server_exists_and_with_an_external_url(tmp_path):
    home = tmp_path / "fresh_home"
    done = subprocess.run(
        [str(BIN / "taxi-platform"), "db", "env"], env=_env(home), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and "run `taxi-platform db start` first" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    external = {**_env(home), "TAXI_POSTGRES_URL": "postgresql://taxi:S3cret-pw@db.example:6543/warehouse"}
    done = subprocess.run(
        [str(BIN / "taxi-platform"), "db", "env"], env=external, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "S3cret-pw" not in done.stdout
    lines = done.stdout.splitlines()
    assert "export TAXI_DBT_PG_HOST=db.example" in lines and "export TAXI_DBT_PG_PORT=6543" in lines
    assert "export TAXI_DBT_PG_DBNAME=warehouse" in lines
    # The password is left to the person: a commented line, never an export of a placeholder.
    assert not any(line.startswith("export TAXI_DBT_PG_PASSWORD") for line in lines)
    assert any(line.startswith("# export TAXI_DBT_PG_PASSWORD=") for line in lines)
