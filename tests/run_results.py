"""Reading Dagster run results and the database in tests: shared by tests/conftest.py, tests/gcp and
tests/e2e (a module of its own: the conftest.py files cannot import each other by name)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import psycopg2

REPO = Path(__file__).resolve().parents[1]
REAL_SAMPLES = REPO.parent / "shared" / "data" / "real_samples"
ZONES_CSV = REPO.parent / "shared" / "data" / "taxi_zone_lookup.csv"


def materialization_metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict:
    """The metadata values of the run's last materialization of `key`."""
    events = [
        e
        for e in result.get_asset_materialization_events()
        if e.event_specific_data.materialization.asset_key == key
    ]
    assert events, f"no materialization of {key.to_user_string()}"
    return {k: v.value for k, v in events[-1].event_specific_data.materialization.metadata.items()}


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """Text of every step failure in a run (message, cause chain)."""
    texts = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None:
                texts.append(error.message)
                error = error.cause
    return "\n".join(texts)


def query(url: str, sql: str, params=()) -> list[tuple]:
    """Run one statement on its own autocommit connection; its rows (none for a command)."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()
