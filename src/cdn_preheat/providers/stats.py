"""Traffic statistics and log listings as providers report them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class TrafficPoint:
    """One interval's value; ``time`` is the interval's start."""

    time: dt.datetime
    value: float


@dataclass(frozen=True)
class TrafficSeries:
    """One metric of one domain over time.

    ``metric`` is ``flux`` (bytes), ``bandwidth`` (bit/s) or ``request`` (count);
    ``summary`` is the provider's own total (sum, or peak for bandwidth).
    """

    domain: str
    metric: str
    interval: str
    points: tuple[TrafficPoint, ...]
    summary: float | None = None


@dataclass(frozen=True)
class LogFile:
    """One downloadable access-log package."""

    start: dt.datetime
    end: dt.datetime
    area: str
    name: str
    url: str
    size: int | None = None
