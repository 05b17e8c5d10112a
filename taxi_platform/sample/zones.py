"""The zone lookup of the mirror: the real table (public reference data, shipped as the dbt seed
`dbt_project/seeds/taxi_zone_lookup.csv`), served in the release file's format: quoted strings,
CRLF, 265 zones, 264/265 the two unknown zones."""

from __future__ import annotations

import csv
from pathlib import Path

from taxi_platform.datasets import ZONES
from taxi_platform.settings import DEFAULT_DBT_PROJECT_DIR

ZONE_SEED = DEFAULT_DBT_PROJECT_DIR / "seeds" / "taxi_zone_lookup.csv"


def zone_rows(seed: Path = ZONE_SEED) -> list[tuple[int, str, str, str]]:
    """The seed's 265 rows: 1 is Newark (EWR), 132/138 the Queens airports, 264/265 the two
    unknown zones."""
    with open(seed, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        if header != [c.name for c in ZONES.columns]:
            raise ValueError(f"{seed}: header {header}, expected {[c.name for c in ZONES.columns]}")
        return [
            (int(location_id), borough, zone, service_zone)
            for location_id, borough, zone, service_zone in reader
        ]


def write_zone_lookup(dest: Path, seed: Path = ZONE_SEED) -> Path:
    """Write the file like the real `misc/taxi_zone_lookup.csv` (quoted text, CRLF)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name("." + dest.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")
        writer.writerow([c.name for c in ZONES.columns])
        writer.writerows(zone_rows(seed))
    tmp.replace(dest)
    return dest


def write_mirror_zones(mirror_root: Path, seed: Path = ZONE_SEED) -> Path:
    return write_zone_lookup(mirror_root / ZONES.release_tag / ZONES.file_name, seed)
