"""A small statistical model of taxi trips, vectorised with numpy.

Values are integers: epoch seconds for times, cents for money, hundredths of a mile for distances.
The distributions are rough fits to the real sample files (shares of payment types, rate codes,
passenger counts, typical fares), enough to make generated months look and load like real ones.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache

import numpy as np

LOCATIONS = 265  # zone ids 1..265 (264 and 265 are the "Unknown" zones)
MAX_DISTANCE = 10_000  # hundredths of a mile: 100 miles
MAX_DURATION = 4 * 3600
_KEY_BITS = 16  # (pickup << 16 | duration) orders trips by pickup; durations stay far below 2**16
REFUND_SHARE = 0.005


@dataclass(frozen=True)
class Profile:
    """Per-dataset value distributions (not columns: those come from the spec)."""

    vendor_weights: tuple[float, float]  # P(VendorID=1), P(VendorID=2)
    congestion_cents: int  # the congestion surcharge amount of the service
    congestion_share: float  # share of attributed trips charged it
    tail_congestion_share: float  # share of unattributed (tail block) trips charged it
    street_hail_share: float  # green trip_type 1
    location_seed: int  # fixes which zones are popular
    vendor1_tenths: bool = True  # vendor 1 meters record distances to a tenth of a mile


PROFILES = {
    "yellow": Profile((0.32, 0.68), 250, 0.85, 0.2, 1.0, 1),
    "green": Profile((0.15, 0.85), 275, 0.05, 0.02, 0.97, 2),
}
DEFAULT_PROFILE = PROFILES["yellow"]


@dataclass
class Trips:
    """Column-wise values of a batch of trips."""

    pickup: np.ndarray
    dropoff: np.ndarray
    vendor: np.ndarray
    distance: np.ndarray
    passengers: np.ndarray
    ratecode: np.ndarray
    store_fwd: np.ndarray  # 0 = N, 1 = Y
    pu: np.ndarray
    do: np.ndarray
    payment: np.ndarray
    trip_type: np.ndarray
    base: np.ndarray  # FHV dispatching base number
    fare: np.ndarray
    extra: np.ndarray
    mta: np.ndarray
    tip: np.ndarray
    tolls: np.ndarray
    improvement: np.ndarray
    congestion: np.ndarray
    total: np.ndarray

    def __len__(self) -> int:
        return len(self.pickup)

    def take(self, index: np.ndarray) -> Trips:
        """The trips at `index`, in that order."""
        return Trips(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def __getitem__(self, rows: slice) -> Trips:
        return Trips(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    @staticmethod
    def concat(parts: list[Trips]) -> Trips:
        """The trips of all parts, in order."""
        return Trips(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Trips)})


def _categorical(rng: np.random.Generator, values: list[int], weights: list[float], n: int) -> np.ndarray:
    p = np.asarray(weights, dtype=float)
    return np.asarray(values, dtype=np.int64)[rng.choice(len(values), n, p=p / p.sum())]


@cache
def _location_weights(seed: int) -> np.ndarray:
    # A Zipf-like popularity over a fixed shuffle of the zones: a few busy zones, a long tail.
    rank = np.random.default_rng(seed).permutation(LOCATIONS)
    w = 1.0 / (rank + 8.0) ** 1.2
    return w / w.sum()


def _distances(rng: np.random.Generator, vendor: np.ndarray, tenths: bool) -> np.ndarray:
    n = len(vendor)
    miles = rng.lognormal(np.log(1.7), 0.9, n)
    d = np.minimum(np.rint(miles * 100), MAX_DISTANCE).astype(np.int64)
    d[rng.random(n) < 0.015] = 0
    if tenths:
        v1 = vendor == 1
        d[v1] = np.rint(d[v1] / 10).astype(np.int64) * 10
    return d


def _durations(rng: np.random.Generator, distance: np.ndarray) -> np.ndarray:
    n = len(distance)
    mph = np.clip(rng.lognormal(np.log(11), 0.35, n), 3, 50)
    secs = distance / 100 / mph * 3600 + rng.integers(0, 120, n)
    secs = np.where(distance == 0, rng.integers(5, 900, n), secs)
    return np.clip(np.rint(secs), 1, MAX_DURATION).astype(np.int64)


def _distinct_times(
    rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, duration: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pickups drawn in [lo, hi) with no two trips sharing both pickup and dropoff time.

    That makes every generated trip distinct from every other, so a file's duplicate count is
    exactly its number of deliberate copies. A trip that ties with another is made one second
    longer until none tie. Returns (pickup, duration, order): sorted by pickup, and the order to
    apply to the other per-trip arrays drawn so far.
    """
    key = rng.integers(lo, hi) << _KEY_BITS | duration
    order = np.argsort(key)
    key = key[order]
    while True:
        ties = np.flatnonzero(key[1:] == key[:-1]) + 1
        if not ties.size:
            return key >> _KEY_BITS, key & (1 << _KEY_BITS) - 1, order
        key[ties] += 1
        resort = np.argsort(key, kind="stable")  # nearly sorted already: a cheap merge
        key, order = key[resort], order[resort]


