"""Column values of generated TLC Parquet files, in the physical types of a schema era.

The trips come from the model of `_trips.py` (integers: epoch seconds, cents, hundredths of a
mile); this module adds what the Parquet releases hold beyond the course CSV (2009-2010 codes and
coordinates, fhv bases, fhvhv services and pay) and encodes every column as the era's pyarrow type.
All work is vectorised: a row group of a million trips takes about a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa

from taxi_platform.eras import SchemaEra
from taxi_platform.partitions import add_months
from taxi_platform.sample import _render as render
from taxi_platform.sample._trips import PROFILES, Profile, Trips, simulate

ARROW_TYPES = {
    "int32": pa.int32(),
    "int64": pa.int64(),
    "double": pa.float64(),
    "string": pa.string(),
    "large_string": pa.large_string(),
    "timestamp[us]": pa.timestamp("us"),
    "null": pa.null(),
}
# For-hire trips: no vendors, metered distances to the hundredth.
_FOR_HIRE = Profile((0.5, 0.5), 275, 0.6, 0.1, 1.0, 3, vendor1_tenths=False)
UNATTRIBUTED_SHARE = 0.03  # 2020+ yellow/green rows with the counts and flags left NULL
CONGESTION_FROM = date(2019, 2, 1)
AIRPORT_FEE_FROM = date(2021, 1, 1)  # NULL all through the older files
YEARS_OFF = (2008, 2009, 2088)  # far-off pickup years seen in the real files
AIRPORTS = (1, 132, 138)  # Newark, JFK, LaGuardia
LICENSES = ("HV0002", "HV0003", "HV0004", "HV0005")  # Juno, Uber, Via, Lyft
_UBER_BASES = ("B02764", "B02765", "B02866", "B02869", "B02871", "B02875", "B02882", "B02883", "B02887")
_BASES = ("B02907", *_UBER_BASES, "B02800", "B02510")  # Juno, Uber's, Via, Lyft
_BASE_NAMES = tuple(f"B{i:05d}" for i in range(3600))
_CHARGES = (
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "improvement_surcharge",
    "congestion_surcharge",
    "airport_fee",
    "cbd_congestion_fee",
)


@dataclass(frozen=True)
class Col:
    """One column of a batch before encoding: values of a kind, and which rows are NULL."""

    kind: str  # "int", "float", "cents" (money or hundredths), "time" (epoch s), "label", "null"
    values: np.ndarray
    nulls: np.ndarray | None = None
    labels: tuple[str, ...] = ()  # "label": the text of each value index


def _null(n: int) -> Col:
    return Col("null", np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool))


def epoch(d: date) -> int:
    """Epoch seconds of midnight UTC of `d`."""
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def draw_trips(rng: np.random.Generator, dataset: str, month: date, lo: np.ndarray, hi: np.ndarray) -> Trips:
    """Trips with pickups in [lo[i], hi[i]), distinct by (pickup, dropoff), sorted by pickup."""
    profile = PROFILES.get(dataset, _FOR_HIRE)
    return simulate(rng, lo, hi, profile=profile, attributed=True, congestion=month >= CONGESTION_FROM)


def draw_out_of_month(rng: np.random.Generator, dataset: str, month: date, n: int) -> Trips:
    """Drawn together (so distinct), shuffled: mostly the month before, a few after or years off."""
    start, end = epoch(month), epoch(add_months(month, 1))
    years = [y for y in YEARS_OFF if y != month.year]
    far = min(n // 4, 1 + n // 2000)
    after = min(n // 4, 1 + n // 1000)
    windows = [(start - 6 * 3600, start)] * (n - far - after) + [(end, end + 86_400)] * after
    for year in rng.choice(years, far):
        other = month.replace(year=int(year))
        windows.append((epoch(other), epoch(add_months(other, 1))))
    lo = np.array([w[0] for w in windows], dtype=np.int64)
    hi = np.array([w[1] for w in windows], dtype=np.int64)
    trips = draw_trips(rng, dataset, month, lo, hi)
    return trips.take(rng.permutation(n))


def columns(rng: np.random.Generator, dataset: str, month: date, era: SchemaEra, trips: Trips) -> pa.Table:
    """The trips as a table with exactly the era's columns, in file order and physical types."""
    build = {"yellow": _taxi, "green": _taxi, "fhv": _fhv, "fhvhv": _fhvhv}[dataset]
    cols = build(rng, dataset, month, era, trips)
    types = era.arrow_types(month)
    missing = [c.name for c in era.columns if c.target not in cols]
    if missing:
        raise ValueError(f"{era.name}: no generated values for {missing}")
    arrays = [encode(cols[c.target], types[c.name]) for c in era.columns]
    return pa.Table.from_arrays(arrays, schema=schema(era, month))


