"""The provider contract suite's fixture: one sandbox and provider per kind.

The kinds come from the provider registry: every registered provider with a
sandbox emulator gets a :class:`Sandbox` and a :class:`ProviderEnv` whose
provider is built by ``make_provider`` from ``Settings`` made of
``sandbox.client_env(kind)``; its capability flags come from its declared
features (``contract_env.capabilities``). The http provider, which has no API
to emulate, has its own factory.

One more kind, ``live``, is a real account: with ``CDN_PREHEAT_LIVE=1``, the
configured provider (``CDN_PROVIDER`` and the vendor's variables, read as the
CLI reads them) and ``CDN_PREHEAT_LIVE_URLS`` (a file of a few real URLs on
``CDN_HOST``, one a line), the tests marked ``live_safe`` run against it and
spend at most one quota unit per listed URL; every other test needs the
sandbox and skips. Without those variables the ``live`` kind skips, naming them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from contract_env import PROVIDER_KINDS, ProviderEnv, capabilities

from cdn_preheat.config import Settings
from cdn_preheat.errors import PreheatError
from cdn_preheat.providers import make_provider, provider_spec
from cdn_preheat.providers.base import Provider, SubmitResult

LIVE_VARIABLES = (
    "CDN_PREHEAT_LIVE=1, CDN_PROVIDER, the vendor's credentials (TENCENT_SECRET_ID/"
    "TENCENT_SECRET_KEY, with EO_ZONE_ID for edgeone, ALIYUN_ACCESS_KEY_ID/"
    "ALIYUN_ACCESS_KEY_SECRET or QINIU_ACCESS_KEY/"
    "QINIU_SECRET_KEY), CDN_HOST and CDN_PREHEAT_LIVE_URLS (a file of a few real URLs)"
)
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
    return ProviderEnv(
        kind=kind,
        sandbox=None,  # type: ignore[arg-type]
        provider=provider,
        make_provider=make,
        received_urls=list,  # what the CDN received cannot be observed on a real account
        set_daily_quota=None,
        # A live run never faults or purges a real account.
        **capabilities(provider_spec(kind), live=True),  # type: ignore[arg-type]
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
