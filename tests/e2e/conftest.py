"""Fixtures of the end-to-end tests: one real Dagster stack for the session on the course's CSV
backup (support/e2e_stack.py), the backfill launched through its GraphQL API, and the daemon's dbt
automation building the backfilled months (support/e2e_backfill.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.e2e_backfill import MONTHS, ROWS, Backfill, launch_backfill, wait_for_dbt_months
from support.e2e_stack import Stack, start_stack

from taxi_platform.datasets import DATASETS
from taxi_platform.sample.mirror import write_mirror
from taxi_platform.sample.zones import write_mirror_zones


@pytest.fixture(scope="session")
def dagster_stack(session_root: Path, pg_url: str) -> Iterator[Stack]:
    """The course's CSV backup (a file:// mirror of 3 months x 2 colours) as the source."""

    def course_mirror(mirror: Path) -> tuple[dict[str, str], list]:
        generated = write_mirror(mirror, DATASETS.values(), MONTHS, rows=ROWS, seed=7)
        write_mirror_zones(mirror)
        return {"TAXI_SOURCE": "course", "TAXI_SOURCE_URL": mirror.as_uri()}, generated

    with start_stack(session_root, pg_url, course_mirror) as stack:
        yield stack


@pytest.fixture(scope="session")
def backfill(dagster_stack: Stack) -> Backfill:
    """3 months x 2 colours, launched as the UI's "Materialize selected partitions" does."""
    return launch_backfill(dagster_stack)


@pytest.fixture(scope="session")
def dbt_months_built(dagster_stack: Stack, backfill: Backfill) -> float:
    """The seconds the daemon's dbt automation took, after the backfill, to build its months."""
    return wait_for_dbt_months(dagster_stack)