def schema(era: SchemaEra, month: date) -> pa.Schema:
    """The pyarrow schema of the era's file of `month`: names in file order, physical types."""
    types = era.arrow_types(month)
    return pa.schema([pa.field(c.name, ARROW_TYPES[types[c.name]]) for c in era.columns])


def encode(col: Col, type_name: str) -> pa.Array:
    """The column as a pyarrow array of the named type."""
    type_ = ARROW_TYPES[type_name]
    n, mask = len(col.values), col.nulls
    if type_name == "null" or col.kind == "null":
        return pa.nulls(n, type_)
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        if col.kind == "time":
            return _time_text(col.values, mask).cast(type_)
        if col.kind == "label":
            return _labels(col.values, col.labels, mask).cast(type_)
        if col.kind == "int":  # a count the era writes as text: its decimal digits
            uniq, index = np.unique(col.values, return_inverse=True)
            return _labels(index, tuple(str(v) for v in uniq), mask).cast(type_)
    elif col.kind == "time" and type_ == pa.timestamp("us"):
        return pa.array(col.values * 1_000_000, mask=mask).view(type_)
    elif col.kind == "cents" and type_name == "double":
        return pa.array(col.values / 100, mask=mask)
    elif col.kind in ("int", "float") and type_name in ("double", "int64", "int32"):
        return pa.array(col.values, mask=mask).cast(type_)
    raise ValueError(f"cannot write a {col.kind} column as {type_name}")


def _labels(index: np.ndarray, labels: tuple[str, ...], nulls: np.ndarray | None) -> pa.Array:
    indices = pa.array(index.astype(np.int32), mask=nulls)
    return pa.DictionaryArray.from_arrays(indices, pa.array(labels, pa.string())).dictionary_decode()


def _time_text(secs: np.ndarray, nulls: np.ndarray | None) -> pa.Array:
    """'YYYY-MM-DD HH:MM:SS' strings (the 2009-2010 files), rendered as a fixed-width byte matrix."""
    n = len(secs)
    days = secs // render.SECONDS_PER_DAY
    table = render.DayTable.covering(int(days.min()), int(days.max())) if n else None
    text = np.empty((n, 19), dtype=np.uint8)
    if table is not None:
        text[:, :11] = table.strings[days - table.first_day]
        text[:, 11:] = render.time_of_day_table()[secs % render.SECONDS_PER_DAY]
    offsets = pa.py_buffer(np.arange(0, 19 * (n + 1), 19, dtype=np.int32))
    validity = None
    if nulls is not None and nulls.any():
        validity = pa.py_buffer(np.packbits(~nulls, bitorder="little"))
    return pa.StringArray.from_buffers(n, offsets, pa.py_buffer(text), validity)


def _share(rng: np.random.Generator, n: int, p: float) -> np.ndarray:
    return rng.random(n) < p


