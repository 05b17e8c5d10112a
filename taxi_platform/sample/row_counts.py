"""How many rows a generated month has at full size: the real count of the months known, else a
plausible size (2019's typical month, scaled by how yellow traffic moved in and after 2020)."""

from __future__ import annotations

from datetime import date

from taxi_platform.datasets import DatasetSpec

_YELLOW_2020 = (
    6_405_008,
    6_299_354,
    3_007_292,
    237_993,
    348_371,
    549_760,
    800_412,
    1_007_284,
    1_341_012,
    1_681_131,
    1_508_985,
    1_461_897,
)
_GREEN_2020 = (
    447_770,
    398_632,
    223_406,
    35_612,
    57_360,
    63_109,
    72_257,
    81_063,
    87_987,
    95_120,
    88_605,
    83_130,
)

REAL_ROW_COUNTS: dict[tuple[str, str], int] = {
    **{("yellow", f"2020-{m:02d}"): n for m, n in enumerate(_YELLOW_2020, 1)},
    **{("green", f"2020-{m:02d}"): n for m, n in enumerate(_GREEN_2020, 1)},
    ("yellow", "2019-01"): 7_696_617,
    ("yellow", "2021-01"): 1_369_765,
    ("yellow", "2021-03"): 1_925_152,
    ("green", "2019-10"): 476_386,
}
# Typical monthly size in 2019, before the pandemic (fhv: 43.2 M rows over 2019).
_ROWS_2019 = {"yellow": 7_000_000, "green": 500_000, "fhv": 3_600_000}


def full_size_rows(spec: DatasetSpec, month: date) -> int:
    """The real row count of a month when known, else a plausible size for it."""
    known = REAL_ROW_COUNTS.get((spec.name, f"{month:%Y-%m}"))
    if known is not None:
        return known
    base = _ROWS_2019.get(spec.name, 1_000_000)
    if month < date(2020, 1, 1):
        return base
    # Scale by how yellow traffic moved against 2019 (the 2020 collapse, then the late-2020 level).
    level = _YELLOW_2020[month.month - 1] if month.year == 2020 else _YELLOW_2020[-1]
    return round(base * level / _ROWS_2019["yellow"])
