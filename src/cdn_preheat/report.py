"""Traffic reports (flux and bandwidth) and access-log listings of a CDN domain.

The library behind ``cdn-preheat stats`` and ``cdn-preheat logs``. Providers
with statistics (Tencent ``DescribeCdnData``/``DescribeCdnDomainLogs``, Qiniu
``get_flux_data``/``get_bandwidth_data``/``get_log_list_data``) implement
:class:`StatsProvider`. Dates are calendar days in UTC+8, the time zone both
vendors report in; a range covers its first day's midnight to its last day's
end. The PNG chart needs matplotlib, the optional extra ``plot``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from cdn_preheat import clock
from cdn_preheat.errors import ConfigError, DomainError, InputError, ProviderError
from cdn_preheat.providers.stats import LogFile, TrafficSeries

Granularity = Literal["5min", "hour", "day"]
GRANULARITIES: tuple[Granularity, ...] = ("5min", "hour", "day")
UTC8 = clock.UTC8  # the vendors report in China time
MAX_DAYS = 31  # both vendors refuse longer ranges
PLOT_HINT = "pip install 'cdn-preheat[plot]'"


@runtime_checkable
class StatsProvider(Protocol):
    """A provider that reports traffic and lists access logs."""

    name: str

    def flux(
        self,
        domain: str,
        start: dt.datetime,
        end: dt.datetime,
        granularity: Any = ...,
        metric: str = ...,
    ) -> TrafficSeries: ...

    def logs(self, domain: str, day: dt.date) -> list[LogFile]: ...


@dataclass(frozen=True)
class TrafficRow:
    time: dt.datetime  # the interval's start
    flux_bytes: float | None
    bandwidth_bps: float | None


@dataclass(frozen=True)
class TrafficReport:
    provider: str
    domain: str
    first_day: dt.date
    last_day: dt.date
    granularity: Granularity
    rows: tuple[TrafficRow, ...]

    @property
    def total_bytes(self) -> float:
        return sum(row.flux_bytes or 0.0 for row in self.rows)

    @property
    def peak(self) -> TrafficRow | None:
        measured = [row for row in self.rows if row.bandwidth_bps is not None]
        return max(measured, key=lambda row: row.bandwidth_bps or 0.0) if measured else None


def parse_day(text: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"{option} takes a date like 2024-03-01, not {text!r}.") from None


# What a provider lacking the feature has not, in the refusal's sentence.
_LACKING = {"stats": "traffic statistics or log API", "logs": "access-log API"}


def stats_provider(provider: object, feature: Literal["stats", "logs"] = "stats") -> StatsProvider:
    """``provider`` if its declared features have ``feature``; else ConfigError (exit 2).

    The sentence names the registered providers that declare it.
    """
    declared = getattr(getattr(provider, "features", None), feature, False)
    if not declared or not isinstance(provider, StatsProvider):
        from cdn_preheat.providers import provider_specs

        name = getattr(provider, "name", "this provider")
        having = " or ".join(s.name for s in provider_specs() if getattr(s.features, feature))
        raise ConfigError(f"CDN_PROVIDER={name} has no {_LACKING[feature]}; use {having}.")
    return provider


def traffic_report(
    provider: object, domain: str, first: dt.date, last: dt.date, granularity: str
) -> TrafficReport:
    """Flux and bandwidth of ``domain`` per interval, first to last day (UTC+8) inclusive."""
    if granularity not in GRANULARITIES:
        choices = ", ".join(GRANULARITIES)
        raise InputError(f"--granularity is one of {choices}, not {granularity!r}.")
    if last < first:
        raise InputError("--to is before --from.")
    if (last - first).days >= MAX_DAYS:
        raise InputError(f"a report covers at most {MAX_DAYS} days.")
    source = stats_provider(provider)
    start = dt.datetime.combine(first, dt.time(), UTC8)
    end = dt.datetime.combine(last, dt.time(23, 59, 59), UTC8)
    with _naming(domain, source.name):
        flux = source.flux(domain, start, end, granularity, metric="flux")
        bandwidth = source.flux(domain, start, end, granularity, metric="bandwidth")
    by_time: dict[dt.datetime, list[float | None]] = {}
    for point in flux.points:
        by_time.setdefault(point.time, [None, None])[0] = point.value
    for point in bandwidth.points:
        by_time.setdefault(point.time, [None, None])[1] = point.value
    rows = tuple(TrafficRow(t, v[0], v[1]) for t, v in sorted(by_time.items()))
    return TrafficReport(source.name, domain, first, last, granularity, rows)


def access_logs(provider: object, domain: str, day: dt.date) -> list[LogFile]:
    """The access-log packages of ``domain`` for one day (UTC+8)."""
    source = stats_provider(provider, "logs")
    with _naming(domain, source.name):
        return sorted(source.logs(domain, day), key=lambda log: log.start)


@contextmanager
def _naming(domain: str, provider: str) -> Iterator[None]:
    """Provider errors name the domain asked about (the providers' own name CDN_HOST)."""
    try:
        yield
    except DomainError as exc:
        code = f" ({exc.code})" if exc.code else ""
        exc.args = (
            f"{domain} is not a CDN domain of this {provider} account{code}; check --domain.",
        )
        raise
    except ProviderError as exc:
        if domain not in str(exc):
            exc.args = (f"{domain}: {exc}",)
        raise


def report_dict(report: TrafficReport) -> dict[str, Any]:
    """The report as JSON-ready data: bytes per interval, bit/s, times in UTC+8."""
    peak = report.peak
    return {
        "provider": report.provider,
        "domain": report.domain,
        "from": report.first_day.isoformat(),
        "to": report.last_day.isoformat(),
        "granularity": report.granularity,
        "total_flux_bytes": report.total_bytes,
        "peak_bandwidth_bps": peak.bandwidth_bps if peak else None,
        "peak_at": peak.time.astimezone(UTC8).isoformat() if peak else None,
        "points": [
            {
                "time": row.time.astimezone(UTC8).isoformat(),
                "flux_bytes": row.flux_bytes,
                "bandwidth_bps": row.bandwidth_bps,
            }
            for row in report.rows
        ],
    }


def require_matplotlib() -> None:
    """Fail early, before any API call, when ``--plot`` cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError(f"--plot needs matplotlib: {PLOT_HINT}") from None


def plot_traffic(report: TrafficReport, path: Path) -> None:
    """A PNG chart: flux per interval above, bandwidth below."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    times = [row.time.astimezone(UTC8).replace(tzinfo=None) for row in report.rows]
    flux_scale, flux_unit = _scale(max((r.flux_bytes or 0 for r in report.rows), default=0), "B")
    rate_scale, rate_unit = _scale(
        max((r.bandwidth_bps or 0 for r in report.rows), default=0), "bit/s"
    )
    figure, (flux_axes, rate_axes) = plt.subplots(2, 1, sharex=True, figsize=(11, 6))
    flux_axes.plot(times, [(r.flux_bytes or 0) / flux_scale for r in report.rows], color="C0")
    flux_axes.set_ylabel(f"flux ({flux_unit} per {report.granularity})")
    rate_axes.plot(times, [(r.bandwidth_bps or 0) / rate_scale for r in report.rows], color="C1")
    rate_axes.set_ylabel(f"bandwidth ({rate_unit})")
    rate_axes.set_xlabel("time (UTC+8)")
    for axes in (flux_axes, rate_axes):
        axes.grid(alpha=0.3)
    figure.suptitle(
        f"{report.domain} on {report.provider}: {report.first_day} to {report.last_day}"
    )
    figure.autofmt_xdate()
    try:
        figure.savefig(path, format="png", dpi=100)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}.") from None
    finally:
        plt.close(figure)


def human(value: float | None, unit: str) -> str:
    """``1.50 GB``, ``12.0 Mbit/s``; ``-`` for no value."""
    if value is None:
        return "-"
    scale, prefixed = _scale(value, unit)
    return f"{value / scale:.2f} {prefixed}"


def _scale(value: float, unit: str) -> tuple[float, str]:
    for power, prefix in ((4, "T"), (3, "G"), (2, "M"), (1, "k")):
        if value >= 1000**power:
            return float(1000**power), f"{prefix}{unit}"
    return 1.0, unit
