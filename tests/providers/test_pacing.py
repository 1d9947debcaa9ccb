"""Each provider paces every API on that API's own budget, as the vendors count.

The emulators enforce each API's documented limit (counted in a sliding window,
clock-aligned windows or a token bucket: the rate tests run on each); these
tests call a provider from several threads, faster than any one budget allows,
and count what the emulator refused for rate. They assert counts from the
emulator, never how long anything took.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from contract_env import settings_from

from cdn_preheat.providers.aliyun import AliyunProvider
from cdn_preheat.providers.qiniu import QiniuProvider
from cdn_preheat.providers.tencent import TencentProvider
from cdn_preheat.sandbox.aliyun import AliyunLimits
from cdn_preheat.sandbox.core import RATE_COUNTINGS, RateCounting
from cdn_preheat.sandbox.qiniu import QiniuLimits
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.sandbox.tencent import TencentLimits

THREADS = 6


def hammer(calls: int, call: Callable[[int], object]) -> None:
    """``calls`` calls from several threads at once, as fast as the provider lets them go."""
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(call, range(calls)))


@pytest.fixture
def box(rate_counting: RateCounting) -> Iterator[Sandbox]:
    with Sandbox(
        rate_counting=rate_counting,
        videos=2,
        segments=40,
        tencent_limits=TencentLimits(task_delay=0),
        aliyun_limits=AliyunLimits(task_delay=0),
        qiniu_limits=QiniuLimits(task_delay=0, prefetch_quota=10_000, list_calls_per_second=10),
    ) as sandbox:
        yield sandbox


def segment(box: Sandbox, n: int) -> str:
    return box.edge_url(f"/vod/demo-{n % 2 + 1}/v0/seg{n // 2 % 40}.ts")


@pytest.mark.parametrize("rate_counting", RATE_COUNTINGS)
def test_tencent_status_polling_never_draws_a_rate_limit_answer(box: Sandbox) -> None:
    provider = TencentProvider(settings_from(box.client_env("tencent")))
    task = provider.submit([segment(box, 0)]).task_id
    hammer(50, lambda _: provider.task_status([task]))
    assert box.tencent.actions["DescribePushTasks"] == 50
    assert box.tencent.rate_refusals == {}


@pytest.mark.parametrize("rate_counting", RATE_COUNTINGS)
def test_tencent_pushes_and_status_calls_each_use_their_own_budget(box: Sandbox) -> None:
    provider = TencentProvider(settings_from(box.client_env("tencent")))
    task = provider.submit([segment(box, 0)]).task_id

    def mixed(n: int) -> object:
        if n % 2:
            return provider.task_status([task])
        return provider.submit([segment(box, n)])

    hammer(60, mixed)
    assert box.tencent.actions["DescribePushTasks"] == 30
    assert box.tencent.actions["PushUrlsCache"] == 31
    assert box.tencent.rate_refusals == {}
    # Neither budget was cut to make room for the other: each runs at Tencent's 20/s.
    assert provider.pacing.rate("DescribePushTasks") == 20
    assert provider.pacing.rate("PushUrlsCache") == 20


def test_tencent_declares_a_budget_for_every_api_it_calls(box: Sandbox) -> None:
    provider = TencentProvider(settings_from(box.client_env("tencent")))
    assert set(provider.budgets) == set(box.tencent._actions)
    assert all(b.per_second == 20 and "228" in b.source for b in provider.budgets.values())


@pytest.mark.parametrize("rate_counting", RATE_COUNTINGS)
def test_aliyun_status_polling_keeps_to_describe_refresh_task_by_id_30_a_second(
    box: Sandbox,
) -> None:
    provider = AliyunProvider(settings_from(box.client_env("aliyun")))
    task = provider.submit([segment(box, 0)]).task_id
    hammer(70, lambda _: provider.task_status([task]))
    assert box.aliyun.action_calls["DescribeRefreshTaskById"] == 70
    assert box.aliyun.rate_refusals == {}


@pytest.mark.parametrize("rate_counting", RATE_COUNTINGS)
def test_aliyun_reconciliation_pages_keep_to_describe_refresh_tasks_5_a_second(
    box: Sandbox,
) -> None:
    provider = AliyunProvider(settings_from(box.client_env("aliyun")))
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    hammer(12, lambda n: provider.find_submitted([segment(box, n)], since))
    assert box.aliyun.action_calls["DescribeRefreshTasks"] >= 12
    assert box.aliyun.rate_refusals == {}


@pytest.mark.parametrize("rate_counting", RATE_COUNTINGS)
def test_qiniu_prefetch_keeps_to_240_urls_a_second(box: Sandbox) -> None:
    provider = QiniuProvider(settings_from(box.client_env("qiniu")))
    urls = [box.edge_url(f"/vod/demo-1/v{v}/seg{i}.ts") for v in range(3) for i in range(40)]
    batches = [urls[i : i + 20] for i in range(0, len(urls), 20)]
    hammer(len(batches), lambda n: provider.submit(batches[n]))
    assert len(box.qiniu.received_urls()) == len(urls)  # 6 x 20 = 120 URLs in one go
    assert box.qiniu.rate_refusals == {}


@pytest.mark.parametrize("rate_counting", RATE_COUNTINGS)
def test_qiniu_task_queries_keep_to_an_enforced_query_limit(box: Sandbox) -> None:
    # Qiniu documents no limit for /v2/tune/prefetch/list; this emulator enforces 10/s.
    provider = QiniuProvider(settings_from(box.client_env("qiniu")))
    task = provider.submit([segment(box, 0)]).task_id
    hammer(25, lambda _: provider.task_status([task]))
    assert box.qiniu.calls["/v2/tune/prefetch/list"] == 25
    assert box.qiniu.rate_refusals == {}


def test_cdn_preheat_rate_caps_every_budget(box: Sandbox) -> None:
    provider = TencentProvider(settings_from(box.client_env("tencent")))
    provider.pacing.set_cap(4)
    assert provider.pacing.rate("PushUrlsCache") == 4
    assert provider.pacing.rate("DescribePushTasks") == 4
    qiniu = QiniuProvider(settings_from(box.client_env("qiniu")))
    qiniu.pacing.set_cap(4)
    assert qiniu.pacing.rate("prefetch") == 80  # 4 requests of 20 URLs


def test_make_provider_applies_cdn_preheat_rate(box: Sandbox) -> None:
    from cdn_preheat.providers import make_provider

    provider = make_provider(settings_from({**box.client_env("tencent"), "CDN_PREHEAT_RATE": "3"}))
    assert provider.pacing.rate("DescribePushTasks") == 3
