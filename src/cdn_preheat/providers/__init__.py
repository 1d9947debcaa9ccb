"""CDN providers. Each vendor module is imported only when selected, so the
CLI starts without loading every SDK."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdn_preheat.errors import ConfigError

if TYPE_CHECKING:
    from cdn_preheat.config import Settings
    from cdn_preheat.providers.base import Provider


def make_provider(settings: Settings) -> Provider:
    """The provider named by ``CDN_PROVIDER``, configured from the settings.

    ``CDN_PREHEAT_RATE`` caps every API's budget (requests a second).
    """
    provider = _make_provider(settings)
    if settings.cdn_preheat_rate:
        provider.pacing.set_cap(settings.cdn_preheat_rate)
    return provider


def _make_provider(settings: Settings) -> Provider:
    name = settings.cdn_provider
    if name == "tencent":
        from cdn_preheat.providers.tencent import TencentProvider

        return TencentProvider(settings)
    if name == "edgeone":
        from cdn_preheat.providers.edgeone import EdgeOneProvider

        return EdgeOneProvider(settings)
    if name == "qiniu":
        from cdn_preheat.providers.qiniu import QiniuProvider

        return QiniuProvider(settings)
    if name == "aliyun":
        from cdn_preheat.providers.aliyun import AliyunProvider

        return AliyunProvider(
            settings, area=settings.aliyun_area, l2_preload=settings.aliyun_l2_preload
        )
    if name == "http":
        from cdn_preheat.providers.http import HttpProvider

        return HttpProvider(settings)
    raise ConfigError(f"CDN_PROVIDER={name!r} is not one of tencent, edgeone, qiniu, aliyun, http.")
