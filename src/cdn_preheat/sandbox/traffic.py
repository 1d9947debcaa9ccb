"""Deterministic traffic statistics and log listings for the CDN emulators.

The same (domain, metric, time) always gives the same number, so stats
commands can be tested against fixed expectations without a real CDN.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

STEP_SECONDS = {"min": 60, "5min": 300, "hour": 3600, "day": 86400}


def _unit(*parts: str) -> float:
    """A stable number in [0, 1) from the parts."""
    digest = hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def flux_bytes(domain: str, start: dt.datetime, step_seconds: int) -> int:
    """Bytes served by ``domain`` in the interval beginning at ``start``."""
    # About 1 MB/s on average with a daily swing, so charts look like traffic.
    hour = start.hour + start.minute / 60
    daily = 0.5 + 0.5 * abs(12 - hour) / 12
    return int(step_seconds * 1_000_000 * daily * (0.5 + _unit(domain, start.isoformat())))


def metric_value(domain: str, metric: str, start: dt.datetime, step_seconds: int) -> float:
    """``flux`` and ``hitFlux`` in bytes, ``bandwidth`` in bit/s, requests as counts."""
    flux = flux_bytes(domain, start, step_seconds)
    values = {
        "flux": float(flux),
        "hitFlux": float(flux * 9 // 10),
        "bandwidth": round(flux * 8 / step_seconds, 2),
        "request": float(flux // 500_000),
        "hitRequest": float(flux // 500_000 * 9 // 10),
    }
    return values[metric]


METRICS = frozenset({"flux", "hitFlux", "bandwidth", "request", "hitRequest"})


def series(
    domain: str, metric: str, start: dt.datetime, end: dt.datetime, step_seconds: int
) -> list[tuple[dt.datetime, float]]:
    """Points from ``start`` (rounded down to the step) through ``end``."""
    epoch = start.timestamp()
    first = start - dt.timedelta(seconds=(epoch + _utc_offset(start)) % step_seconds)
    points = []
    moment = first
    while moment <= end:
        points.append((moment, metric_value(domain, metric, moment, step_seconds)))
        moment += dt.timedelta(seconds=step_seconds)
    return points


def _utc_offset(moment: dt.datetime) -> float:
    offset = moment.utcoffset()
    return offset.total_seconds() if offset is not None else 0.0


@dataclass(frozen=True)
class LogPackage:
    """One hour of access log for one domain and area."""

    start: dt.datetime
    end: dt.datetime
    area: str
    name: str
    size: int


def log_packages(
    domain: str, start: dt.datetime, end: dt.datetime, areas: tuple[str, ...]
) -> list[LogPackage]:
    """Hourly packages overlapping [start, end], oldest first."""
    hour = start.replace(minute=0, second=0, microsecond=0)
    packages = []
    while hour <= end:
        for area in areas:
            stamp = hour.strftime("%Y%m%d%H")
            size = 1024 + int(_unit(domain, area, stamp) * 4_000_000)
            name = f"{stamp}-{domain.replace(':', '_')}-{area}.gz"
            packages.append(LogPackage(hour, hour + dt.timedelta(hours=1), area, name, size))
        hour += dt.timedelta(hours=1)
    return packages
