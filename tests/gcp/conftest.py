"""Fixtures of the GCP target's tests: the emulators (session), loopback-only networking, and a
per-test platform with its own bucket and datasets. See gcp_support.py."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from gcp.gcp_support import NO_METADATA, PROJECT, Emulators, GcpEnv, loopback_only, run_emulators


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


@pytest.fixture(autouse=True)
def _loopback_only() -> Iterator[None]:
    with loopback_only():
        yield


@pytest.fixture
def gcp_env(session_root: Path, emulators: Emulators, monkeypatch) -> Iterator[GcpEnv]:
    from taxi_platform.settings import GcpSettings, Settings

    name = uuid.uuid4().hex[:10]
    mirror = session_root / f"gcp_mirror_{name}"
    mirror.mkdir()
    home = session_root / f"gcp_home_{name}"
    settings = Settings(
        source="course",
        target="gcp",
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
        env.gcs_client().create_bucket(settings.gcp.gcs_bucket)
        yield env
    shutil.rmtree(mirror, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)
