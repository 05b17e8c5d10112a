"""Byte-level rendering of trip values: lookup tables and fixed-width row matrices.

Every field of a line gets a fixed-width slot in a uint8 matrix (one matrix row per CSV line),
filled from a lookup table of NUL-padded strings. Dropping every NUL byte of the matrix then yields
the CSV text of all lines in one vectorised step, with no per-field Python work. NUL never occurs
in the data, so it is a safe padding byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Protocol

import numpy as np

# Money is rendered through a table indexed by cents; values are clipped into this range (the trip
# model stays far inside it, so clipping never changes a generated value).
MONEY_MIN_CENTS = -100_000
MONEY_MAX_CENTS = 300_000
# Trip distances in hundredths of a mile.
DISTANCE_MAX_HUNDREDTHS = 20_000
INT_MAX = 999
SECONDS_PER_DAY = 86_400


def table(strings: Sequence[str]) -> np.ndarray:
    """A (len, width) uint8 table of the NUL-padded ASCII strings."""
    arr = np.array([s.encode("ascii") for s in strings], dtype=bytes)  # numpy pads 'S' with NUL
    return arr.view(np.uint8).reshape(len(strings), arr.dtype.itemsize)


def money_text(cents: int) -> str:
    """Shortest decimal form the TLC files use for money: 8, 0.5, 11.8, 1.65, -0.5, 0."""
    sign = "-" if cents < 0 else ""
    units, frac = divmod(abs(cents), 100)
    if frac == 0:
        return f"{sign}{units}"
    if frac % 10 == 0:
        return f"{sign}{units}.{frac // 10}"
    return f"{sign}{units}.{frac:02d}"


def distance_text(hundredths: int) -> str:
    """Trip distance with two decimals and no leading zero below 1: 2.10, .20, .00."""
    units, frac = divmod(hundredths, 100)
    return f"{units or ''}.{frac:02d}"


@cache
def money_table() -> np.ndarray:
    """Money strings indexed by `cents - MONEY_MIN_CENTS`."""
    # Vectorised sign + units + fraction suffix: 400k money_text() calls would cost ~0.4 s.
    cents = np.arange(MONEY_MIN_CENTS, MONEY_MAX_CENTS + 1)
    fraction = np.array([money_text(f)[1:].encode() for f in range(100)])  # "", ".05", ".5"
    text = np.char.add(np.where(cents < 0, b"-", b""), (np.abs(cents) // 100).astype(bytes))
    text = np.char.add(text, fraction[np.abs(cents) % 100])
    text = text.astype(f"S{np.char.str_len(text).max()}")  # drop the all-NUL columns
    return text.view(np.uint8).reshape(len(cents), text.dtype.itemsize)


@cache
def distance_table() -> np.ndarray:
    """Distance strings indexed by hundredths of a mile."""
    return table([distance_text(h) for h in range(DISTANCE_MAX_HUNDREDTHS + 1)])


@cache
def int_table() -> np.ndarray:
    """Decimal strings of 0..INT_MAX indexed by value."""
    return table([str(i) for i in range(INT_MAX + 1)])


@cache
def time_of_day_table() -> np.ndarray:
    """The 86,400 `HH:MM:SS` strings indexed by second of the day."""
    s = np.arange(SECONDS_PER_DAY)
    digits = np.stack(
        [s // 36000, s // 3600 % 10, s // 600 % 6, s // 60 % 10, s // 10 % 6, s % 10], axis=1
    ).astype(np.uint8) + ord("0")
    out = np.full((SECONDS_PER_DAY, 8), ord(":"), dtype=np.uint8)
    out[:, [0, 1, 3, 4, 6, 7]] = digits
    return out


@dataclass(frozen=True)
class DayTable:
    """`YYYY-MM-DD ` strings (with the separating space) for a contiguous range of epoch days."""

    first_day: int
    strings: np.ndarray

    @classmethod
    def covering(cls, first_day: int, last_day: int) -> DayTable:
        days = np.arange(first_day, last_day + 1).astype("datetime64[D]")
        text = np.datetime_as_string(days, unit="D").astype("S10").view(np.uint8)
        strings = np.full((len(days), 11), ord(" "), dtype=np.uint8)
        strings[:, :10] = text.reshape(len(days), 10)
        return cls(first_day, strings)


class Field(Protocol):
    """One column's renderer: fills a (rows, width) slot from the trips' values."""

    @property
    def width(self) -> int: ...

    def fill(self, out: np.ndarray, trips: object) -> None: ...


@dataclass(frozen=True)
class EmptyField:
    """A column left empty in every row (NULL)."""

    width: int = 0

    def fill(self, out: np.ndarray, trips: object) -> None:
        pass


@dataclass(frozen=True)
class LookupField:
    """A column rendered as `strings[value + offset]` of one trips attribute."""

    attr: str
    strings: np.ndarray
    offset: int = 0

    @property
    def width(self) -> int:
        return self.strings.shape[1]

    def fill(self, out: np.ndarray, trips: object) -> None:
        out[:] = self.strings[getattr(trips, self.attr) + self.offset]


def int_field(attr: str) -> LookupField:
    """Small non-negative integers: `1`, `264`."""
    return LookupField(attr, int_table())


def money_field(attr: str) -> LookupField:
    """Money in shortest decimal form, from integer cents."""
    return LookupField(attr, money_table(), -MONEY_MIN_CENTS)


def distance_field(attr: str) -> LookupField:
    """Distances with two decimals, from integer hundredths."""
    return LookupField(attr, distance_table())


@dataclass(frozen=True)
class DateTimeField:
    """`YYYY-MM-DD HH:MM:SS` from epoch seconds."""

    attr: str
    days: DayTable
    width: int = 19

    def fill(self, out: np.ndarray, trips: object) -> None:
        secs = getattr(trips, self.attr)
        out[:, :11] = self.days.strings[secs // SECONDS_PER_DAY - self.days.first_day]
        out[:, 11:] = time_of_day_table()[secs % SECONDS_PER_DAY]


class Layout:
    """Fixed byte offsets of every field of a line, with the commas and line ending pre-placed."""

    def __init__(self, fields: Sequence[Field], line_ending: bytes) -> None:
        self.fields = list(fields)
        self.offsets: list[int] = []
        template = bytearray()
        for i, field in enumerate(self.fields):
            if i:
                template += b","
            self.offsets.append(len(template))
            template += bytes(field.width)
        template += line_ending
        self.template = np.frombuffer(bytes(template), dtype=np.uint8)

    @property
    def width(self) -> int:
        return len(self.template)

    def render(self, out: np.ndarray, trips: object) -> None:
        """Write the lines of `trips` into `out`, a (len(trips), width) uint8 matrix."""
        out[:] = self.template
        for field, offset in zip(self.fields, self.offsets):
            if field.width:
                field.fill(out[:, offset : offset + field.width], trips)


def compact(lines: np.ndarray) -> np.ndarray:
    """The CSV bytes of a rendered matrix: all bytes but the NUL padding, row by row."""
    flat = lines.reshape(-1)
    return flat[flat != 0]
