"""Reading what a run did: its materializations' metadata, its failures' text, a partition's
latest metadata in the instance, and rows of the PostgreSQL database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import dagster as dg
import psycopg2


def materialization_metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict:
    """The metadata values of the run's last materialization of `key`."""
    events = [
        e
        for e in result.get_asset_materialization_events()
        if e.step_materialization_data.materialization.asset_key == key
    ]
    assert events, f"no materialization of {key.to_user_string()}"
    metadata = events[-1].step_materialization_data.materialization.metadata
    return {k: v.value for k, v in metadata.items()}


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


def recorded_metadata(record: dg.EventLogRecord) -> Mapping[str, dg.MetadataValue]:
    """The metadata of a materialization or observation record read from the instance."""
    event = record.asset_materialization or record.asset_observation
    assert event is not None, record
    return event.metadata


class CheckExecutionRecord(Protocol):
    """What a check's execution record (`instance.event_log_storage.get_asset_check_execution_history`)
    gives: the event it was filed with (Dagster exports no name for its type)."""

    @property
    def event(self) -> dg.EventLogEntry | None: ...


def check_event(record: CheckExecutionRecord) -> dg.DagsterEvent:
    """The event of a check's execution record: its evaluation, or the plan of one."""
    assert record.event is not None and record.event.dagster_event is not None, record
    return record.event.dagster_event


def partition_metadata(instance: dg.DagsterInstance, key: dg.AssetKey, name: str) -> dict[str, Any]:
    """Partition key -> the value of metadata `name` in its latest materialization (of the type
    that metadata has: the caller knows it)."""
    records = instance.fetch_materializations(key, limit=1000).records
    latest: dict[str, Any] = {}
    for record in sorted(records, key=lambda r: r.storage_id):
        assert record.partition_key is not None, record
        metadata = recorded_metadata(record)
        latest[record.partition_key] = metadata[name].value if name in metadata else None
    return latest


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
