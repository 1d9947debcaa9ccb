"""Qiniu in the composed Sandbox: endpoints, credentials, limits, a signing origin."""

from __future__ import annotations

import socket

import httpx

from cdn_preheat import config
from cdn_preheat.config import Settings
from cdn_preheat.providers.qiniu import QiniuProvider
from cdn_preheat.sandbox.qiniu import QiniuLimits
from cdn_preheat.sandbox.server import SANDBOX_QINIU_PREFETCH_QUOTA, SERVER_ORDER, Sandbox


def settings_of(env: dict[str, str]) -> Settings:
    return Settings(_env_file=None, **{k.lower(): v for k, v in env.items()})  # type: ignore[call-arg]


def test_qiniu_endpoint_and_client_env() -> None:
    with Sandbox(videos=1, segments=2) as box:
        env = box.client_env("qiniu")
        assert "qiniu" in box.endpoints
        assert env["CDN_PROVIDER"] == "qiniu"
        assert env["CDN_HOST"] == box.edge.netloc
        assert env["QINIU_ENDPOINT"] == env["QINIU_RSF_ENDPOINT"] == box.endpoints["qiniu"]
        assert (env["QINIU_ACCESS_KEY"], env["QINIU_SECRET_KEY"]) == (
            config.SANDBOX_QINIU_ACCESS_KEY,
            config.SANDBOX_QINIU_SECRET_KEY,
        )
        assert "CDN_PREHEAT_ORIGIN_SIGNING" not in env
        provider = QiniuProvider(settings_of(env))
        result = provider.submit([box.edge_url("/vod/demo-1/master.m3u8")])
        # Raised above Qiniu's default of 100 so that a demo runs to the end.
        assert result.quota is not None and result.quota.total == SANDBOX_QINIU_PREFETCH_QUOTA


def test_configured_qiniu_keys_are_the_ones_accepted() -> None:
    mine = Settings(
        _env_file=None,  # type: ignore[call-arg]
        qiniu_access_key="my-access-key",
        qiniu_secret_key="my-secret-key",
    )
    with Sandbox.from_settings(mine, videos=1, segments=2) as box:
        env = box.client_env("qiniu")
        assert env["QINIU_SECRET_KEY"] == "my-secret-key"
        provider = QiniuProvider(settings_of(env))
        assert provider.submit([box.edge_url("/vod/demo-1/master.m3u8")]).task_id


def test_task_delay_override_applies_to_qiniu() -> None:
    limits = QiniuLimits(task_delay=5)
    box = Sandbox(videos=1, qiniu_limits=limits, task_delay=0.1)
    assert (box.qiniu.limits.task_delay, limits.task_delay) == (0.1, 5)
    box.stop()


def test_configured_origin_signing_is_enforced_and_exported() -> None:
    signing = Settings(
        _env_file=None,  # type: ignore[call-arg]
        cdn_preheat_origin_signing="qiniu-timestamp",
        cdn_preheat_origin_anti_leech_key="leech-key",
    )
    with Sandbox.from_settings(signing, videos=1, segments=2) as box:
        assert httpx.get(box.video_url("demo-1")).status_code == 403
        env = box.client_env("qiniu")
        assert env["CDN_PREHEAT_ORIGIN_SIGNING"] == "qiniu-timestamp"
        assert env["CDN_PREHEAT_ORIGIN_ANTI_LEECH_KEY"] == "leech-key"


def _free_block(size: int) -> int:
    """A first port with ``size`` free ports from it (checked just before use)."""
    for first in range(20_000, 60_000, 97):
        sockets = []
        try:
            for offset in range(size):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", first + offset))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return first
    raise RuntimeError("no free block of ports")


def test_first_port_numbers_the_servers_consecutively() -> None:
    first = _free_block(len(SERVER_ORDER))
    with Sandbox(videos=1, segments=2, first_port=first) as box:
        ports = {name: int(url.rsplit(":", 1)[1]) for name, url in box.endpoints.items()}
    assert ports == {name: first + i for i, name in enumerate(SERVER_ORDER)}