def _taxi(rng: np.random.Generator, dataset: str, month: date, era: SchemaEra, t: Trips) -> dict[str, Col]:
    """Yellow and green columns, by canonical name; 2009-2010 codes and coordinates for those eras."""
    n = len(t)
    # The improvement surcharge began in 2015 at 0.30 and became 1.00 in 2023 (sign kept: refunds).
    rate = 0 if month < date(2015, 1, 1) else 30 if month < date(2023, 1, 1) else 100
    airport = np.where(np.isin(t.pu, (132, 138)), 125 if month < date(2023, 1, 1) else 175, 0)
    cbd = np.where(_share(rng, n, 0.4 if dataset == "yellow" else 0.1), 75, 0)
    tail = _share(rng, n, UNATTRIBUTED_SHARE if month >= date(2020, 1, 1) else 0.0)
    prefix = "tpep" if dataset == "yellow" else "lpep"
    pickup, dropoff = f"{prefix}_pickup_datetime", f"{prefix}_dropoff_datetime"
    cols = {
        "VendorID": Col("int", t.vendor),
        pickup: Col("time", t.pickup),
        dropoff: Col("time", t.dropoff),
        "passenger_count": Col("int", t.passengers, tail),
        "trip_distance": Col("cents", t.distance),
        "RatecodeID": Col("int", t.ratecode, tail),
        "store_and_fwd_flag": Col("label", t.store_fwd, tail, ("N", "Y")),
        "PULocationID": Col("int", t.pu),
        "DOLocationID": Col("int", t.do),
        "payment_type": Col("int", t.payment, tail),
        "trip_type": Col("int", t.trip_type, tail),
        "fare_amount": Col("cents", t.fare),
        "extra": Col("cents", t.extra),
        "mta_tax": Col("cents", t.mta),
        "tip_amount": Col("cents", t.tip),
        "tolls_amount": Col("cents", t.tolls),
        "ehail_fee": _null(n),
        "improvement_surcharge": Col("cents", np.sign(t.improvement) * rate),
        # NULL all through the files from before the surcharge (the fee) began.
        "congestion_surcharge": Col("cents", t.congestion, tail) if month >= CONGESTION_FROM else _null(n),
        "airport_fee": Col("cents", airport, tail) if month >= AIRPORT_FEE_FROM else _null(n),
        "cbd_congestion_fee": Col("cents", cbd),
    }
    if era.name in ("yellow-2009", "yellow-2010"):
        cols.update(_legacy(rng, era.name, t))
    # The total adds up the charges the era's files have (NULL counts as 0).
    present = {c.target for c in era.columns}
    total = np.zeros(n, dtype=np.int64)
    for name in _CHARGES:
        if name in present and cols[name].kind == "cents":
            col = cols[name]
            total += col.values if col.nulls is None else np.where(col.nulls, 0, col.values)
    cols["total_amount"] = Col("cents", total)
    return cols


def _legacy(rng: np.random.Generator, era: str, t: Trips) -> dict[str, Col]:
    """2009-2010: vendor and payment codes as text, coordinates instead of zones."""
    n = len(t)
    # Digital Dispatch Systems (no VendorID) dispatched a few percent of the trips.
    vendor = np.where(_share(rng, n, 0.04), 2, t.vendor - 1)
    cols = {"VendorID": Col("label", vendor, None, ("CMT", "VTS", "DDS"))}
    if era == "yellow-2009":
        # CMT wrote 'Cash'/'Credit', the others upper case; no 'unknown' payment in 2009.
        words = ("Credit", "Cash", "CREDIT", "CASH", "No Charge", "Dispute")
        payment = np.minimum(t.payment, 4)
        index = np.where(payment <= 2, payment - 1 + np.where(vendor == 0, 0, 2), payment + 1)
        cols["payment_type"] = Col("label", index, None, words)
        cols["RatecodeID"] = Col("int", t.ratecode, _share(rng, n, 0.9))
        cols["store_and_fwd_flag"] = Col("int", t.store_fwd, _share(rng, n, 0.7))
    else:
        cols["payment_type"] = Col("label", t.payment - 1, None, ("CRD", "CAS", "NOC", "DIS", "UNK"))
        cols["store_and_fwd_flag"] = Col("label", t.store_fwd, _share(rng, n, 0.6), ("N", "Y"))
    cols.update(_coordinates(rng, t.distance))
    return cols


