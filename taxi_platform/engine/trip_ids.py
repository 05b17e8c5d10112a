"""The trip id of every row of a block, computed in DuckDB (vectorised), exactly as defined in
`taxi_platform/trip_id.py`: MD5 of the identity fields' canonical texts joined by '|'.

Only the identity fields are parsed here (pyarrow's CSV parser, as text). Each is then read as its
type and rendered canonically; a value the engine cannot read with certainty is refused, naming
the file line and column, before anything is committed. What the engine accepts:

    integer    what DuckDB reads as a 64-bit integer ('264', ' 7', '+3')
    timestamp  'YYYY-MM-DD HH:MM:SS' with optional fractional seconds (ignored, as to_char does)
    decimal    what DuckDB reads as DECIMAL(18,6) without loss ('12', '-0.5', '.20', '7.00',
               '1e3'): at most 12 digits before the point and 6 after it (the TLC's have 2)
    text       anything

Values outside these forms may be valid for PostgreSQL in ways the engine does not reproduce
(other date styles, zone offsets, more decimals): they are refused rather than given an id that
could differ.
"""

from __future__ import annotations

import csv
import io
from datetime import date

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from taxi_platform.datasets import ColumnType, DatasetSpec
from taxi_platform.engine.csv_blocks import BadCsvError, Block
from taxi_platform.partitions import next_month
from taxi_platform.trip_id import NULL_TEXT, SEPARATOR

# Per type: the value read (v), whether the text may be read that way (ok), and the canonical
# text of the value (canon); {c} is the field's text, {v} its value.
_VALUE = {
    ColumnType.INTEGER: "TRY_CAST({c} AS BIGINT)",
    ColumnType.TIMESTAMP: "TRY_CAST({c} AS TIMESTAMP)",
    ColumnType.DECIMAL: "TRY_CAST({c} AS DECIMAL(18,6))",
    ColumnType.TEXT: "{c}",
}
_READABLE = {
    ColumnType.INTEGER: "{v} IS NOT NULL",
    # 'YYYY-MM-DD HH:MM:SS' then nothing or a fraction: no zone offset, no other date style.
    ColumnType.TIMESTAMP: (
        "{v} IS NOT NULL AND {c} LIKE '____-__-__ __:__:__%' "
        "AND (length({c}) = 19 OR (substr({c}, 20, 1) = '.' AND length({c}) <= 26))"
    ),
    # Read without loss: DECIMAL(18,6) would round a 7th decimal ('1.2345678'), so at most six
    # characters may follow the point; an exponent is taken only when the value read equals the
    # text's value as a double ('1e3', not '1e-7'). String tests: cheaper than a regex per row.
    ColumnType.DECIMAL: (
        "{v} IS NOT NULL AND (strpos({c}, '.') = 0 OR length({c}) - strpos({c}, '.') <= 6) "
        "AND (NOT (contains({c}, 'e') OR contains({c}, 'E')) "
        "OR CAST({v} AS DOUBLE) = TRY_CAST({c} AS DOUBLE))"
    ),
    ColumnType.TEXT: "true",
}
_CANONICAL = {
    ColumnType.INTEGER: "CAST({v} AS VARCHAR)",
    # Already canonical when it is exactly 'YYYY-MM-DD HH:MM:SS' (hour 24 is the next day).
    ColumnType.TIMESTAMP: (
        "CASE WHEN length({c}) = 19 AND substr({c}, 12, 2) <> '24' THEN {c} "
        "ELSE strftime({v}, '%Y-%m-%d %H:%M:%S') END"
    ),
    # DECIMAL(18,6) prints all six decimals ('0.670000', '7.000000'): the shortest form drops
    # the trailing zeros, and the point when nothing follows it ('0.67', '7', '0').
    ColumnType.DECIMAL: r"regexp_replace(CAST({v} AS VARCHAR), '\.?0+$', '')",
    ColumnType.TEXT: "{v}",
}
# The system allocator returns a block's memory when it is freed; pyarrow's default pool keeps
# about 60 MB more resident over a month (measured).
MEMORY_POOL = pa.system_memory_pool()

_WHAT = {
    ColumnType.INTEGER: "an integer",
    ColumnType.TIMESTAMP: "a timestamp (YYYY-MM-DD HH:MM:SS)",
    ColumnType.DECIMAL: "a decimal of at most 12 digits before the point and 6 after it",
    ColumnType.TEXT: "text",
}


def _column_ref(index: int) -> str:
    return f"c{index}"


