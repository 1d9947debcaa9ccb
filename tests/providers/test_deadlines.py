"""Every CDN SDK call has a deadline: none of the SDKs' clients may wait forever."""

from __future__ import annotations

import qiniu.config

from cdn_preheat.config import Settings
from cdn_preheat.providers.aliyun import AliyunProvider
from cdn_preheat.providers.tencent import TencentProvider


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_tencent_requests_time_out() -> None:
    provider = TencentProvider(settings(tencent_secret_id="AKIDx", tencent_secret_key="k"))
    # tencentcloud-sdk-python: HttpProfile.reqTimeout is passed to requests as timeout=.
    assert 0 < provider._client.profile.httpProfile.reqTimeout <= 30


def test_aliyun_requests_time_out() -> None:
    provider = AliyunProvider(settings(aliyun_access_key_id="LTAIx", aliyun_access_key_secret="k"))
    assert 0 < provider._runtime.connect_timeout <= 10_000  # milliseconds
    assert 0 < provider._runtime.read_timeout <= 30_000


def test_qiniu_requests_time_out() -> None:
    # qiniu/http/__init__.py passes config.get_default("connection_timeout") to requests.
    timeout = qiniu.config.get_default("connection_timeout")
    assert isinstance(timeout, int | float) and 0 < timeout <= 30


def test_aliyun_calls_keep_to_the_api_deadline() -> None:
    """CDN_PREHEAT_API_TIMEOUT (within half the lease) is Alibaba's read deadline too, and
    the scheduler's call_timeout: a call must not outlive its claim's lease."""
    provider = AliyunProvider(
        settings(
            aliyun_access_key_id="LTAIx",
            aliyun_access_key_secret="k",
            cdn_preheat_api_timeout=2.5,
            cdn_preheat_lease_seconds=4,
        )
    )
    assert provider.call_timeout == 2.0  # half the lease
    assert provider._runtime.read_timeout == 2000
    assert provider._runtime.connect_timeout <= 2000


def test_edgeone_requests_keep_to_the_api_deadline_with_or_without_an_endpoint() -> None:
    from cdn_preheat.providers.edgeone import EdgeOneProvider

    for endpoint in (None, "http://127.0.0.1:9"):
        provider = EdgeOneProvider(
            settings(
                tencent_secret_id="AKIDx",
                tencent_secret_key="k",
                eo_zone_id="zone-x",
                eo_endpoint=endpoint,
                cdn_preheat_api_timeout=2.5,
                cdn_preheat_lease_seconds=4,
            )
        )
        # tencentcloud-sdk-python: HttpProfile.reqTimeout is passed to requests as timeout=.
        assert provider.call_timeout == 2.0  # half the lease
        assert provider._client.profile.httpProfile.reqTimeout == 2.0