def _coordinates(rng: np.random.Generator, distance: np.ndarray) -> dict[str, Col]:
    """Pickups around midtown, dropoffs about the trip's distance away; a few 0.0 (no GPS fix)."""
    n = len(distance)
    lon = -73.98 + rng.normal(0, 0.03, n)
    lat = 40.755 + rng.normal(0, 0.035, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    miles = distance / 100 / 1.3  # streets are longer than the straight line
    end_lon = lon + miles * np.cos(angle) / 52.4  # miles per degree at 40.7 N
    end_lat = lat + miles * np.sin(angle) / 69.0
    no_fix = _share(rng, n, 0.015)
    values = {"pickup_longitude": lon, "pickup_latitude": lat}
    values |= {"dropoff_longitude": end_lon, "dropoff_latitude": end_lat}
    return {k: Col("float", np.where(no_fix, 0.0, np.round(v, 6))) for k, v in values.items()}


def _fhv(rng: np.random.Generator, dataset: str, month: date, era: SchemaEra, t: Trips) -> dict[str, Col]:
    """fhv: bases, zones as doubles with NULLs, SR_Flag mostly NULL."""
    n = len(t)
    affiliated = np.where(_share(rng, n, 0.08), rng.integers(1, 3600, n), t.base)
    return {
        "dispatching_base_num": Col("label", t.base, None, _BASE_NAMES),
        "pickup_datetime": Col("time", t.pickup),
        "dropoff_datetime": Col("time", t.dropoff),
        "PULocationID": Col("int", t.pu, _share(rng, n, 0.2)),
        "DOLocationID": Col("int", t.do, _share(rng, n, 0.05)),
        "SR_Flag": Col("int", np.ones(n, dtype=np.int64), ~_share(rng, n, 0.03)),
        "Affiliated_base_number": Col("label", affiliated, _share(rng, n, 0.07), _BASE_NAMES),
    }


def _fhvhv(rng: np.random.Generator, dataset: str, month: date, era: SchemaEra, t: Trips) -> dict[str, Col]:
    """fhvhv: the four services, request and on-scene times, fares and driver pay."""
    n = len(t)
    # Juno stopped in late 2019, Via's share faded by 2022.
    weights = [0.03 if month < date(2020, 1, 1) else 0, 0.7, 0.03 if month < date(2022, 1, 1) else 0, 0.25]
    service = rng.choice(4, n, p=np.asarray(weights) / sum(weights))
    uber = service == 1
    base = np.select(
        [service == 0, uber, service == 2], [0, rng.integers(1, 1 + len(_UBER_BASES), n), len(_BASES) - 2]
    )
    base = np.where(service == 3, len(_BASES) - 1, base)
    on_scene = t.pickup - rng.integers(0, 300, n)
    request = on_scene - rng.integers(30, 600, n)
    fare = np.maximum(np.rint(t.fare * rng.uniform(0.9, 1.4, n)).astype(np.int64), 0)
    tips = np.where(_share(rng, n, 0.2), np.rint(fare * rng.uniform(0.1, 0.25, n)), 0).astype(np.int64)
    airport = np.where(np.isin(t.pu, AIRPORTS) | np.isin(t.do, AIRPORTS), 250, 0)
    flag = ("N", "Y", " ")
    return {
        "hvfhs_license_num": Col("label", service, None, LICENSES),
        "dispatching_base_num": Col("label", base, None, _BASES),
        "originating_base_num": Col("label", base, ~uber | _share(rng, n, 0.05), _BASES),
        "request_datetime": Col("time", request),
        "on_scene_datetime": Col("time", on_scene, ~uber),
        "pickup_datetime": Col("time", t.pickup),
        "dropoff_datetime": Col("time", t.dropoff),
        "PULocationID": Col("int", t.pu),
        "DOLocationID": Col("int", t.do),
        "trip_miles": Col("cents", t.distance),
        "trip_time": Col("int", t.dropoff - t.pickup),
        "base_passenger_fare": Col("cents", fare),
        "tolls": Col("cents", t.tolls),
        "bcf": Col("cents", np.rint(fare * 0.025).astype(np.int64)),
        "sales_tax": Col("cents", np.rint(fare * 0.08875).astype(np.int64)),
        "congestion_surcharge": Col("cents", t.congestion),
        "airport_fee": _null(n) if month < AIRPORT_FEE_FROM else Col("cents", airport),
        "tips": Col("cents", tips),
        "driver_pay": Col("cents", np.rint(fare * rng.uniform(0.65, 0.8, n)).astype(np.int64) + tips),
        "shared_request_flag": Col("label", _share(rng, n, 0.02).astype(np.int64), None, flag),
        "shared_match_flag": Col("label", _share(rng, n, 0.005).astype(np.int64), None, flag),
        "access_a_ride_flag": Col("label", np.where(uber, 2, 0), None, flag),
        "wav_request_flag": Col("label", _share(rng, n, 0.005).astype(np.int64), None, flag),
        "wav_match_flag": Col("label", _share(rng, n, 0.07).astype(np.int64), None, flag),
        "cbd_congestion_fee": Col("cents", np.where(_share(rng, n, 0.3), 150, 0)),
    }
