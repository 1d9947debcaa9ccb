"""Prometheus metrics at ``GET /metrics`` (the ``prometheus-client`` library).

Two kinds:

- Counted in this process as things happen: CDN API calls by provider, API
  and outcome (``cdn_preheat_api_requests_total``), the push call's latency
  (``cdn_preheat_push_latency_seconds``), webhook deliveries by outcome
  (``cdn_preheat_webhook_deliveries_total``, counted by the webhook sender).
  With ``PROMETHEUS_MULTIPROC_DIR`` set (several ``serve``/``worker``
  processes behind one scrape target), prometheus-client keeps them in that
  directory and every process's counts are summed on scrape
  (https://prometheus.github.io/client_python/multiprocess/).
- Read from the shared ledger on each scrape, so every process reports the
  same figures and nothing is summed twice: URLs by provider, area and state
  (``cdn_preheat_urls``), queue depth (``cdn_preheat_queue_depth``), videos by
  state (``cdn_preheat_videos``), today's quota per provider and area
  (``cdn_preheat_quota_limit``, ``cdn_preheat_quota_remaining``; from the
  ledger's book, so a scrape never spends a CDN API call).

Names follow https://prometheus.io/docs/practices/naming/ (``_total`` for
counters only, base units such as ``_seconds``).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cdn_preheat.errors import RateLimited, Transient
from cdn_preheat.ledger.base import UrlState, VideoState

if TYPE_CHECKING:
    from cdn_preheat.providers.base import Provider
    from cdn_preheat.service.engine import ServiceEngine

# The provider methods that are CDN API calls.
_CALLS = (
    "quota", "submit", "task_status", "window_status", "find_submitted", "find_request",
    "purge_urls", "purge_dirs", "purge_status",
)  # fmt: skip
OUTCOMES = ("ok", "rate-limited", "transient", "error")
# Push calls take tens of milliseconds to seconds (the SDKs' own timeouts are 15-60 s).
PUSH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Metrics:
    """The metrics of one app; ``instrument(provider)`` counts a provider's calls."""

    def __init__(self, engine: ServiceEngine) -> None:
        self.engine = engine
        self.registry = CollectorRegistry(auto_describe=True)
        # Multiprocess mode: the values live in PROMETHEUS_MULTIPROC_DIR and the
        # scrape reads them back through MultiProcessCollector, so the metric
        # objects are not registered themselves.
        own = None if multiprocess() else self.registry
        self.api_requests = Counter(
            "cdn_preheat_api_requests",
            "CDN API calls by provider, API and outcome.",
            ["provider", "api", "outcome"],
            registry=own,
        )
        self.push_latency = Histogram(
            "cdn_preheat_push_latency_seconds",
            "Duration of the CDN's prefetch (push) calls.",
            ["provider"],
            buckets=PUSH_BUCKETS,
            registry=own,
        )
        self.webhook_deliveries = Counter(
            "cdn_preheat_webhook_deliveries",
            "Webhook delivery attempts by outcome (delivered, failed, gave_up).",
            ["outcome"],
            registry=own,
        )
        if multiprocess():
            from prometheus_client import multiprocess as mp

            mp.MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
        else:
            from prometheus_client import PLATFORM_COLLECTOR, PROCESS_COLLECTOR

            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR):
                self.registry.register(_Borrowed(collector))
        self.registry.register(LedgerCollector(engine))

    def instrument(self, provider: Provider) -> None:
        """Count every CDN API call of ``provider`` (its methods wrapped in place)."""
        # A time-window status query is the same vendor API as a query by task id
        # (Tencent DescribePushTasks with StartTime/EndTime).
        names = {
            "submit": provider.submit_api,
            "task_status": provider.status_api,
            "window_status": provider.status_api,
        }
        for method in _CALLS:
            original = getattr(provider, method, None)
            if original is None or getattr(original, "_cdn_preheat_counted", False):
                continue
            wrapped = self._counted(provider.name, names.get(method, method), method, original)
            setattr(provider, method, wrapped)

    def _counted(
        self, provider: str, api: str, method: str, call: Callable[..., Any]
    ) -> Callable[..., Any]:
        @functools.wraps(call)
        def counted(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            outcome = "error"
            try:
                result = call(*args, **kwargs)
                outcome = "ok"
                return result
            except RateLimited:
                outcome = "rate-limited"
                raise
            except Transient:
                outcome = "transient"
                raise
            finally:
                self.api_requests.labels(provider, api, outcome).inc()
                if method == "submit":
                    self.push_latency.labels(provider).observe(time.perf_counter() - started)

        counted._cdn_preheat_counted = True  # type: ignore[attr-defined]
        return counted

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    def mount(self, app: FastAPI) -> None:
        # A plain (sync) route: the ledger reads of a scrape run in a worker thread.
        @app.get("/metrics", tags=["health"], summary="Prometheus metrics (no token).")
        def metrics() -> Response:
            return self.render()


class _Borrowed(Collector):
    """A default collector (process, platform) registered on a second registry."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def collect(self) -> Iterator[Metric]:
        yield from self.inner.collect()


class LedgerCollector(Collector):
    """Gauges read from the ledger at scrape time (the same in every process)."""

    def __init__(self, engine: ServiceEngine) -> None:
        self.engine = engine

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected fresh on every scrape

    def collect(self) -> Iterator[Metric]:
        engine = self.engine
        ledger = engine.ledger
        try:
            # (name, area, quota offset) of the provider, or of every target and pool.
            keys = engine.quota_keys()
        except Exception:  # settings incomplete: /readyz says why; counts still go out
            keys = []
        by_target = ledger.counts_by_target()
        if not by_target:
            by_target = {(name, area): {} for name, area, _ in keys} or {
                (engine.settings.cdn_provider, ""): {}
            }
        urls = GaugeMetricFamily(
            "cdn_preheat_urls", "URLs in the ledger by provider, area and state.",
            labels=["provider", "area", "state"],
        )  # fmt: skip
        depth = 0
        for (target_provider, target_area), counts in sorted(by_target.items()):
            for state in UrlState:
                urls.add_metric([target_provider, target_area, str(state)], counts.get(state, 0))
            depth += counts.get(UrlState.PENDING, 0) + counts.get(UrlState.RESERVED, 0)
        yield urls
        yield GaugeMetricFamily(
            "cdn_preheat_queue_depth", "URLs queued (pending or reserved) to push.", value=depth
        )
        by_state = dict.fromkeys(VideoState, 0)
        for video in ledger.list_videos():
            by_state[video.state] += 1
        videos = GaugeMetricFamily(
            "cdn_preheat_videos", "Videos in the ledger by state.", labels=["state"]
        )
        for video_state, number in by_state.items():
            videos.add_metric([str(video_state)], number)
        yield videos
        limit = GaugeMetricFamily(
            "cdn_preheat_quota_limit", "Today's prefetch quota (URLs) per provider and area.",
            labels=["provider", "area"],
        )  # fmt: skip
        remaining = GaugeMetricFamily(
            "cdn_preheat_quota_remaining",
            "Prefetch quota (URLs) left today per provider and area, reservations deducted.",
            labels=["provider", "area"],
        )
        if keys:
            from cdn_preheat.clock import quota_day, utcnow

            now = utcnow()
            offsets = {(name, area): offset for name, area, offset in keys}
            default = keys[0][2]  # keys in the ledger not configured now: the first's day
            for target_provider, target_area in sorted({*offsets, *by_target}):
                offset = offsets.get((target_provider, target_area), default)
                day = quota_day(now, offset)
                book = ledger.quota_day(target_provider, target_area, day)
                if book is not None and book.limit is not None:
                    limit.add_metric([target_provider, target_area], book.limit)
                    remaining.add_metric([target_provider, target_area], book.remaining or 0)
        yield limit
        yield remaining
