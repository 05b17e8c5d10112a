"""Shared fixtures: one embedded PostgreSQL for the session (stopped at the end), isolated schemas
per test, the GCP emulators when a test asks for them, a throw-away Dagster instance per test, and
the check that the session leaves no server, daemon or browser running. The classes and helpers
they use live in tests/support/."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from support.gcp_emulators import NO_METADATA, PROJECT, Emulators, loopback_only, run_emulators
from support.gcp_env import GcpEnv
from support.paths import new_tmp_root
from support.pg_env import Env
from support.processes import leftover_processes, snapshot

from taxi_platform.gcp.settings import GcpSettings
from taxi_platform.settings import Settings
from taxi_platform.target import GCP
from taxi_platform.warehouse.embedded.server import EmbeddedPostgres

# --- no process left behind -----------------------------------------------------------------------

_PIDS_AT_START = pytest.StashKey[set[int]]()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_PIDS_AT_START] = snapshot()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    # trylast: after pytest's runner tore down what fixtures were left (after -x or ^C too);
    # whatever of ours still runs was left behind. Under pytest-xdist the controller checks, once
    # every worker is done: a worker would see the other's servers, and its status is not reported.
    if hasattr(session.config, "workerinput"):
        return
    at_start = session.config.stash.get(_PIDS_AT_START, set())
    left = leftover_processes(at_start)
    if left:  # a server stopped a moment ago may still be exiting
        time.sleep(2)
        left = leftover_processes(at_start)
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("=", "processes started by this session are still running", red=True)
            for line in left:
                reporter.write_line(line, red=True)
        else:
            print("processes started by this session are still running:", *left, sep="\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --- PostgreSQL -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def session_root() -> Iterator[Path]:
    root = new_tmp_root()
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def embedded_pg(session_root: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(session_root / "home" / "postgres")
    server.ensure_running()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_url(embedded_pg: EmbeddedPostgres) -> str:
    return embedded_pg.url()


@pytest.fixture
def pg(pg_url: str) -> Iterator[psycopg2.extensions.connection]:
    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    yield conn
    conn.close()


@pytest.fixture
def env(session_root: Path, pg_url: str, monkeypatch) -> Iterator[Env]:
    name = uuid.uuid4().hex[:10]
    home = session_root / "home"  # shared: the session's embedded server lives there
    mirror = session_root / f"mirror_{name}"
    mirror.mkdir()
    monkeypatch.setenv("TAXI_POSTGRES_URL", pg_url)
    settings = Settings(
        source="course",
        home=home,
        source_url=mirror.as_uri(),
        postgres_url=pg_url,
        warehouse_schema=f"w_{name}",
        staging_schema=f"s_{name}",
        dbt_schema=f"d_{name}",
        download_attempts=2,
    )
    with dg.instance_for_test() as instance:
        yield Env(settings=settings, mirror=mirror, instance=instance, pg_url=pg_url)
    shutil.rmtree(mirror, ignore_errors=True)


# --- the GCP target on the emulators (tests/gcp, and the BigQuery half of tests/test_failures.py) ---


@pytest.fixture(scope="session")
def emulators(session_root: Path) -> Iterator[Emulators]:
    saved = {
        k: os.environ.get(k)
        for k in (*NO_METADATA, "GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST")
    }
    os.environ.update(NO_METADATA)
    # Nothing may pick up a developer's real credentials or emulator settings.
    os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    os.environ.pop("STORAGE_EMULATOR_HOST", None)
    try:
        with run_emulators(session_root / "emulators") as running:
            yield running
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def gcp_env(session_root: Path, emulators: Emulators) -> Iterator[GcpEnv]:
    name = uuid.uuid4().hex[:10]
    mirror = session_root / f"gcp_mirror_{name}"
    mirror.mkdir()
    home = session_root / f"gcp_home_{name}"
    settings = Settings(
        source="course",
        target=GCP,
        home=home,
        source_url=mirror.as_uri(),
        staging_schema=f"s_{name}",
        dbt_schema=f"d_{name}",
        download_attempts=2,
        gcp=GcpSettings(
            project=PROJECT,
            gcs_bucket=f"taxi-lake-{name}",
            bq_dataset=f"w_{name}",
            anonymous=True,
            bq_api_endpoint=emulators.bq_endpoint,
            gcs_api_endpoint=emulators.gcs_endpoint,
        ),
    )
    with dg.instance_for_test() as instance:
        env = GcpEnv(settings=settings, mirror=mirror, instance=instance, emulators=emulators)
        env.gcs_client().create_bucket(env.gcp.gcs_bucket)
        yield env
    shutil.rmtree(mirror, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)


# --- either warehouse (tests/test_failures.py) ----------------------------------------------------


@pytest.fixture(params=["postgres", pytest.param("bigquery", marks=pytest.mark.bigquery)])
def target(request) -> str:
    """The warehouse a parametrised test runs on."""
    return request.param


@pytest.fixture
def target_env(target: str, request) -> Iterator[Env | GcpEnv]:
    """The test's platform on `target`: `env` on PostgreSQL, `gcp_env` (loopback only) on BigQuery."""
    if target == "postgres":
        yield request.getfixturevalue("env")
        return
    # No skip when the emulator's venv is missing: `emulators` installs it, as for tests/gcp.
    with loopback_only():
        yield request.getfixturevalue("gcp_env")
