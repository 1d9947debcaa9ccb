"""The provider contract suite's fixture: one sandbox and provider per kind.

Adding a provider kind is one entry in ``PROVIDER_KINDS``: a factory that
starts a :class:`Sandbox` and returns a :class:`ProviderEnv` whose provider is
built from ``Settings`` made of ``sandbox.client_env(kind)``.

One more kind, ``live``, is a real account: with ``CDN_PREHEAT_LIVE=1``, the
configured provider (``CDN_PROVIDER`` and the vendor's variables, read as the
CLI reads them) and ``CDN_PREHEAT_LIVE_URLS`` (a file of a few real URLs on
``CDN_HOST``, one a line), the tests marked ``live_safe`` run against it and
spend at most one quota unit per listed URL; every other test needs the
sandbox and skips. Without those variables the ``live`` kind skips, naming them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from contract_env import TASK_DELAY, ProviderEnv, settings_from

from cdn_preheat.config import Settings
from cdn_preheat.errors import PreheatError
from cdn_preheat.providers import make_provider
from cdn_preheat.providers.aliyun import AliyunProvider
from cdn_preheat.providers.base import Provider, SubmitResult, TaskState
from cdn_preheat.providers.edgeone import EdgeOneProvider
from cdn_preheat.providers.http import HttpProvider, WarmOptions
from cdn_preheat.providers.qiniu import QiniuProvider
from cdn_preheat.providers.tencent import TencentProvider
from cdn_preheat.sandbox.aliyun import AliyunLimits
from cdn_preheat.sandbox.edgeone import EdgeOneLimits
from cdn_preheat.sandbox.qiniu import QiniuLimits
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.sandbox.tencent import TencentLimits


def _tencent_env() -> ProviderEnv:
    sandbox = Sandbox(videos=2, segments=5, tencent_limits=TencentLimits(task_delay=TASK_DELAY))
    sandbox.start()

    def make(overrides: Mapping[str, str]) -> Provider:
        return TencentProvider(settings_from({**sandbox.client_env("tencent"), **overrides}))

    def set_quota(per_day: int) -> None:
        sandbox.tencent.limits.push_per_day = per_day

    return ProviderEnv(
        kind="tencent",
        sandbox=sandbox,
        provider=make({}),
        make_provider=make,
        received_urls=sandbox.tencent.received_urls,
        set_daily_quota=set_quota,
        secret_variable="TENCENT_SECRET_KEY",
        credential_variables=("TENCENT_SECRET_ID", "TENCENT_SECRET_KEY"),
    )


def _edgeone_env() -> ProviderEnv:
    limits = EdgeOneLimits(task_delay=TASK_DELAY)
    # The edge answers EO-Cache-Status, as EdgeOne's edges do.
    sandbox = Sandbox(videos=2, segments=5, edgeone_limits=limits, edge_vendor="edgeone")
    sandbox.start()

    def make(overrides: Mapping[str, str]) -> Provider:
        return EdgeOneProvider(settings_from({**sandbox.client_env("edgeone"), **overrides}))

    def set_quota(per_day: int) -> None:
        sandbox.edgeone.limits.prefetch_per_day = per_day

    return ProviderEnv(
        kind="edgeone",
        sandbox=sandbox,
        provider=make({}),
        make_provider=make,
        received_urls=sandbox.edgeone.received_urls,
        set_daily_quota=set_quota,
        secret_variable="TENCENT_SECRET_KEY",
        credential_variables=("TENCENT_SECRET_ID", "TENCENT_SECRET_KEY"),
    )


def _aliyun_env() -> ProviderEnv:
    sandbox = Sandbox(videos=2, segments=5, aliyun_limits=AliyunLimits(task_delay=TASK_DELAY))
    sandbox.start()

    def make(overrides: Mapping[str, str]) -> Provider:
        return AliyunProvider(settings_from({**sandbox.client_env("aliyun"), **overrides}))

    def set_quota(per_day: int) -> None:
        limits = sandbox.aliyun.limits
        sandbox.aliyun.limits = dataclasses.replace(limits, preload_quota=per_day)

    return ProviderEnv(
        kind="aliyun",
        sandbox=sandbox,
        provider=make({}),
        make_provider=make,
        received_urls=sandbox.aliyun.received_urls,
        set_daily_quota=set_quota,
        secret_variable="ALIYUN_ACCESS_KEY_SECRET",
        credential_variables=("ALIYUN_ACCESS_KEY_ID", "ALIYUN_ACCESS_KEY_SECRET"),
        missing_file_state=TaskState.FAILED,
    )


def _qiniu_env() -> ProviderEnv:
    limits = QiniuLimits(task_delay=TASK_DELAY, refresh_dir_enabled=True)
    sandbox = Sandbox(videos=2, segments=5, qiniu_limits=limits)
    sandbox.start()

    def make(overrides: Mapping[str, str]) -> Provider:
        return QiniuProvider(settings_from({**sandbox.client_env("qiniu"), **overrides}))

    def set_quota(per_day: int) -> None:
        sandbox.qiniu.limits.prefetch_quota = per_day

    return ProviderEnv(
        kind="qiniu",
        sandbox=sandbox,
        provider=make({}),
        make_provider=make,
        received_urls=sandbox.qiniu.received_urls,
        set_daily_quota=set_quota,
        secret_variable="QINIU_SECRET_KEY",
        credential_variables=("QINIU_ACCESS_KEY", "QINIU_SECRET_KEY"),
        quota_known_before_submit=False,
        quota_calls_api=False,
    )


def _http_env() -> ProviderEnv:
    sandbox = Sandbox(videos=2, segments=5)
    sandbox.start()

    def make(overrides: Mapping[str, str]) -> Provider:
        settings = settings_from({**sandbox.client_env("http"), **overrides})
        # One fetch at a time, so the edge receives the URLs in submission order.
        options = dataclasses.replace(WarmOptions.from_settings(settings), concurrency=1)
        return HttpProvider(settings, options=options)

    def received_urls() -> list[str]:
        # Warming is a full GET; the suite's own one-byte probes are not.
        requests = sandbox.edge.requests
        return [sandbox.edge_url(r.path) for r in requests if r.method == "GET" and not r.range]

    return ProviderEnv(
        kind="http",
        sandbox=sandbox,
        provider=make({}),
        make_provider=make,
        received_urls=received_urls,
        set_daily_quota=None,
        secret_variable=None,
        api_faults=False,
        can_purge=False,
        tasks_finish_on_submit=True,
    )


PROVIDER_KINDS: dict[str, Callable[[], ProviderEnv]] = {
    "tencent": _tencent_env,
    "edgeone": _edgeone_env,
    "aliyun": _aliyun_env,
    "qiniu": _qiniu_env,
    "http": _http_env,
}


LIVE_VARIABLES = (
    "CDN_PREHEAT_LIVE=1, CDN_PROVIDER, the vendor's credentials (TENCENT_SECRET_ID/"
    "TENCENT_SECRET_KEY, with EO_ZONE_ID for edgeone, ALIYUN_ACCESS_KEY_ID/"
    "ALIYUN_ACCESS_KEY_SECRET or QINIU_ACCESS_KEY/"
    "QINIU_SECRET_KEY), CDN_HOST and CDN_PREHEAT_LIVE_URLS (a file of a few real URLs)"
)
_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "tencent": ("TENCENT_SECRET_ID", "TENCENT_SECRET_KEY"),
    "edgeone": ("TENCENT_SECRET_ID", "TENCENT_SECRET_KEY"),
    "aliyun": ("ALIYUN_ACCESS_KEY_ID", "ALIYUN_ACCESS_KEY_SECRET"),
    "qiniu": ("QINIU_ACCESS_KEY", "QINIU_SECRET_KEY"),
    "http": (),
}
# A real task takes minutes (Alibaba documents 5 to 30); polled at a pace no API minds.
LIVE_SETTLE_TIMEOUT = float(os.environ.get("CDN_PREHEAT_LIVE_TIMEOUT", "2400"))
LIVE_POLL_INTERVAL = float(os.environ.get("CDN_PREHEAT_LIVE_POLL", "15"))


def live_configured() -> bool:
    return os.environ.get("CDN_PREHEAT_LIVE") == "1" and bool(
        os.environ.get("CDN_PREHEAT_LIVE_URLS")
    )


class QuotaBudget:
    """Every live provider's ``submit`` goes through one budget: the live file's URL count."""

    def __init__(self, units: int) -> None:
        self.units, self.spent = units, 0

    def guard(self, provider: Provider) -> Provider:
        submit = provider.submit

        def budgeted(urls: Sequence[str]) -> SubmitResult:
            if self.spent + len(urls) > self.units:
                pytest.fail(
                    f"a live run spends at most {self.units} quota units; this push would not"
                )
            self.spent += len(urls)
            return submit(urls)

        provider.submit = budgeted  # type: ignore[method-assign]
        return provider


def _live_env() -> ProviderEnv:
    path = Path(os.environ["CDN_PREHEAT_LIVE_URLS"])
    lines = path.read_text(encoding="utf-8").splitlines()
    urls = tuple(u.strip() for u in lines if u.strip() and not u.lstrip().startswith("#"))
    if not urls:
        pytest.fail(f"CDN_PREHEAT_LIVE_URLS ({path}) lists no URLs")
    budget = QuotaBudget(len(urls))

    def make(overrides: Mapping[str, str]) -> Provider:
        # The process environment and .env, as the CLI reads them, under the overrides.
        settings = Settings(**{k.lower(): v for k, v in overrides.items()})  # type: ignore[arg-type]
        try:
            return budget.guard(make_provider(settings))
        except PreheatError as exc:
            pytest.skip(f"the live account is not configured ({exc}); set {LIVE_VARIABLES}")

    provider = make({})
    kind = provider.name
    credentials = _CREDENTIALS.get(kind, ())
    return ProviderEnv(
        kind=kind,
        sandbox=None,  # type: ignore[arg-type]
        provider=provider,
        make_provider=make,
        received_urls=list,  # what the CDN received cannot be observed on a real account
        set_daily_quota=None,
        secret_variable=credentials[-1] if credentials else None,
        credential_variables=credentials,
        api_faults=False,
        can_purge=False,  # a live run never purges a real domain
        tasks_finish_on_submit=kind == "http",
        quota_known_before_submit=kind != "qiniu",
        quota_calls_api=kind not in ("qiniu", "http"),
        live=True,
        live_urls=urls,
        settle_timeout=LIVE_SETTLE_TIMEOUT,
        poll_interval=LIVE_POLL_INTERVAL,
    )


def _is_live(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.params.get("provider_env") == "live"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The ``live`` kind holds only the ``live_safe`` tests: the rest need the sandbox."""
    dropped = [i for i in items if _is_live(i) and i.get_closest_marker("live_safe") is None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [i for i in items if i not in dropped]


@pytest.fixture(autouse=True)
def _live_scope(request: pytest.FixtureRequest) -> None:
    if _is_live(request.node) and not live_configured():
        pytest.skip(f"not run against a real account: set {LIVE_VARIABLES}")


@pytest.fixture(params=[*PROVIDER_KINDS, pytest.param("live", marks=pytest.mark.live)])
def provider_env(request: pytest.FixtureRequest) -> Iterator[ProviderEnv]:
    env = _live_env() if request.param == "live" else PROVIDER_KINDS[request.param]()
    try:
        yield env
    finally:
        env.provider.close()
        if not env.live:
            env.sandbox.stop()
