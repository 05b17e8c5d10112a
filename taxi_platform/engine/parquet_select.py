"""A TLC Parquet month as DuckDB SQL: its era found from its columns, each column cast to the
dataset's canonical type by the rules below, and the trip id of `trip_id.py` computed from the
typed values (so a trip has the same id from the Parquet file as from the course's CSV).

The rules (a value that does not fit fails the load, naming the file, the row and the column;
DuckDB's `error()` stops the query, before any table changes):

    integer    integers (int8..int64) as they are; doubles only when whole ("1.5 passengers" is
               refused), text only when it reads as an integer; out of the 32-bit range: refused
    decimal    doubles rounded to 6 decimals (the TLC's have 2: a double's binary noise such as
               2.6300000000000003 goes, no cent ever does); at most 12 digits before the point;
               NaN and infinities refused
    double     (2009-2010 coordinates) as they are
    timestamp  timestamps as they are (microseconds; a year-3019 dropoff is kept as published:
               the pickups-in-month check reports such rows); 2009-2010 texts
               'YYYY-MM-DD HH:MM:SS' parsed, anything else refused
    text       as it is
    codes      an era column with a value map (2009's 'CASH', 'CMT', ...) takes the mapped value;
               a code the map does not list is refused; '' and NULL are NULL

A null-typed column (all values null) and a column the era lacks are NULL.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date

from taxi_platform.datasets import ColumnType, DatasetSpec
from taxi_platform.eras import FileColumn, SchemaEra
from taxi_platform.partitions import next_month
from taxi_platform.trip_id import NULL_TEXT, SEPARATOR

INT32 = (-(2**31), 2**31 - 1)
MAX_DECIMAL = 10**12  # DECIMAL(18,6): 12 digits before the point
ROW = "file_row_number"  # 0-based; messages say "row N" counting from 1, as a reader would


class ParquetSchemaError(ValueError):
    """The file's columns match no era of the dataset, or a column has a type that cannot be cast."""


