"""A PostgreSQL connection for one purpose, in one transaction: committed on success, rolled back
and closed always; its errors as WarehouseError (secrets masked), a dropped connection as
ConnectionLostError (nothing of the purpose was committed)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.errors

from taxi_platform.warehouse.base import ConnectionLostError, WarehouseError


@contextmanager
def transaction(
    url: str, purpose: str, redact: Callable[[str], str]
) -> Iterator[psycopg2.extensions.connection]:
    """A connection to `url` named after `purpose` (pg_stat_activity shows it); `redact` masks the
    secrets in the errors' texts."""
    try:
        conn = psycopg2.connect(url, connect_timeout=15, application_name=f"taxi_platform:{purpose}"[:63])
    except psycopg2.Error as exc:
        raise WarehouseError(f"cannot connect to PostgreSQL: {redact(str(exc)).strip()}") from None
    try:
        yield conn
        conn.commit()
    except psycopg2.Error as exc:
        _rollback(conn)
        if _is_lost(conn, exc):
            raise ConnectionLostError(
                f"lost the connection to PostgreSQL during {purpose}; nothing of it was committed "
                f"(the previous rows are intact): {redact(str(exc)).strip()}"
            ) from None
        raise WarehouseError(f"{purpose} failed: {redact(str(exc)).strip()}") from None
    except BaseException:
        _rollback(conn)
        raise
    finally:
        conn.close()


def _rollback(conn) -> None:
    try:
        if not conn.closed:
            conn.rollback()
    except psycopg2.Error:
        pass


def _is_lost(conn, exc: psycopg2.Error) -> bool:
    """Whether `exc` means the connection is gone (server shut it down, or it broke)."""
    return isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) and (
        conn.closed or isinstance(exc, psycopg2.errors.AdminShutdown)
    )