def simulate(
    rng: np.random.Generator,
    lo: np.ndarray,
    hi: np.ndarray,
    *,
    profile: Profile,
    attributed: bool,
    congestion: bool,
) -> Trips:
    """Trips with pickups drawn in [lo[i], hi[i]), sorted by pickup.

    `attributed=False` draws the unattributed tail-block kind of trip (fares with cents, no tip);
    `congestion=False` leaves the congestion surcharge at zero (before it existed).
    """
    n = len(lo)
    vendor = _categorical(rng, [1, 2], list(profile.vendor_weights), n)
    distance = _distances(rng, vendor, attributed and profile.vendor1_tenths)
    duration = _durations(rng, distance)
    # Real files run roughly in pickup order.
    pickup, duration, order = _distinct_times(rng, lo, hi, duration)
    vendor, distance = vendor[order], distance[order]

    ratecode = _categorical(rng, [1, 2, 3, 4, 5, 6, 99], [96.8, 2.0, 0.15, 0.1, 0.9, 0.04, 0.01], n)
    passengers = _categorical(rng, [0, 1, 2, 3, 4, 5, 6], [2.5, 70, 15, 5, 2, 3, 2.5], n)
    payment = _categorical(rng, [1, 2, 3, 4, 5], [66, 32, 1, 0.8, 0.2], n)
    locations = _location_weights(profile.location_seed)
    pu = rng.choice(LOCATIONS, n, p=locations) + 1
    do = rng.choice(LOCATIONS, n, p=locations) + 1
    street_hail = (rng.random(n) < profile.street_hail_share) & (ratecode != 5)

    fare, extra, mta, tip = _fares(rng, pickup, distance, duration, ratecode, payment, attributed)
    tolls = np.where(rng.random(n) < 0.045, _categorical(rng, [612, 280, 1175, 1224], [90, 4, 3, 3], n), 0)
    improvement = np.where(rng.random(n) < 0.0005, 0, 30)
    share = profile.congestion_share if attributed else profile.tail_congestion_share
    charged = congestion & (rng.random(n) < share)
    congestion_fee = np.where(charged, profile.congestion_cents, 0)

    if attributed:
        # Refunds: the whole charge reversed (no tip or tolls are refunded in these rows).
        refund = rng.random(n) < REFUND_SHARE
        tip[refund] = 0
        tolls[refund] = 0
        payment[refund] = rng.choice([3, 4], int(refund.sum()))
        sign = np.where(refund, -1, 1)
        fare, extra, mta, improvement, congestion_fee = (
            fare * sign,
            extra * sign,
            mta * sign,
            improvement * sign,
            congestion_fee * sign,
        )
    total = fare + extra + mta + tip + tolls + improvement + congestion_fee

    return Trips(
        pickup=pickup,
        dropoff=pickup + duration,
        vendor=vendor,
        distance=distance,
        passengers=passengers,
        ratecode=ratecode,
        store_fwd=(rng.random(n) < 0.015).astype(np.int64),
        pu=pu,
        do=do,
        payment=payment,
        trip_type=np.where(street_hail, 1, 2),
        base=rng.integers(1, 3600, n),
        fare=fare,
        extra=extra,
        mta=mta,
        tip=tip,
        tolls=tolls,
        improvement=improvement,
        congestion=congestion_fee,
        total=total,
    )


def _fares(
    rng: np.random.Generator,
    pickup: np.ndarray,
    distance: np.ndarray,
    duration: np.ndarray,
    ratecode: np.ndarray,
    payment: np.ndarray,
    attributed: bool,
) -> tuple[np.ndarray, ...]:
    """fare, extra, mta_tax, tip in cents."""
    n = len(pickup)
    minutes = duration / 60
    if not attributed:
        # The tail block's fares carry cents and no tip, with the 2.75 extra typical of it.
        fare = np.rint(250 + 2.4 * distance + 30 * minutes).astype(np.int64)
        fare += rng.integers(0, 100, n)
        extra = _categorical(rng, [275, 50, 300, 0, 550], [55, 20, 15, 7, 3], n)
        mta = np.where(rng.random(n) < 0.75, 50, 0)
        return fare, extra, mta, np.zeros(n, dtype=np.int64)

    # Metered fare: 2.50 + 2.50 a mile + time in slow traffic, in steps of 0.50.
    metered = np.rint((250 + 2.5 * distance + 20 * minutes) / 50).astype(np.int64) * 50
    fare = np.select(
        [ratecode == 2, (ratecode == 3) | (ratecode == 4), ratecode == 5],
        [np.full(n, 5200), metered * 2, rng.integers(10, 101, n) * 100],
        metered,
    )
    hour = pickup % 86_400 // 3600
    weekday = (pickup // 86_400 + 3) % 7  # epoch day 0 was a Thursday; Monday = 0
    night = (hour >= 20) | (hour < 6)
    peak = (weekday < 5) & (hour >= 16) & (hour < 20)
    flat_rate = (ratecode == 2) | (ratecode == 5)
    extra = np.where(flat_rate, 0, np.where(night, 50, np.where(peak, 100, 0)))
    mta = np.where((ratecode == 5) | (rng.random(n) < 0.01), 0, 50)
    tipped = (payment == 1) & (rng.random(n) < 0.85)
    tip = np.where(tipped, np.rint(fare * rng.uniform(0.1, 0.3, n)), 0).astype(np.int64)
    return fare, extra, mta, tip
