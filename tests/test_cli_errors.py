"""`taxi-platform` refuses bad arguments and unusable paths with one error line that names them,
not a Python traceback: bad arguments are usage errors (exit code 2), a TAXI_HOME it cannot use,
another path it cannot write, or one of the platform's own errors exit with code 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from taxi_platform.cli import main

CLI = Path(sys.executable).with_name("taxi-platform")
SECRET = "s3cr3t-Pw"


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TAXI_HOME": str(tmp_path / "home")}
    return subprocess.run(
        [str(CLI), *args], env={**base, **env}, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if "error:" in line]


@pytest.mark.parametrize(
    "args, names",
    [
        (["sample", "purple", "2019-01", "out.csv.gz"], ["argument dataset", "'purple'", "yellow", "green"]),
        (["sample", "yellow", "2019-01", "out.csv.gz", "--rows", "-5"], ["argument --rows", "'-5'"]),
        (["sample", "yellow", "2019-01", "out.csv.gz", "--rows", "many"], ["argument --rows", "'many'"]),
        (["sample", "yellow", "2019-13", "out.csv.gz"], ["argument month", "'2019-13'"]),
        (["demo", "--rows", "-1"], ["argument --rows", "'-1'"]),
        (["demo", "--months", "2019-03..2019-01"], ["argument --months", "'2019-03..2019-01'"]),
        # Months outside the source's (the partitions): the course's CSV backup ends at 2021-07,
        # the TLC's releases begin at 2009-01; a dataset the source does not hold.
        (
            ["demo", "--months", "2008-11..2009-01"],
            ["argument --months", "2008-11 is before the first month of the tlc-parquet source", "2009-01.."],
        ),
        (
            ["TAXI_SOURCE=course", "demo", "--datasets", "fhv"],
            ["argument --datasets", "the course-csv source has no fhv", "TAXI_SOURCE"],
        ),
        (
            ["TAXI_SOURCE=course", "demo", "--months", "2021-06..2021-09"],
            [
                "argument --months",
                "'2021-06..2021-09'",
                "2021-08 is after the last month of the course-csv source",
                "2019-01..2021-07",
            ],
        ),
        (
            ["TAXI_SOURCE=course", "demo", "--months", "2019-01,2024-05"],
            ["argument --months", "2024-05 is after the last month", "2019-01..2021-07"],
        ),
        (
            ["TAXI_SOURCE=course", "mirror", "write", "--months", "2018-12"],
            ["argument --months", "2018-12 is before the first month", "2019-01..2021-07"],
        ),
        (["mirror", "write", "--rows", "-2"], ["argument --rows", "'-2'"]),
        (["mirror", "serve", "--port", "70000"], ["argument --port", "'70000'"]),
    ],
)
def test_a_bad_argument_is_a_usage_error_naming_it(tmp_path, args, names):
    env = dict(a.split("=", 1) for a in args if a.startswith("TAXI_"))  # settings before the command
    done = run_cli(tmp_path, *(a for a in args if not a.startswith("TAXI_")), **env)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("usage: taxi-platform")
    [line] = error_lines(done)
    assert all(name in line for name in names), line
    assert not (tmp_path / "out.csv.gz").exists() and not (tmp_path / "home").exists()


@pytest.mark.parametrize("action", ["start", "stop"])
@pytest.mark.parametrize("under_a_file", [False, True])
def test_db_with_a_taxi_home_that_is_a_file_says_so_in_one_line(tmp_path, action, under_a_file):
    # As root a read-only folder is still writable: a regular file is what cannot be a folder.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file\n")
    home = blocker / "home" if under_a_file else blocker
    done = run_cli(tmp_path, "db", action, TAXI_HOME=str(home))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"taxi-platform: error: cannot create {home}: {blocker} is a file, not a folder (TAXI_HOME)"
    ]
    assert blocker.read_text() == "a file\n"


def test_sample_to_a_path_under_a_file_names_the_path(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    out = blocker / "2019" / "out.csv.gz"
    done = run_cli(tmp_path, "sample", "yellow", "2019-01", str(out), "--rows", "10")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"taxi-platform: error: cannot write {out}: {blocker} is a file, not a folder (argument out)"
    ]


def test_a_path_under_taxi_home_that_cannot_be_written_is_named(tmp_path):
    """The general rule of `main`: an OSError with a path is one line naming it (mirror write)."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    done = run_cli(
        tmp_path,
        "mirror",
        "write",
        "--months",
        "2019-01",
        "--datasets",
        "green",
        "--rows",
        "0",
        TAXI_HOME=str(blocker / "home"),
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"taxi-platform: error: {blocker / 'home' / 'mirror'}")
    assert line.endswith(f": {blocker} is a file, not a folder (under TAXI_HOME)")


def test_sample_writes_the_file_when_the_arguments_are_good(tmp_path):
    done = run_cli(tmp_path, "sample", "green", "2019-01", "out.csv.gz", "--rows", "0")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.csv.gz").stat().st_size > 0
    assert "0 rows" in done.stdout


def test_main_prints_settings_and_platform_errors_as_one_line(session_root, monkeypatch, capsys):
    # Under the session's folder: as root, the embedded server's user must be able to enter it.
    home = session_root / "cli-errors-home"
    monkeypatch.setenv("HOME", str(session_root))
    monkeypatch.setenv("TAXI_HOME", str(home))
    monkeypatch.delenv("TAXI_POSTGRES_URL", raising=False)
    monkeypatch.setenv("TAXI_WAREHOUSE_SCHEMA", "Not-An-Identifier")
    assert main(["db", "status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("taxi-platform: error: TAXI_WAREHOUSE_SCHEMA='Not-An-Identifier'")
    assert len(err.splitlines()) == 1

    # A malformed TAXI_POSTGRES_URL: named, never echoed (it may hold a password).
    monkeypatch.delenv("TAXI_WAREHOUSE_SCHEMA")
    monkeypatch.setenv("TAXI_POSTGRES_URL", f"host=db user=taxi password={SECRET}")
    assert main(["db", "start"]) == 2
    captured = capsys.readouterr()
    assert "TAXI_POSTGRES_URL" in captured.err and SECRET not in captured.out + captured.err

    # The embedded server's own error (its port is held by another program): its message, no trace.
    import socket

    monkeypatch.delenv("TAXI_POSTGRES_URL")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        postgres = home / "postgres"
        (postgres / "data").mkdir(parents=True)
        (postgres / "data" / "PG_VERSION").write_text("18\n")  # initialised, not running
        (postgres / "port").write_text(str(port))
        assert main(["db", "start"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"taxi-platform: error: port {port} on 127.0.0.1 is taken by another program")
    assert "Traceback" not in err
