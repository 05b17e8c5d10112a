"""A generated zone lookup of the real shape: quoted strings, CRLF, 265 zones, 264/265 unknown."""

from __future__ import annotations

import csv
from pathlib import Path

from taxi_platform.datasets import ZONES

# (borough, number of zones, service_zone) in the order and proportions of the real table.
_BOROUGHS = [("Queens", 69, "Boro Zone"), ("Bronx", 43, "Boro Zone"), ("Manhattan", 69, "Yellow Zone"),
             ("Staten Island", 20, "Boro Zone"), ("Brooklyn", 61, "Boro Zone")]
_AIRPORT_IDS = {132: "JFK Airport", 138: "LaGuardia Airport"}


def zone_rows() -> list[tuple[int, str, str, str]]:
    """265 rows: 1 is Newark (EWR), 132/138 airports in Queens, 264/265 the two unknown zones."""
    rows = [(1, "EWR", "Newark Airport", "EWR")]
    location_id = 2
    for borough, count, service_zone in _BOROUGHS:
        for n in range(1, count + 1):
            if location_id in _AIRPORT_IDS:
                rows.append((location_id, "Queens", _AIRPORT_IDS[location_id], "Airports"))
            else:
                rows.append((location_id, borough, f"{borough} Zone {n}", service_zone))
            location_id += 1
    return rows + [(264, "Unknown", "NV", "N/A"), (265, "Unknown", "NA", "N/A")]


def write_zone_lookup(dest: Path) -> Path:
    """Write the file like the real `misc/taxi_zone_lookup.csv` (quoted text, CRLF)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name("." + dest.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")
        writer.writerow([c.name for c in ZONES.columns])
        writer.writerows(zone_rows())
    tmp.replace(dest)
    return dest


def write_mirror_zones(mirror_root: Path) -> Path:
    return write_zone_lookup(mirror_root / ZONES.release_tag / ZONES.file_name)
