"""The provider contract suite's fixture: one sandbox and provider per kind.

Adding a provider kind is one entry in ``PROVIDER_KINDS``: a factory that
starts a :class:`Sandbox` and returns a :class:`ProviderEnv` whose provider is
built from ``Settings`` made of ``sandbox.client_env(kind)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping

import pytest
from contract_env import TASK_DELAY, ProviderEnv, settings_from

from cdn_preheat.providers.aliyun import AliyunProvider
from cdn_preheat.providers.base import Provider, TaskState
from cdn_preheat.providers.http import HttpProvider, WarmOptions
from cdn_preheat.providers.qiniu import QiniuProvider
from cdn_preheat.providers.tencent import TencentProvider
from cdn_preheat.sandbox.aliyun import AliyunLimits
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
    "aliyun": _aliyun_env,
    "qiniu": _qiniu_env,
    "http": _http_env,
}


@pytest.fixture(params=list(PROVIDER_KINDS))
def provider_env(request: pytest.FixtureRequest) -> Iterator[ProviderEnv]:
    env = PROVIDER_KINDS[request.param]()
    try:
        yield env
    finally:
        env.provider.close()
        env.sandbox.stop()
