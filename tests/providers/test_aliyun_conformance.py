"""Alibaba Cloud answers of real accounts that the emulator models (sources in
``sandbox/aliyun.py``), and what the provider makes of them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from contract_env import settings_from

from cdn_preheat.errors import BatchTooLarge, InvalidUrls, QuotaExhausted, RateLimited, Transient
from cdn_preheat.providers.aliyun import MAX_ENCODED_OBJECT_PATH, AliyunProvider
from cdn_preheat.sandbox.aliyun import AliyunLimits
from cdn_preheat.sandbox.server import Sandbox


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(videos=2, segments=5, aliyun_limits=AliyunLimits(task_delay=60)) as box:
        yield box


def provider(box: Sandbox) -> AliyunProvider:
    return AliyunProvider(settings_from(box.client_env("aliyun")))


def limits(box: Sandbox, **changes: object) -> None:
    box.aliyun.limits = dataclasses.replace(box.aliyun.limits, **changes)  # type: ignore[arg-type]


def segments(box: Sandbox, count: int, extra: str = "") -> list[str]:
    return [box.edge_url(f"/vod/demo-1/v0/seg{i}.ts{extra}") for i in range(count)]


def test_service_busy_is_transient_and_the_retry_goes_through(sandbox: Sandbox) -> None:
    limits(sandbox, configuring=True)
    with pytest.raises(Transient) as caught:
        provider(sandbox).submit(segments(sandbox, 2))
    assert caught.value.code == "ServiceBusy"
    limits(sandbox, configuring=False)
    assert len(provider(sandbox).submit(segments(sandbox, 2)).accepted) == 2


def test_preload_queue_full_with_quota_left_is_a_wait(sandbox: Sandbox) -> None:
    limits(sandbox, preload_queue=3)
    cdn = provider(sandbox)
    cdn.submit(segments(sandbox, 3))  # tasks take 60 s: the queue holds 3
    with pytest.raises(RateLimited) as caught:
        cdn.submit(segments(sandbox, 1, "?again"))
    assert caught.value.code == "PreloadQueueFull" and caught.value.retry_after == 60


@pytest.mark.parametrize("code", ["QuotaExceeded.Preload", "PreloadQueueFull"])
def test_spent_daily_quota_stops_for_today_whichever_code_says_so(
    sandbox: Sandbox, code: str
) -> None:
    limits(sandbox, preload_quota=3, preload_quota_code=code)
    cdn = provider(sandbox)
    cdn.submit(segments(sandbox, 3))
    with pytest.raises(QuotaExhausted) as caught:
        cdn.submit(segments(sandbox, 1, "?again"))
    assert caught.value.code == code


def test_long_object_path_is_refused_before_sending(sandbox: Sandbox) -> None:
    long_urls = segments(sandbox, 100, "?token=" + "a" * 300)
    with pytest.raises(BatchTooLarge, match=str(MAX_ENCODED_OBJECT_PATH)):
        provider(sandbox).submit(long_urls)
    assert sandbox.aliyun.received == []
    # What fits goes through under the gateway's default 8 KiB line.
    assert len(provider(sandbox).submit(long_urls[:15]).accepted) == 15
    assert sandbox.aliyun.counters.get("uri_too_large", 0) == 0


def test_gateway_414_splits_and_a_single_url_is_invalid(sandbox: Sandbox) -> None:
    limits(sandbox, max_request_line=600)
    urls = segments(sandbox, 20)
    with pytest.raises(BatchTooLarge, match="414"):
        provider(sandbox).submit(urls)
    lone = sandbox.edge_url("/vod/demo-1/v0/seg0.ts?token=" + "a" * 700)
    with pytest.raises(InvalidUrls) as caught:
        provider(sandbox).submit([lone])
    assert "414" in caught.value.invalid[lone]
    assert sandbox.aliyun.counters["uri_too_large"] == 2