def duckdb_trip_id_sql(
    spec: DatasetSpec, table: str = "batch", month: tuple[date, date] | None = None
) -> tuple[str, str]:
    """Two queries over `table` (columns c0.. = the identity fields as text):
    `SELECT id, ok[, in_month]`: the trip id, whether every field could be read, and (with
    `month`: its first day and the next month's) whether the pickup lies in the month; and, for
    the rare block where a field could not be read, `SELECT bad`: the index of the first
    unreadable field (-1: none)."""
    values, canon, checks = [], [], []
    for index, name in enumerate(spec.identity_columns):
        type_, c, v = spec.column(name).type, _column_ref(index), f"v{index}"
        values.append(f"{c}, {_VALUE[type_].replace('{c}', c)} AS {v}")
        rendered = _CANONICAL[type_].replace("{c}", c).replace("{v}", v)
        readable = _READABLE[type_].replace("{c}", c).replace("{v}", v)
        canon.append(f"coalesce({rendered}, '{NULL_TEXT}')")
        checks.append((index, f"({c} IS NULL OR ({readable}))"))
    joined = f", '{SEPARATOR}', ".join(canon)
    source = f"(SELECT {', '.join(values)} FROM {table})"
    ok = " AND ".join(check for _, check in checks)
    cases = " ".join(f"WHEN NOT {check} THEN {index}" for index, check in checks)
    in_month = ""
    if month is not None:
        pickup = f"v{spec.identity_columns.index(spec.pickup_column)}"
        in_month = (
            f", coalesce({pickup} >= TIMESTAMP '{month[0]:%Y-%m-%d}' "
            f"AND {pickup} < TIMESTAMP '{month[1]:%Y-%m-%d}', false) AS in_month"
        )
    return (
        f"SELECT md5(concat({joined})) AS id, {ok} AS ok{in_month} FROM {source}",
        f"SELECT CASE {cases} ELSE -1 END AS bad FROM {source}",
    )


class TripIdEngine:
    """Computes the ids of blocks of one file; one DuckDB connection, one thread (the database
    server has the other core)."""

    def __init__(
        self, spec: DatasetSpec, file_name: str, month: date | None = None, threads: int = 1
    ) -> None:
        """`month`: count the rows picked up in it too (when the pickup is an identity field)."""
        self.spec, self.file_name = spec, file_name
        self._con = duckdb.connect(config={"threads": threads, "memory_limit": "32MB"})
        bounds = (month, next_month(month)) if month and spec.pickup_column in spec.identity_columns else None
        self.counts_in_month = bounds is not None
        self._sql, self._bad_sql = duckdb_trip_id_sql(spec, month=bounds)
        names = spec.csv_columns
        self._read = pcsv.ReadOptions(column_names=list(names), use_threads=False, block_size=1 << 30)
        self._parse = pcsv.ParseOptions(newlines_in_values=False)
        self._convert = pcsv.ConvertOptions(
            include_columns=list(spec.identity_columns),
            column_types={n: pa.string() for n in spec.identity_columns},
            strings_can_be_null=True,
            null_values=[""],
            quoted_strings_can_be_null=False,
        )

    def close(self) -> None:
        self._con.close()

    def ids(self, block: Block) -> pa.Array:
        return self.ids_and_in_month(block)[0]

    def ids_and_in_month(self, block: Block) -> tuple[pa.Array, int | None]:
        """The block's ids, and how many of its rows were picked up in the month (None: not
        counted)."""
        try:
            fields = pcsv.read_csv(
                pa.BufferReader(block.data),
                read_options=self._read,
                parse_options=self._parse,
                convert_options=self._convert,
                memory_pool=MEMORY_POOL,
            )
        except pa.ArrowInvalid as exc:
            raise self._parse_error(block, exc) from None
        if fields.num_rows != block.rows:  # a quoted field holding a line end
            raise BadCsvError(
                f"{self.file_name} lines {block.first_line}..{block.file_line(block.rows - 1)}: "
                "a quoted field spans lines, which this reader does not accept"
            )
        batch = pa.table(
            [fields.column(n) for n in self.spec.identity_columns],
            names=[_column_ref(i) for i in range(len(self.spec.identity_columns))],
        )
        self._con.register("batch", batch)
        try:
            result = self._con.execute(self._sql).to_arrow_table()
            if not pc.all(result.column("ok")).as_py():
                bad = self._con.execute(self._bad_sql).to_arrow_table().column("bad").to_numpy()
                raise self._value_error(block, fields, bad)
        finally:
            self._con.unregister("batch")
        in_month = None
        if self.counts_in_month:
            in_month = pc.sum(result.column("in_month")).as_py() or 0
        return result.column("id").combine_chunks(), in_month

    def _value_error(self, block: Block, fields: pa.Table, bad: np.ndarray) -> BadCsvError:
        row = int(np.flatnonzero(bad >= 0)[0])
        name = self.spec.identity_columns[int(bad[row])]
        value = fields.column(name)[row].as_py()
        return BadCsvError(
            f"{self.file_name} line {block.file_line(row)}, column {name}: {value[:80]!r} cannot be "
            f"read as {_WHAT[self.spec.column(name).type]}"
        )

    def _parse_error(self, block: Block, exc: Exception) -> BadCsvError:
        expected = len(self.spec.csv_columns)
        text = block.data.decode("utf-8", "replace")
        for index, row in enumerate(csv.reader(io.StringIO(text, newline=""))):
            if len(row) != expected:
                kind = "too few" if len(row) < expected else "too many"
                return BadCsvError(
                    f"{self.file_name} line {block.file_line(index)}: {len(row)} fields, expected "
                    f"{expected} ({kind}; a truncated or malformed row)"
                )
        return BadCsvError(f"{self.file_name} lines {block.first_line}..: {str(exc)[:300]}")
