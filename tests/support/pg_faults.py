"""Faults injected into a PostgreSQL load: its COPY backends terminated mid-load, or the staging's
removal of repeated ids switched off."""

from __future__ import annotations

import threading
import time
from datetime import date

import dagster as dg

from support.pg_env import Env
from taxi_platform.datasets import DatasetSpec


def materialize_killing_copy(
    env: Env, pg, spec: DatasetSpec, month: date, backend: str
) -> tuple[dg.ExecuteInProcessResult, int]:
    """Materialize the month while terminating the COPY backends whose application_name is LIKE
    `backend` as soon as one runs; the run's result and how many backends were killed."""
    outcome: dict[str, dg.ExecuteInProcessResult] = {}
    runner = threading.Thread(target=lambda: outcome.update(result=env.materialize(spec, month)))
    runner.start()
    killed = 0
    deadline = time.monotonic() + 120
    with pg.cursor() as cur:
        while not killed and runner.is_alive() and time.monotonic() < deadline:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE %s AND query LIKE 'COPY%%' AND state = 'active'",
                (backend,),
            )
            killed = sum(1 for (ok,) in cur.fetchall() if ok)
            time.sleep(0.05)
    runner.join()
    return outcome["result"], killed


def keep_later_occurrences(monkeypatch) -> None:
    """Make the staging keep the later occurrences of repeated ids: its DELETE statements are
    dropped (the server's kept rows then differ from the engine's distinct count)."""
    import taxi_platform.warehouse.postgres_month as postgres_month

    delete_later = postgres_month._delete_later_occurrences

    class NoDelete:  # the cursor, but its DELETE statements are dropped
        def __init__(self, cur):
            self.cur, self.rowcount = cur, 0

        def execute(self, query, params=None):
            if not query.as_string(self.cur).startswith("DELETE"):
                self.cur.execute(query, params)

        def fetchall(self):
            return self.cur.fetchall()

    monkeypatch.setattr(
        postgres_month, "_delete_later_occurrences", lambda cur, *args: delete_later(NoDelete(cur), *args)
    )
