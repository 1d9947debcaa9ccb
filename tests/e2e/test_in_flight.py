"""Pushes in flight follow what the rate and the API's round trip need (issue 15's measure).

At 20 requests a second, an API that takes half a second to answer needs ten
requests in flight just to keep the rate; a fixed four would cap the account at
8 requests a second. Unset, ``CDN_PREHEAT_CONCURRENCY`` starts at 4 and grows
to ``ceil(2 x rate x p90 round trip) + 1`` (at most 64); set, it is exactly that.

The number in flight is counted where the requests arrive (the emulator's
:class:`~cdn_preheat.sandbox.core.InFlight`) and by the scheduler itself, never
inferred from how long a run took.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pytest

from cdn_preheat.config import Settings, load_settings
from cdn_preheat.ledger.base import QueuedUrl
from cdn_preheat.ledger.sqlite import SqliteLedger
from cdn_preheat.providers.http import HttpProvider
from cdn_preheat.providers.tencent import TencentProvider
from cdn_preheat.sandbox.core import Faults
from cdn_preheat.sandbox.server import Sandbox, TencentAccount
from cdn_preheat.scheduler import (
    DEFAULT_CONCURRENCY,
    MAX_IN_FLIGHT,
    DrainReport,
    Scheduler,
    SchedulerOptions,
    in_flight_needed,
)
from cdn_preheat.targets import (
    build_units,
    close_units,
    resolve_targets,
    run_units,
    unit_run_options,
)

P, A = "tencent", "mainland"
BATCH = 5
SLOW = 0.5  # seconds the slow account adds to every API request


def _settings(box: Sandbox, provider: str = "tencent", **extra: str) -> Settings:
    env: Mapping[str, str] = {**box.client_env(provider), **extra}
    return Settings(_env_file=None, **{k.lower(): v for k, v in env.items()})  # type: ignore[call-arg]


def _urls(box: Sandbox, count: int) -> list[str]:
    urls = [box.edge_url(path) for path in box.origin.catalog_paths("demo-1")[:count]]
    assert len(urls) == count
    return urls


def _queue(ledger: SqliteLedger, key: tuple[str, str], urls: list[str]) -> None:
    now = dt.datetime.now(dt.UTC)
    queued = [QueuedUrl(url, "segment") for url in urls]
    ledger.enqueue("demo-1", *key, queued, now, dt.timedelta(days=3))


def _drain(
    box: Sandbox,
    tmp_path: Path,
    urls: list[str],
    *,
    concurrency: int | None = None,
    rate: float | None = None,
) -> DrainReport:
    provider = TencentProvider(_settings(box))
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    _queue(ledger, (P, A), urls)
    try:
        options = SchedulerOptions(concurrency=concurrency, batch_size=BATCH, rate=rate)
        scheduler = Scheduler(ledger, provider, options)
        return scheduler.drain()
    finally:
        ledger.close()
        provider.close()


def _each_once(received: list[str], urls: list[str]) -> None:
    assert sorted(received) == sorted(urls)
    assert [u for u, n in Counter(received).items() if n > 1] == []


# -- the rule ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "round_trip", "floor", "cap", "needed"),
    [
        (20, 0.055, 4, 64, 4),  # 1.1 busy workers, 1.5 times that + 1: the floor
        (20, 0.11, 4, 64, 5),  # 2.2 busy: 3.3 -> 4, + 1
        (20, 0.21, 4, 64, 8),  # the bench's slow target: 4.2 busy: 6.3 -> 7, + 1
        (20, 0.49, 4, 64, 16),  # 9.8 busy: 14.7 -> 15, + 1
        (50, 3.0, 4, 64, 64),  # bounded
        (20, 0.49, 4, 8, 8),
        (20, 0.0, 4, 64, 4),  # nothing seen yet
        (0.5, 0.49, 1, 64, 2),  # a fractional rate: 0.37 -> 1, + 1
        (20, 0.49, 10, 4, 4),  # a floor above the cap is the cap
    ],
)
def test_in_flight_needed_is_one_and_a_half_rate_times_round_trip_plus_one(
    rate: float, round_trip: float, floor: int, cap: int, needed: int
) -> None:
    assert in_flight_needed(rate, round_trip, floor, cap) == needed


# -- against the emulator ------------------------------------------------------------


def test_a_slow_account_gets_the_pushes_in_flight_its_rate_needs(tmp_path: Path) -> None:
    # 20 requests/s x 0.5 s: about 11 in flight are needed, 4 to start with.
    with Sandbox(videos=1, segments=120, faults=Faults(latency=SLOW)) as box:
        urls = _urls(box, 60 * BATCH)
        box.tencent.in_flight.reset()
        report = _drain(box, tmp_path, urls)
        assert report.submitted == len(urls)
        assert box.tencent.in_flight.peak > DEFAULT_CONCURRENCY
        assert DEFAULT_CONCURRENCY < report.peak_in_flight <= MAX_IN_FLIGHT
        _each_once(box.tencent.received_urls(), urls)


def test_a_fast_account_keeps_the_starting_concurrency(tmp_path: Path) -> None:
    # At 2 requests/s a push would have to take over 1 s for a fifth worker to be
    # needed (1.5 x 2 x 1 + 1); the emulator answers at once.
    with Sandbox(videos=1, segments=40) as box:
        urls = _urls(box, 10 * BATCH)
        box.tencent.in_flight.reset()
        report = _drain(box, tmp_path, urls, rate=2.0)
        assert report.submitted == len(urls)
        assert report.peak_in_flight == DEFAULT_CONCURRENCY
        assert box.tencent.in_flight.peak <= DEFAULT_CONCURRENCY
        _each_once(box.tencent.received_urls(), urls)


def test_an_explicit_concurrency_is_exactly_the_pushes_in_flight(tmp_path: Path) -> None:
    with Sandbox(videos=1, segments=40, faults=Faults(latency=SLOW)) as box:
        urls = _urls(box, 16 * BATCH)
        box.tencent.in_flight.reset()
        report = _drain(box, tmp_path, urls, concurrency=2)
        assert report.submitted == len(urls)
        assert report.peak_in_flight == 2
        assert box.tencent.in_flight.peak <= 2
        _each_once(box.tencent.received_urls(), urls)


def test_the_setting_unset_is_automatic_and_set_is_fixed(tmp_path: Path) -> None:
    from cdn_preheat.app import run_options

    unset = load_settings(_env_file=None)
    assert unset.cdn_preheat_concurrency is None
    assert run_options(unset).scheduler.concurrency is None
    fixed = load_settings(_env_file=None, cdn_preheat_concurrency=8)
    assert run_options(fixed).scheduler.concurrency == 8


def test_the_http_provider_keeps_its_concurrency_however_slow_the_origin(
    tmp_path: Path,
) -> None:
    # Each warm-up is our own load on the edges (CDN_PREHEAT_WARM_CONCURRENCY fetches
    # a batch): a slow origin must not multiply the batches warming at once.
    with Sandbox(videos=1, segments=40) as box:
        box.origin.latency = 0.3
        provider = HttpProvider(_settings(box, "http"))
        ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
        urls = _urls(box, 12 * BATCH)
        _queue(ledger, (provider.name, provider.area), urls)
        try:
            report = Scheduler(ledger, provider, SchedulerOptions(batch_size=BATCH)).drain()
        finally:
            ledger.close()
            provider.close()
        assert report.submitted == len(urls)
        assert report.peak_in_flight == DEFAULT_CONCURRENCY


def test_each_target_gets_the_pushes_in_flight_its_own_latency_needs(tmp_path: Path) -> None:
    accounts = {"tencent-b": TencentAccount(faults=Faults(latency=SLOW))}
    with Sandbox(videos=1, segments=120, tencent_accounts=accounts) as box:
        env = box.targets_file(tmp_path / "targets.toml", ("tencent", "tencent-b"))
        settings = load_settings(
            _env_file=None,
            cdn_preheat_targets=env["CDN_PREHEAT_TARGETS"],
            cdn_preheat_batch_size=BATCH,
        )
        units = build_units(resolve_targets(settings, env))
        ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
        urls = _urls(box, 60 * BATCH)
        for unit in units:
            _queue(ledger, unit.key, urls)
        for name in ("tencent", "tencent-b"):
            box.apis[name].in_flight.reset()
        try:
            results = run_units(
                ledger, units, unit_run_options(settings, wait=False, wait_timeout=30)
            )
        finally:
            ledger.close()
            close_units(units)
        assert [r.error for r in results] == [None, None]
        peaks = {r.name: r.report.peak_in_flight for r in results if r.report}
        assert peaks["tencent-b"] > DEFAULT_CONCURRENCY
        assert box.apis["tencent-b"].in_flight.peak > DEFAULT_CONCURRENCY
        for name in ("tencent", "tencent-b"):
            _each_once(box.apis[name].received_urls(), urls)  # type: ignore[attr-defined]
