"""Fixtures of the GCP target's tests: loopback-only networking for every test here, each marked
`bigquery`. The emulators
and the per-test platform (`emulators`, `gcp_env`) are in tests/conftest.py, shared with the
BigQuery half of tests/test_failures.py; support/gcp_emulators.py starts the emulators."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.gcp_emulators import loopback_only

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Marked `bigquery` (left out of `make test-fast`); the hook sees the whole session's items.
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.bigquery)


@pytest.fixture(autouse=True)
def _loopback_only() -> Iterator[None]:
    with loopback_only():
        yield
