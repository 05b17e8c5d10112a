"""Quoting of SQL identifiers. Values always travel as query parameters, never through here."""

from __future__ import annotations

import re
from typing import Any, Protocol

_SAFE_ANY_CASE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def quote_ident(name: str) -> str:
    """Double-quote an identifier that is already known to be a plain name (letters, digits, _).

    Names from configuration are validated by `settings.validate_identifier` first; names from the
    dataset spec (e.g. `VendorID`) are checked here, so nothing else can reach the SQL text.
    """
    if not _SAFE_ANY_CASE.fullmatch(name):
        raise ValueError(f"refusing SQL identifier {name!r}")
    return f'"{name}"'


def bq_ident(name: str) -> str:
    """`name` backquoted for BigQuery, after the same plain-name check."""
    return "`" + quote_ident(name)[1:-1] + "`"


def qualified(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}"


class _Cursor(Protocol):
    def fetchone(self) -> tuple[Any, ...] | None: ...


def one_row(cursor: _Cursor) -> tuple[Any, ...]:
    """The row of a query that always returns one (an aggregate): a missing row is a bug, not data."""
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError("the query returned no row")
    return row
