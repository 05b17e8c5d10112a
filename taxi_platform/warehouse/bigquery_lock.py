"""Two dbt builds never run at once against one BigQuery warehouse (PostgreSQL has an advisory lock
for this; BigQuery has none): a build holds a lock table in the staging dataset.

Creating a table is atomic and fails with 409 Conflict when it exists, so the one build that
creates `dbt_build_lock_<dbt dataset>` holds the lock; the others wait, retrying with backoff, up to
WAIT_SECONDS, then fail naming the table. The holder drops it on exit (also after an error). The
table expires HOLD_SECONDS after its last renewal (a thread renews it while the build runs), so a
holder that crashed blocks the next builds for HOLD_SECONDS at most. (The emulator keeps no
expiration: there a crashed holder's table must be dropped by hand.) Each holding has a token in the
table's description: a build releases only its own table (not one another build created after its
own expired), and knows its own table when a create whose answer was lost is retried.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from taxi_platform.settings import validate_identifier
from taxi_platform.warehouse.base import WarehouseError

WAIT_SECONDS = 3600.0  # a build waits this long for another one to finish
HOLD_SECONDS = 900.0  # the lock table expires this long after its last renewal
FIRST_RETRY_SECONDS = 0.5
LAST_RETRY_SECONDS = 15.0
CALL_TIMEOUT_SECONDS = 30.0  # one renewal or release call: a renewal comes every HOLD_SECONDS / 3

log = logging.getLogger(__name__)


def lock_table_name(dbt_dataset: str) -> str:
    return f"dbt_build_lock_{validate_identifier(dbt_dataset, 'TAXI_DBT_SCHEMA')}"


@contextmanager
def dbt_build_lock(
    wh, wait_seconds: float = WAIT_SECONDS, hold_seconds: float = HOLD_SECONDS
) -> Iterator[str]:
    """Hold the lock table of `wh` (the BigQueryWarehouse) around the block; yields its reference."""
    token = uuid.uuid4().hex
    ref = _acquire(wh, wait_seconds, hold_seconds, token)
    stop = threading.Event()
    renewer = threading.Thread(
        target=_renew, args=(wh, ref, hold_seconds, stop), name="dbt-build-lock-renewal", daemon=True
    )
    renewer.start()
    try:
        yield ref
    finally:
        stop.set()
        renewer.join(CALL_TIMEOUT_SECONDS)
        try:
            _release(wh, ref, token)
        except Exception as exc:  # never in place of the build's own error; the table expires anyway
            log.warning("the dbt build lock %s was not released (%s); it expires by itself", ref, exc)


def _expiry(hold_seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=hold_seconds)


def _release(wh, ref: str, token: str) -> None:
    from google.api_core import exceptions as gexc

    with wh.client(f"release the dbt build lock {ref}") as client:
        try:
            table = client.get_table(ref, timeout=CALL_TIMEOUT_SECONDS)
        except gexc.NotFound:
            return  # expired: nothing of ours to drop
        if _holds(table, token):
            client.delete_table(ref, not_found_ok=True, timeout=CALL_TIMEOUT_SECONDS)


def _holds(table, token: str) -> bool:
    return f"(token {token})" in (table.description or "")


def _acquire(wh, wait_seconds: float, hold_seconds: float, token: str) -> str:
    from google.api_core import exceptions as gexc
    from google.cloud import bigquery

    deadline = time.monotonic() + wait_seconds
    delay = FIRST_RETRY_SECONDS
    holder = f"{socket.gethostname()} pid {os.getpid()}"
    with wh.client("take the dbt build lock") as client:
        wh.ensure_datasets(client)
        ref = wh.table_ref(client, wh.datasets()[1], lock_table_name(wh.dbt_dataset))
        while True:
            table = bigquery.Table(ref, schema=[bigquery.SchemaField("holder", "STRING")])
            table.description = (
                f"dbt build lock, held by {holder} since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC "
                f"(token {token})"
            )
            table.expires = _expiry(hold_seconds)
            try:
                client.create_table(table)  # exists_ok=False: 409 Conflict while another build holds it
                return ref
            except gexc.Conflict:
                if _holds_existing(client, ref, token):  # our own create, answered 409 on its retry
                    return ref
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WarehouseError(
                        f"another dbt build holds the lock table {ref} ({_description(client, ref)}); "
                        f"waited {wait_seconds:,.0f} s for it. If no dbt build runs, drop that table "
                        f"(it also expires by itself {hold_seconds:,.0f} s after its holder stopped)"
                    ) from None
                time.sleep(min(delay, left))
                delay = min(delay * 2, LAST_RETRY_SECONDS)


def _holds_existing(client, ref: str, token: str) -> bool:
    from google.api_core import exceptions as gexc

    try:
        return _holds(client.get_table(ref), token)
    except gexc.NotFound:
        return False


def _description(client, ref: str) -> str:
    from google.api_core import exceptions as gexc

    try:
        return client.get_table(ref).description or "no holder recorded"
    except gexc.NotFound:
        return "released just now"


def _renew(wh, ref: str, hold_seconds: float, stop: threading.Event) -> None:
    """Push the lock table's expiry forward while the build runs."""
    while not stop.wait(hold_seconds / 3):
        try:
            with wh.bigquery.get_client() as client:
                table = client.get_table(ref, timeout=CALL_TIMEOUT_SECONDS)
                table.expires = _expiry(hold_seconds)
                client.update_table(table, ["expires"], timeout=CALL_TIMEOUT_SECONDS)
        except Exception as exc:  # any failure: tried again next turn; the previous expiry stands
            log.warning("the dbt build lock %s was not renewed (%s); trying again", ref, exc)