@dataclass(frozen=True)
class FileSchema:
    """The columns of a Parquet file, in order: (name, pyarrow type text)."""

    columns: tuple[tuple[str, str], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def type_of(self, name: str) -> str:
        return dict(self.columns)[name]

    @property
    def fingerprint(self) -> str:
        """12 hex digits of the sha256 of the names and types in order: the month's schema era."""
        text = ";".join(f"{name}:{type_}" for name, type_ in self.columns)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def match_era(spec: DatasetSpec, schema: FileSchema, file_name: str) -> SchemaEra:
    """The era whose column names the file has (the one whose types match too, if several)."""
    names = set(schema.names)
    candidates = [
        era
        for era in spec.eras
        if set(era.column_names) == names - set(era.ignored) and names >= set(era.column_names)
    ]
    if not candidates:
        closest = min(spec.eras, key=lambda era: len(set(era.column_names) ^ (names - set(era.ignored))))
        missing = [c for c in closest.column_names if c not in names]
        unexpected = [c for c in schema.names if c not in closest.column_names and c not in closest.ignored]
        raise ParquetSchemaError(
            f"{file_name}: its columns match no known {spec.name} schema era; closest is {closest.name}, "
            f"from which it differs by: "
            + "; ".join(
                part
                for part in (
                    f"missing {', '.join(missing)}" if missing else "",
                    f"unexpected {', '.join(unexpected)}" if unexpected else "",
                )
                if part
            )
            + " (a renamed or new column: add the era to taxi_platform/eras.py)"
        )
    for era in candidates:
        if all(schema.type_of(c.name) == c.arrow_type for c in era.columns):
            return era
    return candidates[0]


def _kind(arrow_type: str) -> str:
    """The family of a pyarrow type text: int, float, string, timestamp, null, bool or other."""
    if re.fullmatch(r"u?int(8|16|32|64)", arrow_type):
        return "int"
    if arrow_type in ("double", "float", "halffloat"):
        return "float"
    if arrow_type in ("string", "large_string", "utf8", "large_utf8"):
        return "string"
    if arrow_type.startswith("timestamp"):
        return "timestamp"
    if arrow_type in ("null", "bool"):
        return arrow_type
    return "other"


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _literal(value: object, type_: ColumnType) -> str:
    if value is None:
        return "NULL"
    if type_ is ColumnType.TEXT:
        return _sql_text(str(value))
    return str(int(value)) if type_ is ColumnType.INTEGER else str(value)  # type: ignore[call-overload]


class _Casts:
    """The cast of one file column to its canonical type, with the error naming row and column."""

    def __init__(self, file_name: str) -> None:
        self.file_name = file_name

    def fail(self, column: str, what: str, value_sql: str) -> str:
        message = (
            f"{_sql_text(self.file_name + ' row ')} || ({ROW} + 1) || "
            f"{_sql_text(f', column {column}: ')} || coalesce(CAST({value_sql} AS VARCHAR), 'NULL') || "
            f"{_sql_text(f' is not {what}; nothing was loaded')}"
        )
        return f"error({message})"

    def cast(self, col: FileColumn, arrow_type: str, type_: ColumnType) -> str:
        x, kind = f'"{col.name}"', _kind(arrow_type)
        sql_type = _DUCK_TYPES[type_]
        if kind == "null":
            return f"CAST(NULL AS {sql_type})"
        if col.value_map:
            return self._mapped(col, x, type_)
        if kind not in _CASTABLE[type_]:
            raise ParquetSchemaError(
                f"{self.file_name}: column {col.name} is {arrow_type}, which cannot become {type_.value} "
                f"({col.target})"
            )
        if type_ is ColumnType.INTEGER:
            return self._integer(col.name, x, kind)
        if type_ is ColumnType.DECIMAL:
            return self._decimal(col.name, x, kind)
        if type_ is ColumnType.DOUBLE:
            if kind == "string":
                return self._checked(col.name, x, f"TRY_CAST(trim({x}) AS DOUBLE)", "a number", text=True)
            return f"CAST({x} AS DOUBLE)"
        if type_ is ColumnType.TIMESTAMP:
            if kind == "string":
                parsed = f"TRY_STRPTIME(trim({x}), '%Y-%m-%d %H:%M:%S')"
                return self._checked(col.name, x, parsed, "a timestamp YYYY-MM-DD HH:MM:SS", text=True)
            return f"CAST({x} AS TIMESTAMP)"
        return f"CAST({x} AS VARCHAR)" if kind != "string" else x

    def _checked(self, name: str, x: str, parsed: str, what: str, *, text: bool = False) -> str:
        """`parsed` (NULL where x cannot be read), or the error; an empty text is NULL."""
        empty = f"{x} IS NULL" + (f" OR trim({x}) = ''" if text else "")
        return f"CASE WHEN {empty} THEN NULL ELSE coalesce({parsed}, {self.fail(name, what, x)}) END"

    def _integer(self, name: str, x: str, kind: str) -> str:
        lo, hi = INT32
        what = "an integer (32-bit)"
        if kind == "int":
            return self._when(name, x, f"{x} BETWEEN {lo} AND {hi}", "INTEGER", what)
        if kind == "float":
            ok = f"isfinite({x}) AND {x} = trunc({x}) AND {x} BETWEEN {lo} AND {hi}"
            return self._when(name, x, ok, "INTEGER", what)
        return self._checked(name, x, f"TRY_CAST(trim({x}) AS INTEGER)", what, text=True)

    def _decimal(self, name: str, x: str, kind: str) -> str:
        what = f"a decimal under {MAX_DECIMAL:.0e} with at most 6 decimals"
        if kind == "string":
            return self._checked(name, x, f"TRY_CAST(trim({x}) AS DECIMAL(18,6))", what, text=True)
        ok = f"abs({x}) < {MAX_DECIMAL}" + (f" AND isfinite({x})" if kind == "float" else "")
        return self._when(name, x, ok, "DECIMAL(18,6)", what)

    def _when(self, name: str, x: str, ok: str, sql_type: str, what: str) -> str:
        """x cast to `sql_type` where `ok`, NULL where NULL, else the error."""
        error = self.fail(name, what, x)
        return f"CASE WHEN {x} IS NULL THEN NULL WHEN {ok} THEN CAST({x} AS {sql_type}) ELSE {error} END"

    def _mapped(self, col: FileColumn, x: str, type_: ColumnType) -> str:
        code = f"upper(trim(CAST({x} AS VARCHAR)))"
        whens = " ".join(f"WHEN {_sql_text(k)} THEN {_literal(v, type_)}" for k, v in col.value_map)
        codes = ", ".join(k for k, _ in col.value_map)
        return (
            f"CASE WHEN {x} IS NULL OR {code} = '' THEN NULL ELSE CASE {code} {whens} "
            f"ELSE {self.fail(col.name, f'one of the codes {codes}', x)} END END"
        )


_DUCK_TYPES = {
    ColumnType.INTEGER: "INTEGER",
    ColumnType.TIMESTAMP: "TIMESTAMP",
    ColumnType.DECIMAL: "DECIMAL(18,6)",
    ColumnType.TEXT: "VARCHAR",
    ColumnType.DOUBLE: "DOUBLE",
}
# The physical type families each canonical type is cast from.
_CASTABLE = {
    ColumnType.INTEGER: {"int", "float", "string"},
    ColumnType.DECIMAL: {"int", "float", "string"},
    ColumnType.DOUBLE: {"int", "float", "string"},
    ColumnType.TIMESTAMP: {"timestamp", "string"},
    ColumnType.TEXT: {"string", "int", "float", "bool"},
}
_CANONICAL_TEXT = {
    ColumnType.INTEGER: "CAST({v} AS VARCHAR)",
    ColumnType.TIMESTAMP: "strftime({v}, '%Y-%m-%d %H:%M:%S')",
    ColumnType.DECIMAL: r"regexp_replace(CAST({v} AS VARCHAR), '\.?0+$', '')",
    ColumnType.TEXT: "{v}",
    ColumnType.DOUBLE: "CAST({v} AS VARCHAR)",
}


@dataclass(frozen=True)
class ParquetMonthSql:
    era: SchemaEra
    typed: str  # SELECT file_row_number, <canonical columns> FROM read_parquet(...)
    identity_hash: str  # expression over the typed columns: a 64-bit hash of the identity fields
    trip_id: str  # expression over the typed columns: unique_row_id
    in_month: str  # expression over the typed columns: the pickup lies in the month


def parquet_month_sql(
    spec: DatasetSpec, schema: FileSchema, path: str, file_name: str, month: date
) -> ParquetMonthSql:
    """The SQL that reads the file as the dataset's canonical rows (see the module's docstring)."""
    era = match_era(spec, schema, file_name)
    casts = _Casts(file_name)
    by_target: dict[str, str] = {}
    for col in era.columns:
        by_target[col.target] = casts.cast(col, schema.type_of(col.name), spec.column(col.target).type)
        if col.raw_column:
            by_target[col.raw_column] = f'CAST("{col.name}" AS VARCHAR)'
    selects = [ROW]
    for column in spec.columns:
        expr = by_target.get(column.name, f"CAST(NULL AS {_DUCK_TYPES[column.type]})")
        selects.append(f'{expr} AS "{column.name}"')
    source = f"read_parquet({_sql_text(path)}, file_row_number = true)"
    typed = f"SELECT {', '.join(selects)} FROM {source}"
    canon = []
    for name in spec.identity_columns:
        rendered = _CANONICAL_TEXT[spec.column(name).type].replace("{v}", f'"{name}"')
        canon.append(f"coalesce({rendered}, '{NULL_TEXT}')")
    trip_id = f"md5(concat({f', {_sql_text(SEPARATOR)}, '.join(canon)}))"
    identity = ", ".join(f'"{name}"' for name in spec.identity_columns)
    identity_hash = f"hash({identity})"
    pickup = f'"{spec.pickup_column}"'
    in_month = (
        f"coalesce({pickup} >= TIMESTAMP '{month:%Y-%m-%d}' AND "
        f"{pickup} < TIMESTAMP '{next_month(month):%Y-%m-%d}', false)"
    )
    return ParquetMonthSql(
        era=era, typed=typed, identity_hash=identity_hash, trip_id=trip_id, in_month=in_month
    )
